# Sourced by tools/image/*.sh: podman/buildah configured for this machine, and shared names.
# shellcheck shell=bash
set -euo pipefail

IMAGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$IMAGE_DIR/../.." && pwd)"
CACHE_ROOT="${KOPFSCALE_CACHE:-$HOME/.cache/kopfscale}"
# The Debian release and Python of the locally made base image; the Dockerfile's default base is
# the official image with the same Python on the same Debian release.
BASE_SUITE="${KOPFSCALE_BASE_SUITE:-bookworm}"
BASE_MIRROR="${KOPFSCALE_BASE_MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="${KOPFSCALE_BASE_IMAGE:-localhost/kopfscale-base:python3-$BASE_SUITE}"
IMAGE="${KOPFSCALE_IMAGE:-localhost/kopfscale:$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/pyproject.toml")}"
# The host's CA bundle: pip inside the build goes through a TLS-intercepting proxy. It is
# mounted for the build only (RUN --mount would need BuildKit; buildah's -v is the same idea).
HOST_CA_BUNDLE="${KOPFSCALE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

log() { printf '[image] %s\n' "$*" >&2; }

need() {
    command -v "$1" >/dev/null || {
        log "'$1' is missing: apt-get install -y podman buildah debootstrap runc ($2)"
        exit 1
    }
}

# Our containers.conf (cgroupfs, runc, explicit ulimits, host namespaces) and a vfs storage of
# our own under the cache folder: nothing in /etc/containers is changed.
export CONTAINERS_CONF="$IMAGE_DIR/containers.conf"
mkdir -p "$CACHE_ROOT/containers"
export CONTAINERS_STORAGE_CONF="$CACHE_ROOT/containers/storage.conf"
cat > "$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "vfs"
runroot = "$CACHE_ROOT/containers/run"
graphroot = "$CACHE_ROOT/containers/storage"
CONF
# An empty registries policy would refuse every image; ours accepts the local ones.
export CONTAINERS_REGISTRIES_CONF="$CACHE_ROOT/containers/registries.conf"
printf 'unqualified-search-registries = []\n' > "$CONTAINERS_REGISTRIES_CONF"
if [[ ! -f /etc/containers/policy.json ]]; then
    mkdir -p /etc/containers
    printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' > /etc/containers/policy.json
fi
