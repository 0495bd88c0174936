#!/usr/bin/env bash
# Build the Pinhole container image with buildah (or podman) from a binary
# compiled here, FROM scratch: nothing is pulled from a registry.
#
#   deploy/container/build.sh [TAG]          default TAG: pinhole:$VERSION
#
# Environment:
#   VERSION        stamped into the binary (pinhole version); default: git describe, else "dev"
#   BUILDER        buildah (default when installed) or podman
#   OCI_ARCHIVE    also write the image to this OCI archive file (for copying to another host)
#   STORAGE_ROOT   use a private container storage under this directory (tests use it)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
TAG=${1:-pinhole:${VERSION}}
if [ -z "${BUILDER:-}" ]; then
  if command -v buildah >/dev/null; then BUILDER=buildah
  elif command -v podman >/dev/null; then BUILDER=podman
  else echo "build.sh: needs buildah or podman (apt-get install buildah)" >&2; exit 1
  fi
fi
storage=()
if [ -n "${STORAGE_ROOT:-}" ]; then
  storage=(--root "$STORAGE_ROOT/root" --runroot "$STORAGE_ROOT/run" --storage-driver vfs)
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# Static (no cgo), reproducible paths, symbols stripped, version stamped.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o "$ctx/pinhole" ./cmd/pinhole
cp deploy/container/Containerfile "$ctx/Containerfile"

if [ "$BUILDER" = podman ]; then
  podman "${storage[@]}" build --no-cache -f "$ctx/Containerfile" -t "$TAG" "$ctx"
else
  buildah "${storage[@]}" bud --no-cache --isolation chroot -f "$ctx/Containerfile" -t "$TAG" "$ctx"
fi
if [ -n "${OCI_ARCHIVE:-}" ]; then
  "$BUILDER" "${storage[@]}" push "$TAG" "oci-archive:${OCI_ARCHIVE}:${TAG}"
fi
echo "built $TAG (version $VERSION)"
