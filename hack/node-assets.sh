#!/usr/bin/env bash
# Prints a directory holding kubelet, kube-controller-manager, kube-scheduler
# and kube-proxy for the real one-node cluster (internal/testrig/node).
#
# kube-apiserver, etcd and kubectl come from hack/envtest-assets.sh: the node
# runs the same Kubernetes version as envtest (K8S_VERSION in
# hack/versions.env). Built from the Go module proxy with the same
# throwaway-module recipe, CGO_ENABLED=0 (kubelet builds static and works),
# cached in the user cache dir. A cold build takes about 5-10 minutes on two
# idle cores, 16 under load. $STSBIND_NODE_ASSETS, when set, wins.
#
#   hack/node-assets.sh          print the directory (build when missing)
#   hack/node-assets.sh --check  resolve the throwaway module (module graph and
#                                package list, no compile), even when cached
#
# Progress goes to stderr; stdout carries only the directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "${here}/versions.env"
source "${here}/lib/assets.sh"
ASSETS_LOG_PREFIX=node-assets

check=false
[[ "${1:-}" == "--check" ]] && check=true

if [[ -n "${STSBIND_NODE_ASSETS:-}" ]] && ! ${check}; then
  echo "${STSBIND_NODE_ASSETS}"
  exit 0
fi

cmds=(kubelet kube-controller-manager kube-scheduler kube-proxy)
ldflags="$(k8s_ldflags)"
build_flags="CGO_ENABLED=0 -trimpath"
key="$(assets_key "k8s=${K8S_VERSION}" "cmds=${cmds[*]}" "ldflags=${ldflags}" "${build_flags}")"
dest="$(assets_cache_root)/node/k8s-${K8S_VERSION}-${key}"
if ! ${check} && assets_complete "${dest}" "${cmds[@]}"; then
  echo "${dest}"
  exit 0
fi

work="$(mktemp -d)"
tmp=""
trap 'rm -rf "${work}" ${tmp:+"${tmp}"}' EXIT

pkgs=()
for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${c}"); done

start=$(date +%s)
if ${check}; then
  k8s_module "${work}/k8s" "${cmds[@]}"
  go_list_deps "${work}/k8s" "${pkgs[@]}"
  assets_log "check passed in $(( $(date +%s) - start ))s: k8s v${K8S_VERSION} (${cmds[*]})"
  exit 0
fi

assets_log "building ${cmds[*]} v${K8S_VERSION} from the Go module proxy (about 5-10 minutes cold on 2 cores, 16 under load)"
tmp="$(assets_tmpdir "${dest}")"
k8s_module "${work}/k8s" "${cmds[@]}"
for c in "${cmds[@]}"; do
  assets_log "go build ${c}"
  (cd "${work}/k8s" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "${ldflags}" -o "${tmp}/${c}" "k8s.io/kubernetes/cmd/${c}")
done

assets_install "${tmp}" "${dest}"
tmp=""
assets_log "built in $(( $(date +%s) - start ))s into ${dest}"
echo "${dest}"
