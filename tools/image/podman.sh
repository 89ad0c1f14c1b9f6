#!/usr/bin/env bash
# podman with this repository's configuration (tools/image/containers.conf, vfs storage under
# ~/.cache/kopfscale/containers): `tools/image/podman.sh images`, `... run ...`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need podman "runs the image"
exec podman "$@"
