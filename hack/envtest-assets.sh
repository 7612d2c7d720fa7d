#!/usr/bin/env bash
# Prints a directory holding kube-apiserver, etcd and kubectl for envtest.
#
# Order: $KUBEBUILDER_ASSETS when set; else the copy cached in the user cache
# dir; else build them from the Go module proxy into that cache. The usual
# envtest download is not reachable from this project's machines, the module
# proxy is. Versions come from hack/versions.env; every fetch names one.
# A cold build takes about five minutes on two cores.
#
#   hack/envtest-assets.sh          print the directory (build when missing)
#   hack/envtest-assets.sh --check  resolve the throwaway modules (module graph
#                                   and package list, no compile), even when
#                                   the binaries are cached; for CI
#
# Progress goes to stderr; stdout carries only the directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "${here}/versions.env"
source "${here}/lib/assets.sh"
ASSETS_LOG_PREFIX=envtest-assets

check=false
[[ "${1:-}" == "--check" ]] && check=true

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && ! ${check}; then
  echo "${KUBEBUILDER_ASSETS}"
  exit 0
fi

ldflags="$(k8s_ldflags)"
build_flags="CGO_ENABLED=0 -trimpath"
key="$(assets_key "k8s=${K8S_VERSION}" "etcd=${ETCD_VERSION}" "ldflags=${ldflags}" "etcd-ldflags=-s -w" "${build_flags}")"
dest="$(assets_cache_root)/envtest/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-${key}"
if ! ${check} && assets_complete "${dest}" kube-apiserver etcd kubectl; then
  echo "${dest}"
  exit 0
fi

work="$(mktemp -d)"
tmp=""
trap 'rm -rf "${work}" ${tmp:+"${tmp}"}' EXIT

etcd_module() {
  local dir="$1" go_line
  go_line="$(grep -m1 '^go ' "${work}/k8s/go.mod")"
  mkdir -p "${dir}"
  printf 'module stsbind.dev/etcd-assets\n\n%s\n' "${go_line}" >"${dir}/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"${dir}/tools.go"
  (cd "${dir}" && GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >&2)
}

start=$(date +%s)
if ${check}; then
  k8s_module "${work}/k8s" kube-apiserver kubectl
  go_list_deps "${work}/k8s" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
  etcd_module "${work}/etcd"
  go_list_deps "${work}/etcd" go.etcd.io/etcd/server/v3
  assets_log "check passed in $(( $(date +%s) - start ))s: k8s v${K8S_VERSION}, etcd v${ETCD_VERSION}"
  exit 0
fi

assets_log "building kube-apiserver, kubectl v${K8S_VERSION} and etcd v${ETCD_VERSION} from the Go module proxy (about 5 minutes cold on 2 cores)"
tmp="$(assets_tmpdir "${dest}")"
k8s_module "${work}/k8s" kube-apiserver kubectl
for cmd in kube-apiserver kubectl; do
  assets_log "go build ${cmd}"
  (cd "${work}/k8s" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "${ldflags}" -o "${tmp}/${cmd}" "k8s.io/kubernetes/cmd/${cmd}")
done
etcd_module "${work}/etcd"
assets_log "go build etcd"
(cd "${work}/etcd" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${tmp}/etcd" go.etcd.io/etcd/server/v3)

assets_install "${tmp}" "${dest}"
tmp=""
assets_log "built in $(( $(date +%s) - start ))s into ${dest}"
echo "${dest}"
