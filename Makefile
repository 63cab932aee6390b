# Two commands for a fresh machine: `make run` and `make test`. Both go through `make setup`;
# only `make test` also installs Chromium (the browser tests), redis-server (the cluster tests),
# PostgreSQL (the database tests) and the tflite extra (the TFLite tests); `make run` needs none of
# them: its worker is a thread of the web server and its database a SQLite file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.teachbox-setup
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: setup run test test-fast lint bench weights browser services tflite cluster bench-cluster clean docker-check

setup: $(STAMP) weights

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@$(BIN)/python -c "import torch, torchvision; from torchvision.ops import nms" 2>/dev/null || { \
	  echo "torch and torchvision do not import as a pair (a CPU-only torch beside the registry's torchvision fails with 'operator torchvision::nms does not exist')."; \
	  echo "Fix: $(BIN)/pip install --force-reinstall torch torchvision   (the registry's default builds, installed together)"; \
	  exit 1; }
	@touch $(STAMP)

weights: $(STAMP)
	$(BIN)/teachbox weights

# Browser tests drive Debian's Chromium; install it when missing and we may (root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v /usr/bin/chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  elif command -v sudo >/dev/null 2>&1; then (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  else echo "Chromium is not installed; browser tests will be skipped (apt-get install chromium)."; fi; } || \
	  echo "Could not install Chromium; browser tests will be skipped."

# The tflite extra, never moving torch, torchvision, numpy or onnxruntime (pinned to what setup
# installed); when it cannot fit beside them, the TFLite tests are skipped and this says so.
TFLITE_STAMP := $(VENV)/.teachbox-tflite
tflite: $(TFLITE_STAMP)

$(TFLITE_STAMP): $(STAMP)
	@$(BIN)/python -m pip freeze | grep -iE '^(torch|torchvision|numpy|onnxruntime)==' > $(VENV)/tflite-constraints.txt
	@$(BIN)/python -m pip install -q -c $(VENV)/tflite-constraints.txt -e '.[dev,tflite]' && touch $(TFLITE_STAMP) || \
	  echo "Could not install the tflite extra beside this torch; the TFLite tests will be skipped."

# The queue's tests (tests/service/test_cluster.py) start Debian's redis-server, the database tests
# (tests/service/test_db_migrations.py) Debian's PostgreSQL (initdb and pg_ctl, as the `postgres`
# user when root); install them when missing and we may.
services:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null); \
	  elif command -v sudo >/dev/null 2>&1; then (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null); \
	  else echo "redis-server is not installed; the cluster tests will be skipped (apt-get install redis-server)."; fi; } || \
	  echo "Could not install redis-server; the cluster tests will be skipped."
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null); \
	  elif command -v sudo >/dev/null 2>&1; then (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null); \
	  else echo "postgresql is not installed; the PostgreSQL tests will be skipped (apt-get install postgresql)."; fi; } || \
	  echo "Could not install postgresql; the PostgreSQL tests will be skipped."

# One web server and two queue workers on loopback with Debian's redis-server (README: Scale-out).
cluster: setup services
	scripts/cluster.sh

run: setup
	$(BIN)/teachbox serve --host $(HOST) --port $(PORT)

test: setup browser services tflite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

# ruff's rules, ruff's formatting (checked, not applied) and mypy's types over app/.
lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/bench_engine.py

bench-cluster: setup services
	$(BIN)/python bench/bench_cluster.py

clean:
	rm -rf $(VENV) .pytest_cache artifacts

# Builds the image from a clean clone of HEAD, trains a small project in it through the API and
# checks that its data survives `docker rm`. BASE_IMAGE=..., CHECK_IMAGES=DIR: see the script.
docker-check:
	scripts/docker-check.sh
