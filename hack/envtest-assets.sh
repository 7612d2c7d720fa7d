#!/usr/bin/env bash
# Prints a directory holding kube-apiserver, etcd and kubectl for envtest.
#
# Order: $KUBEBUILDER_ASSETS when set; else the copy cached in the user cache
# dir; else build them from the Go module proxy into that cache. The usual
# envtest download is not reachable from this project's machines, the module
# proxy is. A cold build takes about four minutes on two cores; the output is
# byte-identical run to run, so a cache hit is always safe.
#
# Progress goes to stderr; stdout carries only the directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.8}"

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  echo "${KUBEBUILDER_ASSETS}"
  exit 0
fi

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/stsbind"
dest="${cache_root}/envtest/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
if [[ -x "${dest}/kube-apiserver" && -x "${dest}/etcd" && -x "${dest}/kubectl" ]]; then
  echo "${dest}"
  exit 0
fi

log() { echo "envtest-assets: $*" >&2; }
log "building kube-apiserver, kubectl v${K8S_VERSION} and etcd v${ETCD_VERSION} from the Go module proxy (about 4 minutes cold)"
start=$(date +%s)

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
mkdir -p "${work}/k8s" "${work}/etcd" "${dest}.tmp"

# --- kube-apiserver and kubectl -------------------------------------------
# k8s.io/kubernetes points its staging modules at ./staging; a consumer
# module must replace each of them with the published v0.x.y release.
staging_version="v0.${K8S_VERSION#1.}"
upstream_mod="$(cd "${work}/k8s" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
go_line="$(grep -m1 '^go ' "${upstream_mod}")"
godebug_line="$(grep -m1 '^godebug ' "${upstream_mod}" || true)"
{
  echo "module stsbind.dev/envtest-assets"
  echo
  echo "${go_line}"
  echo "${godebug_line}"
  echo
  echo "require k8s.io/kubernetes v${K8S_VERSION}"
  echo
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "${upstream_mod}" |
    awk '{print $1}' | grep -v -E 'sample-(cli-plugin|controller)$' |
    while read -r m; do echo "replace ${m} => ${m} ${staging_version}"; done
} >"${work}/k8s/go.mod"
cat >"${work}/k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
(
  cd "${work}/k8s"
  GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
  GOFLAGS=-mod=mod go get -tags tools k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2
  for cmd in kube-apiserver kubectl; do
    log "go build ${cmd}"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "${ldflags}" -o "${dest}.tmp/${cmd}" "k8s.io/kubernetes/cmd/${cmd}"
  done
)

# --- etcd --------------------------------------------------------------------
(
  cd "${work}/etcd"
  cat >go.mod <<GOMOD
module stsbind.dev/etcd-assets

${go_line}
GOMOD
  cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >&2
  log "go build etcd"
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${dest}.tmp/etcd" go.etcd.io/etcd/server/v3
)

rm -rf "${dest}"
mv "${dest}.tmp" "${dest}"
log "built in $(( $(date +%s) - start ))s into ${dest}"
echo "${dest}"
