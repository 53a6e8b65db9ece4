#!/usr/bin/env bash
# Builds the container image `hexreg` (Containerfile, FROM scratch) from target/static/hexreg,
# which scripts/static.sh writes (run first when missing). Uses podman with the vfs storage
# driver, cgroupfs and file events, which work on CI machines and inside containers that
# cannot run overlayfs or systemd.
#
# Usage: scripts/container.sh [TAG]          (default TAG: hexreg:latest)
#        PODMAN_ROOT=DIR scripts/container.sh  (image storage under DIR/storage, DIR/run:
#                                              what the tests use, to stay out of the user's)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tag="${1:-hexreg:latest}"
[[ -x target/static/hexreg ]] || scripts/static.sh

podman=(podman --storage-driver vfs --cgroup-manager cgroupfs --events-backend file)
if [[ -n "${PODMAN_ROOT:-}" ]]; then
    podman+=(--root "$PODMAN_ROOT/storage" --runroot "$PODMAN_ROOT/run")
fi
"${podman[@]}" build --file Containerfile --tag "$tag" .
