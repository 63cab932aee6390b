# Teachbox: the web app and its pretrained weights, served as uid 1000 on port 8000.
#
#   docker build -t teachbox .
#   docker run -p 127.0.0.1:8000:8000 -v teachbox-data:/home/teachbox/data teachbox
#
# BASE_IMAGE must provide Python 3.11+ as `python3` with the venv module, and `useradd`:
# python:3.11-slim does, and so does the Debian bookworm image scripts/make-base-image.sh makes
# where no registry is reachable. Both stages use the same base, so the copied venv's interpreter
# links stay valid.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Only for the build stage, so that none of them ends up in the served image's environment.
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_TRUSTED_HOST=
# Optional: an index with a matching torch + torchvision pair to install first, e.g. PyTorch's
# CPU-only one (https://download.pytorch.org/whl/cpu) for a much smaller image without CUDA.
ARG TORCH_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCH_HOME=/opt/torch
RUN python3 -m venv /opt/venv
WORKDIR /app

# The dependencies alone first, from pyproject.toml, so that a change to the code does not
# reinstall torch. No dev extras: the image serves, it does not run tests.
COPY pyproject.toml ./
RUN set -eu; \
    if [ -n "$TORCH_INDEX_URL" ]; then \
      /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" torch torchvision; \
    fi; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt; \
    /opt/venv/bin/pip install -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt

# Editable, because the app finds templates/ and static/ beside its package folder.
COPY README.md ./
COPY app ./app
COPY templates ./templates
COPY static ./static
RUN /opt/venv/bin/pip install --no-deps -e . && /opt/venv/bin/python -m compileall -q app
RUN /opt/venv/bin/python -c "import torch, torchvision; from torchvision.ops import nms" \
    || { echo "torch and torchvision do not import as a pair (a CPU-only torch beside the index's torchvision fails with 'operator torchvision::nms does not exist'): install both from one index." >&2; exit 1; }

# The MobileNetV2 checkpoint, fetched and verified now, so that training works offline.
RUN /opt/venv/bin/teachbox weights

# About 1.2 GB less, without changing what runs: Teachbox never calls torch.compile, so triton
# (the compiler behind it) is never imported; static libraries and the packages' own test suites
# are never loaded either. The imports after it prove the app still loads without them.
RUN /opt/venv/bin/pip uninstall -y -q triton \
    && find /opt/venv -name '*.a' -delete \
    && find /opt/venv/lib -path '*/site-packages/*' -type d -name tests -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -c "import torch, torchvision, onnx, onnxruntime, app.web.factory, app.engine.training, app.engine.export, app.engine.quantize; from torchvision.ops import nms"


FROM ${BASE_IMAGE}
# The data folder exists before VOLUME and belongs to uid 1000, so that a fresh named volume is
# created writable by the server (Docker copies the folder's owner into it).
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin teachbox \
    && mkdir -p /home/teachbox/data /home/teachbox/.cache \
    && chown -R teachbox:teachbox /home/teachbox/data /home/teachbox/.cache
# Root-owned and read-only for the server: only its data and cache folders are writable.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# In torch's hub cache, which stays writable so that the MobileNetV3 weights can download on use.
COPY --from=build --chown=teachbox:teachbox /opt/torch /home/teachbox/.cache/torch
COPY scripts/docker-entrypoint.sh /usr/local/bin/teachbox-entrypoint

USER teachbox
WORKDIR /home/teachbox
# 0.0.0.0 inside the container is what makes the published port reach the server, so without
# accounts it is insisted on (TEACHBOX_OPEN_HOST): publish on 127.0.0.1 only, or run the
# container with TEACHBOX_AUTH=accounts (and a user from `teachbox users add`).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TORCH_HOME=/home/teachbox/.cache/torch \
    TEACHBOX_DATA_DIR=/home/teachbox/data \
    TEACHBOX_HOST=0.0.0.0 \
    TEACHBOX_OPEN_HOST=true \
    TEACHBOX_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('TEACHBOX_PORT', '8000'), timeout=4)"]
VOLUME ["/home/teachbox/data"]
ENTRYPOINT ["teachbox-entrypoint"]
CMD ["teachbox", "serve"]
