#!/usr/bin/env bash
# `make cluster`: the scale-out topology on one machine, for a demo: Debian's redis-server, one web
# server and one `teachbox worker` per entry of DEVICES, all on loopback and one data folder.
# Ctrl-C (or SIGTERM) stops them all: the workers hand their running jobs back to the queue first.
#
#   DEVICES="cpu cpu"  one worker per entry (on a GPU machine: DEVICES="cuda:0 cuda:1")
#   PORT=8000          the web server's port;  REDIS_PORT=6390  the broker's (loopback only)
#   TEACHBOX_DATA_DIR  default ~/.local/share/teachbox-cluster, apart from `make run`'s: a server
#                      without BROKER_URL marks the jobs it finds unfinished as interrupted.
set -euo pipefail
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8000}
REDIS_PORT=${REDIS_PORT:-6390}
DEVICES=${DEVICES:-auto auto}
export TEACHBOX_DATA_DIR=${TEACHBOX_DATA_DIR:-$HOME/.local/share/teachbox-cluster}
export TEACHBOX_BROKER_URL=redis://127.0.0.1:$REDIS_PORT/0
command -v redis-server >/dev/null || { echo "redis-server is missing: make services (apt-get install redis-server)"; exit 1; }
run_dir=$(mktemp -d)
pids=()

stop() {
  trap - INT TERM EXIT
  # Workers and the web server first (SIGTERM: jobs go back to the queue), the broker last.
  for pid in "${pids[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
  rm -rf "$run_dir"
  echo "cluster stopped"
}
trap stop INT TERM EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$run_dir" \
  --logfile "$run_dir/redis.log" &
pids+=($!)
"$BIN/teachbox" serve --host 127.0.0.1 --port "$PORT" &
pids+=($!)
for device in $DEVICES; do
  "$BIN/teachbox" worker --device "$device" &
  pids+=($!)
done
echo "cluster: http://127.0.0.1:$PORT (broker $TEACHBOX_BROKER_URL, workers on: $DEVICES, data $TEACHBOX_DATA_DIR); Ctrl-C stops it"
# Until Ctrl-C, or until any of them exits on its own (then the rest are stopped too).
wait -n
