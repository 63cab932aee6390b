#!/bin/sh
# The image's entry point: before `teachbox serve`, make sure the data folder is writable, so that
# a bind mount owned by another user stops with what to do instead of a PermissionError traceback.
set -eu
if [ "${1:-}" = teachbox ] && [ "${2:-}" = serve ]; then
  data=${TEACHBOX_DATA_DIR:-/home/teachbox/data}
  mkdir -p "$data" 2>/dev/null || true
  if [ ! -d "$data" ] || [ ! -w "$data" ] || [ ! -x "$data" ]; then
    owner=$(stat -c %u "$data" 2>/dev/null || echo '?')
    echo "teachbox: the data folder $data is not writable by uid $(id -u) (it belongs to uid $owner)." \
      "For a bind mount, make the host folder belong to uid 1000 first: chown 1000:1000 /path/on/host" >&2
    exit 1
  fi
fi
exec "$@"
