#!/usr/bin/env bash
# Build the kopfscale image with buildah on a machine without a Docker engine or a registry:
# vfs storage and chroot isolation (no overlay mounts, no user namespaces needed), the base
# image made locally by base.sh, and the host's CA bundle mounted for pip during the build only.
# Prints and records (in ~/.cache/kopfscale/image-build.txt) the build time and image size.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need buildah "builds the image"
need podman "inspects it"

bash "$IMAGE_DIR/base.sh"
[[ -r "$HOST_CA_BUNDLE" ]] || { log "no CA bundle at $HOST_CA_BUNDLE (set KOPFSCALE_CA_BUNDLE)"; exit 1; }
start=$SECONDS
log "building $IMAGE from $BASE_IMAGE"
buildah bud \
    --isolation chroot \
    --layers=false \
    --file "$REPO_ROOT/Dockerfile" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg PIP_CERT_FILE=/run/kopfscale-build-ca.crt \
    --volume "$HOST_CA_BUNDLE:/run/kopfscale-build-ca.crt:ro" \
    --tag "$IMAGE" \
    "$REPO_ROOT"
seconds=$((SECONDS - start))
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
base_size=$(podman image inspect "$BASE_IMAGE" --format '{{.Size}}')
summary="$(date -u +%Y-%m-%dT%H:%M:%SZ) $IMAGE built in ${seconds}s: $((size / 1000000)) MB ($((base_size / 1000000)) MB of it the base $BASE_IMAGE)"
echo "$summary" | tee -a "$CACHE_ROOT/image-build.txt"
