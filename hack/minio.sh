#!/usr/bin/env bash
# Prints the path of a MinIO server binary, building it when it is not cached.
#
# MinIO is AGPL: it is built from the Go module proxy as a separate program
# (a module-less `go install pkg@version`, resolved by MinIO's own go.mod),
# never imported by this module. Version from hack/versions.env. About 4.5
# minutes and 150 MB cold; cached in the user cache dir. $STSBIND_MINIO,
# when set, wins.
#
#   hack/minio.sh          print the path (build when missing)
#   hack/minio.sh --check  resolve the module and its package list, no compile
#
# Progress goes to stderr; stdout carries only the path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "${here}/versions.env"
source "${here}/lib/assets.sh"
ASSETS_LOG_PREFIX=minio

check=false
[[ "${1:-}" == "--check" ]] && check=true

if [[ -n "${STSBIND_MINIO:-}" ]] && ! ${check}; then
  echo "${STSBIND_MINIO}"
  exit 0
fi

ldflags="-s -w"
key="$(assets_key "minio=${MINIO_VERSION}" "ldflags=${ldflags}" "CGO_ENABLED=0 -trimpath")"
dest="$(assets_cache_root)/minio/${MINIO_VERSION}-${key}"

start=$(date +%s)
if ${check}; then
  # The module's own directory is its build context: list the command's
  # packages there, as go install would resolve them.
  dir="$(GOFLAGS=-mod=mod go mod download -json "github.com/minio/minio@${MINIO_VERSION}" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  [[ -n "${dir}" ]] || { assets_log "github.com/minio/minio@${MINIO_VERSION} is not on the module proxy"; exit 1; }
  n="$(cd "${dir}" && GOFLAGS=-mod=mod GOWORK=off go list -deps . | wc -l)"
  assets_log "check passed in $(( $(date +%s) - start ))s: minio ${MINIO_VERSION} (${n} packages)"
  exit 0
fi

if assets_complete "${dest}" minio; then
  echo "${dest}/minio"
  exit 0
fi

assets_log "building github.com/minio/minio@${MINIO_VERSION} from the Go module proxy (about 5 minutes cold on 2 cores)"
tmp="$(assets_tmpdir "${dest}")"
trap 'rm -rf "${tmp}"' EXIT
(cd "$(mktemp -d)" && CGO_ENABLED=0 GOBIN="${tmp}" GOFLAGS=-mod=mod \
  go install -trimpath -ldflags "${ldflags}" "github.com/minio/minio@${MINIO_VERSION}" >&2)
assets_install "${tmp}" "${dest}"
assets_log "built in $(( $(date +%s) - start ))s into ${dest}"
echo "${dest}/minio"
