#!/usr/bin/env bash
# Builds lambdarec's container image with ko, without Docker or a registry,
# into an image tarball (docker/OCI image archive: `docker load`, `crane push`,
# `skopeo copy docker-archive:…` all take it):
#
#   infra/image/build.sh [OUT.tar]        (default bin/lambdarec-image.tar)
#
# The base is written by tools/scratchbase into ko's cache (KOCACHE): empty
# but for the CA bundle, user 65532:65532, no shell. The binary is static
# (CGO_ENABLED=0) with the version and commit linked in.
#
# Environment: VERSION (default: git describe), COMMIT (default: git HEAD),
# KOCACHE (default ~/.cache/lambdarec-ko), PLATFORM (default linux/<go arch>),
# IMAGE (repository name, default lambdarec).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-bin/lambdarec-image.tar}"
mkdir -p "$(dirname "$out")"
arch="$(go env GOARCH)"
export VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}"
export COMMIT="${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
export KOCACHE="${KOCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lambdarec-ko}"
export KO_CONFIG_PATH=tools/.ko.yaml
export KO_DOCKER_REPO="${IMAGE:-lambdarec}"
KO_DEFAULTBASEIMAGE="$(cd tools && go run ./scratchbase -arch "$arch")"
export KO_DEFAULTBASEIMAGE
# ko reads the tag list; a dirty tree's "+dirty"-style suffixes are fine in tags.
go tool -modfile=tools/go.mod ko build ./cmd/lambdarec \
	--push=false --bare --tarball="$out" \
	--platform="${PLATFORM:-linux/$arch}" \
	--image-user=65532:65532 --sbom=none \
	--image-label=org.opencontainers.image.version="$VERSION" \
	--image-label=org.opencontainers.image.revision="$COMMIT" \
	--tags="$VERSION" >&2
echo "$out"
