#!/usr/bin/env bash
# End-to-end check of the Docker image, as a new user would meet it: build from a clean clone of
# HEAD, start it, train a small project through the API, predict, download the model, and check
# that the data survives `docker rm` on a named volume and on a bind-mounted folder.
#
#   make docker-check          (or scripts/docker-check.sh)
#
# Environment:
#   IMAGE          tag to build (default teachbox)
#   BASE_IMAGE     --build-arg BASE_IMAGE (default: the Dockerfile's, python:3.11-slim);
#                  scripts/make-base-image.sh makes one where no registry is reachable
#   CHECK_IMAGES   a folder with one sub-folder of photos per class to train on (default:
#                  generated images); read in place, never copied into the repository
#   CHECK_CLASSES  classes to use (default 3), CHECK_PER_CLASS images per class (default 12)
#   NO_CACHE=1     build without Docker's layer cache (a cold build, as on a new machine)
#   SKIP_BUILD=1   check an image that is already built
# Needs git, docker, curl and python3 (for JSON) on the host.
set -euo pipefail

IMAGE=${IMAGE:-teachbox}
BASE_IMAGE=${BASE_IMAGE:-}
CHECK_IMAGES=${CHECK_IMAGES:-}
CHECK_CLASSES=${CHECK_CLASSES:-3}
CHECK_PER_CLASS=${CHECK_PER_CLASS:-12}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-180}
JOB_TIMEOUT=${JOB_TIMEOUT:-900}

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
tag=teachbox-check-$$
tmp=$(mktemp -d "${TMPDIR:-/tmp}/teachbox-check.XXXXXX")
containers=()
t_start=$(date +%s)

say() { printf '[%4ss] %s\n' "$(($(date +%s) - t_start))" "$*"; }
die() { say "FAIL: $*" >&2; exit 1; }

cleanup() {
  local status=$?
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  docker volume rm "$tag" >/dev/null 2>&1 || true
  # The bind-mounted folder belongs to uid 1000; remove it through the image when we cannot.
  rm -rf "$tmp" 2>/dev/null || docker run --rm --user 0 --entrypoint rm -v "$tmp:/t" "$IMAGE" -rf /t/bind >/dev/null 2>&1 || true
  rm -rf "$tmp" 2>/dev/null || true
  [ "$status" = 0 ] || say "docker-check failed (exit $status)" >&2
}
trap cleanup EXIT

for tool in git docker curl python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed."
done
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (start it, or check your permissions on its socket)."

# --- build -----------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  [ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] \
    || say "note: uncommitted changes are not in the check; it builds HEAD ($(git -C "$repo" rev-parse --short HEAD))"
  git clone --quiet --no-local "$repo" "$tmp/src"
  build_args=()
  [ -z "$BASE_IMAGE" ] || build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  [ "${NO_CACHE:-0}" != 1 ] || build_args+=(--no-cache)
  # The host's own package index settings, so that the build reaches the same index; local
  # (file://) indexes are left out because the build cannot see this host's folders.
  for key in index-url extra-index-url trusted-host; do
    value=$(python3 -m pip config list 2>/dev/null | sed -n -E "s/^[^.]*\.$key='(.*)'$/\1/p" | tail -n 1 || true)
    env_name=PIP_$(echo "$key" | tr 'a-z-' 'A-Z_')
    value=${!env_name:-$value}
    [ "$key" = trusted-host ] || value=$(tr ' ' '\n' <<<"$value" | grep -E '^https?://' | paste -sd ' ' - || true)
    [ -z "$value" ] || build_args+=(--build-arg "$env_name=$value")
  done
  say "building $IMAGE from a clean clone of $(git -C "$repo" rev-parse --short HEAD) ${BASE_IMAGE:+on $BASE_IMAGE}"
  t0=$(date +%s)
  nice -n 19 docker build --quiet "${build_args[@]}" -t "$IMAGE" "$tmp/src" >"$tmp/build.log" 2>&1 \
    || { tail -n 30 "$tmp/build.log" >&2; die "docker build failed (last lines above)."; }
  say "built in $(($(date +%s) - t0)) s$([ "${NO_CACHE:-0}" != 1 ] || echo " without the layer cache")"
fi
size=$(docker image inspect -f '{{.Size}}' "$IMAGE") || die "no image $IMAGE."
say "image $IMAGE: $(awk -v b="$size" 'BEGIN { printf "%.2f GB (%.0f bytes)", b / 1e9, b }')"

# --- what is in the image ----------------------------------------------------------------------
docker run --rm --entrypoint sh "$IMAGE" -c '
  [ "$(id -u)" = 1000 ] || { echo "runs as uid $(id -u), not 1000"; exit 1; }
  for tool in gcc cc g++ make; do
    ! command -v "$tool" >/dev/null || { echo "build tool in the image: $tool"; exit 1; }
  done
  python3 -c "
import importlib.util, sys
dev = [m for m in (\"pytest\", \"playwright\", \"sklearn\", \"ruff\", \"httpx\") if importlib.util.find_spec(m)]
sys.exit(\"dev extras in the image: %s\" % dev if dev else 0)"
' || die "the image holds more than serving needs, or runs as root."
say "image runs as uid 1000, has no compilers and no dev extras"

# --- helpers -------------------------------------------------------------------------------------
base=
api() { # METHOD PATH [curl args...]: the body on stdout; stops on an HTTP error
  local method=$1 path=$2 code
  shift 2
  code=$(curl -sS --max-time 120 -o "$tmp/body" -w '%{http_code}' -X "$method" "$@" "$base$path") \
    || die "$method $path: no answer"
  [ "$code" -lt 400 ] || die "$method $path answered $code: $(head -c 400 "$tmp/body")"
  cat "$tmp/body"
}
json() { python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value[int(key)] if isinstance(value, list) else value[key]
print(value if not isinstance(value, (dict, list)) else json.dumps(value))' "$1"; }

start() { # NAME MOUNT [docker run options]: starts the image, waits for /api/health, sets base
  local name=$1 mount=$2 port deadline
  shift 2
  docker run -d --name "$name" -p 127.0.0.1::8000 -v "$mount" "$@" "$IMAGE" >/dev/null
  containers+=("$name")
  port=$(docker port "$name" 8000/tcp | head -n 1 | sed 's/.*://')
  base=http://127.0.0.1:$port
  deadline=$(($(date +%s) + BOOT_TIMEOUT))
  until curl -fsS --max-time 5 "$base/api/health" >/dev/null 2>&1; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
      docker logs --tail 30 "$name" >&2
      die "the container $name exited (logs above)."
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { docker logs --tail 30 "$name" >&2; die "no /api/health within ${BOOT_TIMEOUT}s."; }
    sleep 1
  done
}

stop() { # NAME: a graceful stop, timed, then removal
  local t0
  t0=$(date +%s)
  docker stop --time 30 "$1" >/dev/null
  say "stopped $1 in $(($(date +%s) - t0)) s (exit code $(docker inspect -f '{{.State.ExitCode}}' "$1"))"
  docker rm "$1" >/dev/null
}

# --- the photos ------------------------------------------------------------------------------------
photos=$tmp/photos
mkdir -p "$photos"
if [ -n "$CHECK_IMAGES" ]; then
  [ -d "$CHECK_IMAGES" ] || die "CHECK_IMAGES=$CHECK_IMAGES is not a folder."
  find "$CHECK_IMAGES" -mindepth 1 -maxdepth 1 -type d | sort | head -n "$CHECK_CLASSES" >"$tmp/classes"
  source_note="$(wc -l <"$tmp/classes") classes of $CHECK_IMAGES"
else
  # Flat colours with noise, drawn by the image's own Pillow: the host needs no Python packages.
  docker run --rm --entrypoint python3 "$IMAGE" -c '
import io, random, sys, tarfile
from PIL import Image
classes, per_class = int(sys.argv[1]), int(sys.argv[2])
colours = [(200, 30, 30), (30, 40, 200), (30, 180, 40), (220, 200, 40), (150, 40, 160)]
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as archive:
    for c in range(classes):
        for i in range(per_class):
            rng = random.Random(c * 1000 + i)
            image = Image.new("RGB", (96, 72), colours[c % len(colours)])
            image.putdata([tuple(max(0, min(255, v + rng.randint(-30, 30))) for v in p) for p in image.getdata()])
            buffer = io.BytesIO()
            image.save(buffer, "JPEG")
            info = tarfile.TarInfo(f"class{c + 1}/{i}.jpg")
            info.size = buffer.tell()
            buffer.seek(0)
            archive.addfile(info, buffer)
' "$CHECK_CLASSES" "$CHECK_PER_CLASS" | tar -x -C "$photos"
  find "$photos" -mindepth 1 -maxdepth 1 -type d | sort >"$tmp/classes"
  source_note="generated images"
fi
[ "$(wc -l <"$tmp/classes")" -ge 2 ] || die "training needs at least 2 classes."

# --- named volume: train, predict, download, then a new container on the same volume --------------
start "$tag-a" "$tag:/home/teachbox/data"
say "serving at $base (named volume $tag)"
page=$(curl -fsS --max-time 10 "$base/") || die "GET / failed."
grep -qi '<html' <<<"$page" || die "GET / is not the page."

pid=$(api POST /api/projects -H 'Content-Type: application/json' -d '{"name": "docker-check"}' | json id)
n_images=0
first_photo=
while IFS= read -r dir; do
  name=$(basename "$dir")
  cid=$(api POST "/api/projects/$pid/classes" -H 'Content-Type: application/json' -d "{\"name\": \"$name\"}" | json id)
  files=()
  while IFS= read -r f; do
    files+=(-F "files=@$f;type=image/jpeg")
    first_photo=${first_photo:-$f}
  done < <(find "$dir" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort | head -n "$CHECK_PER_CLASS")
  [ "${#files[@]}" -ge 6 ] || die "class $name has fewer than 3 images."
  added=$(api POST "/api/projects/$pid/classes/$cid/images" "${files[@]}" | json added | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
  n_images=$((n_images + added))
done <"$tmp/classes"
say "project $pid: $n_images images in $(wc -l <"$tmp/classes") classes ($source_note)"

t0=$(date +%s)
jid=$(api POST "/api/projects/$pid/jobs" -H 'Content-Type: application/json' -d '{"mode": "transfer"}' | json id)
deadline=$(($(date +%s) + JOB_TIMEOUT))
while :; do
  job=$(api GET "/api/jobs/$jid")
  status=$(json status <<<"$job")
  case $status in
    succeeded) break ;;
    failed | cancelled | interrupted) die "job $jid $status: $(json error <<<"$job")" ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || die "job $jid still $status after ${JOB_TIMEOUT}s."
  sleep 2
done
n_val=$(json metrics.confusion_matrix <<<"$job" | python3 -c 'import json, sys; print(sum(map(sum, json.load(sys.stdin))))')
say "trained (transfer) in $(($(date +%s) - t0)) s: validation accuracy $(json metrics.val_accuracy <<<"$job" | cut -c1-5) on $n_val validation images"

api GET "/api/jobs/$jid/model" >"$tmp/model.zip"
python3 - "$tmp/model.zip" <<'EOF' || die "the downloaded model zip is incomplete."
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = {"model.onnx", "labels.txt", "metadata.json", "predict.py"} - names
sys.exit(f"missing {sorted(missing)}" if missing else 0)
EOF
say "downloaded the model: $(wc -c <"$tmp/model.zip") bytes, with model.onnx, labels.txt, metadata.json, predict.py"

top=$(api POST "/api/projects/$pid/predict" -F "file=@$first_photo;type=image/jpeg" | json predictions.0)
say "predict $(basename "$first_photo"): $top"

stop "$tag-a"
# A short health interval, so that the image's own HEALTHCHECK is seen to pass.
start "$tag-b" "$tag:/home/teachbox/data" --health-interval 5s
[ "$(api GET "/api/projects/$pid" | json model_job_id)" = "$jid" ] || die "the project's model did not survive docker rm."
api POST "/api/projects/$pid/predict" -F "file=@$first_photo;type=image/jpeg" >/dev/null
say "after docker rm and a new container on the volume: project, images and model are there, predict works"
deadline=$(($(date +%s) + 60))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$tag-b")" = healthy ]; do
  [ "$(date +%s)" -lt "$deadline" ] || die "HEALTHCHECK not healthy within 60 s: $(docker inspect -f '{{json .State.Health}}' "$tag-b" | head -c 400)"
  sleep 1
done
say "HEALTHCHECK: healthy"
stop "$tag-b"

# --- bind-mounted folder, owned by uid 1000 as the README says ---------------------------------------
mkdir "$tmp/bind"
chown 1000:1000 "$tmp/bind" 2>/dev/null \
  || docker run --rm --user 0 --entrypoint chown -v "$tmp/bind:/d" "$IMAGE" 1000:1000 /d
start "$tag-c" "$tmp/bind:/home/teachbox/data"
bind_pid=$(api POST /api/projects -H 'Content-Type: application/json' -d '{"name": "bind-check"}' | json id)
stop "$tag-c"
start "$tag-d" "$tmp/bind:/home/teachbox/data"
api GET /api/projects | grep -q "$bind_pid" || die "the project did not survive docker rm on the bind mount."
owner=$(stat -c %u "$tmp/bind/teachbox.sqlite")
[ "$owner" = 1000 ] || die "the database on the bind mount is owned by uid $owner, not 1000."
say "bind mount: the project survives docker rm; its files belong to uid 1000"

# A folder the server cannot write must fail at start with a sentence, not a traceback.
mkdir "$tmp/readonly"
chmod 755 "$tmp/readonly"
if [ "$(id -u)" != 1000 ]; then  # else the folder is ours, and so writable by uid 1000
  if docker run --rm -v "$tmp/readonly:/home/teachbox/data" "$IMAGE" >"$tmp/ro.log" 2>&1; then
    die "the server started on a data folder it cannot write."
  fi
  grep -q 'chown 1000:1000' "$tmp/ro.log" || { cat "$tmp/ro.log" >&2; die "no clear message for an unwritable data folder."; }
  say "an unwritable bind mount stops at once with: $(head -n 1 "$tmp/ro.log")"
fi

stop "$tag-d"
say "OK: docker-check passed"
