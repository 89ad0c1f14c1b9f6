#!/usr/bin/env bash
# Push the image `make image` built to a registry, with the same tool (buildah), and say how the
# chart and the plain manifests pick it up:
#   make image-push REGISTRY=registry.example.com/team TAG=0.1.0
# pushes localhost/kopfscale:<version> as REGISTRY/kopfscale:TAG. Credentials: `buildah login
# REGISTRY` first (or REGISTRY_AUTH_FILE). TLS_VERIFY=false for a registry without TLS.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need buildah "pushes the image"

registry="${REGISTRY:-}"
tag="${TAG:-}"
[[ -n "$registry" && -n "$tag" ]] || {
    log "usage: make image-push REGISTRY=<host[/path]> TAG=<tag>   (e.g. REGISTRY=ghcr.io/acme TAG=0.1.0)"
    exit 2
}
registry="${registry%/}"
repository="$registry/kopfscale"
buildah inspect --type image "$IMAGE" >/dev/null 2>&1 || {
    log "$IMAGE is not built here: run make image first"
    exit 1
}
log "pushing $IMAGE as $repository:$tag"
buildah push --tls-verify="${TLS_VERIFY:-true}" "$IMAGE" "docker://$repository:$tag"
cat <<NEXT
pushed $repository:$tag
  helm:  helm install kopfscale deploy/helm/kopfscale -n kopfscale-system --create-namespace \\
           --set image.repository=$repository --set image.tag=$tag
  plain: make manifests REGISTRY=$registry TAG=$tag   (writes build/manifests/, then kubectl apply -f)
NEXT
