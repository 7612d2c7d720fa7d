#!/usr/bin/env bash
# Prints the path of a MinIO server binary, building it when it is not cached.
#
# MinIO is AGPL: it is built from the Go module proxy as a separate program
# (`go install` in a throwaway GOPATH-free invocation), never imported by this
# module. The proxy only has pseudo-versions; this one was `@latest` when
# pinned. About 4.5 minutes and 150 MB cold; the binary is cached in the user
# cache dir. $STSBIND_MINIO, when set, wins.
#
# Progress goes to stderr; stdout carries only the path.
set -euo pipefail

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"

if [[ -n "${STSBIND_MINIO:-}" ]]; then
  echo "${STSBIND_MINIO}"
  exit 0
fi

dest="${XDG_CACHE_HOME:-$HOME/.cache}/stsbind/minio/${MINIO_VERSION}"
if [[ -x "${dest}/minio" ]]; then
  echo "${dest}/minio"
  exit 0
fi

echo "minio: building github.com/minio/minio@${MINIO_VERSION} from the Go module proxy (about 5 minutes cold)" >&2
start=$(date +%s)
mkdir -p "${dest}.tmp"
# A module-less go install keeps MinIO's dependency graph out of this module.
(cd "$(mktemp -d)" && CGO_ENABLED=0 GOBIN="${dest}.tmp" GOFLAGS=-mod=mod \
  go install -trimpath -ldflags "-s -w" "github.com/minio/minio@${MINIO_VERSION}" >&2)
rm -rf "${dest}"
mv "${dest}.tmp" "${dest}"
echo "minio: built in $(( $(date +%s) - start ))s into ${dest}" >&2
echo "${dest}/minio"
