#!/usr/bin/env bash
# Builds a Debian bookworm base image with Python 3.11 from Debian's own packages, for machines
# that can reach an apt mirror but no container registry (so `python:3.11-slim` cannot be pulled).
# The image trusts the CA certificates this host added locally, so that HTTPS to the package index
# works inside the build on networks that inspect TLS.
#
#   scripts/make-base-image.sh [IMAGE_NAME]      (default teachbox-base:bookworm; needs root)
#
# Environment: DEBIAN_MIRROR (default: the first Debian mirror in this host's apt sources),
# SUITE (default bookworm), EXTRA_CA_DIR (default /usr/local/share/ca-certificates).
set -euo pipefail

image=${1:-teachbox-base:bookworm}
suite=${SUITE:-bookworm}
extra_ca_dir=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}

die() { echo "make-base-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "debootstrap needs root; run it with sudo."
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
command -v docker >/dev/null || die "docker is missing."
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (start it: service docker start)."

if [ -z "${DEBIAN_MIRROR:-}" ]; then
  # The mirror apt already uses here, in either sources format; security suites live elsewhere.
  DEBIAN_MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | sed -n -E 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' \
    | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1 || true)
  DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi

rootfs=$(mktemp -d /tmp/teachbox-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "make-base-image: debootstrap $suite from $DEBIAN_MIRROR"
# python3-venv brings ensurepip (Debian splits it out); passwd brings useradd.
nice -n 19 debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,passwd \
  "$suite" "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 \
  || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed (log above)."; }
rm -f "$rootfs.log"

if compgen -G "$extra_ca_dir/*.crt" >/dev/null; then
  cp "$extra_ca_dir"/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  echo "make-base-image: added $(find "$extra_ca_dir" -maxdepth 1 -name "*.crt" | wc -l) local CA certificate(s)"
fi

# Smaller image: no apt lists, caches, docs or man pages (the Dockerfile never runs apt).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*

tar -C "$rootfs" --numeric-owner -c . \
  | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
docker run --rm "$image" python3 -c 'import ssl, sys, venv; print("make-base-image: Python", sys.version.split()[0])'
echo "make-base-image: $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
