#!/usr/bin/env bash
# Make the base image locally: no container registry is reachable from this machine, so the
# official python slim image cannot be pulled. debootstrap builds a minimal Debian rootfs from
# Debian's own mirror, python3 + python3-venv + ca-certificates are added, caches removed, and
# `podman import` turns it into an image passed to the Dockerfile as its BASE_IMAGE build-arg.
# Idempotent: an existing image is kept (set KOPFSCALE_REBUILD_BASE=1 to make it again).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need debootstrap "makes the base rootfs"
need podman "imports it"

if [[ -z "${KOPFSCALE_REBUILD_BASE:-}" ]] && podman image exists "$BASE_IMAGE"; then
    log "base image $BASE_IMAGE exists; reusing it"
    exit 0
fi
start=$SECONDS
rootfs="$(mktemp -d "$CACHE_ROOT/containers/rootfs.XXXXXX")"
chmod 0755 "$rootfs"  # it becomes the image's /: mktemp's 0700 would lock out non-root users
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap $BASE_SUITE (minbase) into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$BASE_SUITE" "$rootfs" "$BASE_MIRROR" >"$rootfs.log" 2>&1 || {
    tail -30 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"
# What the official slim images also leave out: package caches, lists, docs, man pages.
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*
# The official image names its interpreter `python` too; scripts and our Dockerfile use python3.
ln -sf python3 "$rootfs/usr/bin/python"
log "importing as $BASE_IMAGE"
tar -C "$rootfs" -c . | podman import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
log "base image made in $((SECONDS - start)) s: $(podman image inspect "$BASE_IMAGE" --format '{{.Size}}') bytes"
