# Teachbox: the same set-up as `make setup`, served as a non-root user on port 8000.
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 teachbox
WORKDIR /app
COPY --chown=teachbox:teachbox . /app
USER teachbox
ENV TORCH_HOME=/home/teachbox/.cache/torch \
    TEACHBOX_DATA_DIR=/home/teachbox/data \
    TEACHBOX_HOST=0.0.0.0
# `make setup` without the browser step: the image serves the app, it does not run browser tests.
RUN make .venv/.teachbox-setup weights
EXPOSE 8000
VOLUME ["/home/teachbox/data"]
CMD [".venv/bin/teachbox", "serve", "--port", "8000"]
