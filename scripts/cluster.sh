#!/usr/bin/env bash
# `make cluster`: the scale-out topology on one machine, for a demo: Debian's redis-server and
# PostgreSQL, one web server and one `teachbox worker` per entry of DEVICES, all on loopback and one
# data folder.
# Ctrl-C (or SIGTERM) stops them all: the workers hand their running jobs back to the queue first.
#
#   DEVICES="cpu cpu"  one worker per entry (on a GPU machine: DEVICES="cuda:0 cuda:1")
#   PORT=8000          the web server's port;  REDIS_PORT=6390  the broker's (loopback only)
#   TEACHBOX_DATA_DIR  default ~/.local/share/teachbox-cluster, apart from `make run`'s: a server
#                      without BROKER_URL marks the jobs it finds unfinished as interrupted.
#   DATABASE=postgresql  the metadata in a PostgreSQL cluster of its own (PG_PORT=5440, loopback,
#                      trust authentication: a demo) kept in PGDATA_DIR (default DATA_DIR/postgres;
#                      as root /var/lib/teachbox-cluster/postgres, run as the `postgres` user, since
#                      PostgreSQL refuses root); DATABASE=sqlite keeps DATA_DIR/teachbox.sqlite.
#                      Move an earlier SQLite cluster's rows with `teachbox db copy --to URL`.
set -euo pipefail
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8000}
REDIS_PORT=${REDIS_PORT:-6390}
DEVICES=${DEVICES:-auto auto}
DATABASE=${DATABASE:-postgresql}
PG_PORT=${PG_PORT:-5440}
export TEACHBOX_DATA_DIR=${TEACHBOX_DATA_DIR:-$HOME/.local/share/teachbox-cluster}
export TEACHBOX_BROKER_URL=redis://127.0.0.1:$REDIS_PORT/0
command -v redis-server >/dev/null || { echo "redis-server is missing: make services (apt-get install redis-server)"; exit 1; }
run_dir=$(mktemp -d)
pids=()
pg_ctl=
as_postgres=()

postgres_binary() { command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | tail -n 1; }

start_postgres() {
  local initdb
  initdb=$(postgres_binary initdb)
  pg_ctl=$(postgres_binary pg_ctl)
  [ -n "$initdb" ] && [ -n "$pg_ctl" ] || { echo "PostgreSQL is missing: make services (apt-get install postgresql), or DATABASE=sqlite"; exit 1; }
  if [ "$(id -u)" = 0 ]; then
    PGDATA_DIR=${PGDATA_DIR:-/var/lib/teachbox-cluster/postgres}
    as_postgres=(runuser -u postgres --)
  else
    PGDATA_DIR=${PGDATA_DIR:-$TEACHBOX_DATA_DIR/postgres}
  fi
  if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
    mkdir -p "$PGDATA_DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$PGDATA_DIR" && chmod 700 "$PGDATA_DIR"
    "${as_postgres[@]}" "$initdb" --auth=trust --username=postgres --encoding=UTF8 -D "$PGDATA_DIR" >/dev/null
  fi
  "${as_postgres[@]}" "$pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -k $PGDATA_DIR" start >/dev/null
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'teachbox'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE teachbox"
  export TEACHBOX_DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/teachbox
}

stop() {
  trap - INT TERM EXIT
  # Workers and the web server first (SIGTERM: jobs go back to the queue), the broker last.
  for pid in "${pids[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
  [ -z "$pg_ctl" ] || "${as_postgres[@]}" "$pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null || true
  rm -rf "$run_dir"
  echo "cluster stopped"
}
# Asked to stop (Ctrl-C, SIGTERM): a clean stop is a success. A member that exits on its own ends
# the script with its status (the EXIT trap still stops the rest).
trap 'stop; exit 0' INT TERM
trap stop EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$run_dir" \
  --logfile "$run_dir/redis.log" &
pids+=($!)
if [ "$DATABASE" = postgresql ]; then
  start_postgres
  "$BIN/teachbox" db upgrade  # once, before the web server and the workers open it
fi
"$BIN/teachbox" serve --host 127.0.0.1 --port "$PORT" &
pids+=($!)
for device in $DEVICES; do
  "$BIN/teachbox" worker --device "$device" &
  pids+=($!)
done
echo "cluster: http://127.0.0.1:$PORT (broker $TEACHBOX_BROKER_URL, database ${TEACHBOX_DATABASE_URL:-SQLite}, workers on: $DEVICES, data $TEACHBOX_DATA_DIR); Ctrl-C stops it"
# Until Ctrl-C, or until any of them exits on its own (then the rest are stopped too).
wait -n
