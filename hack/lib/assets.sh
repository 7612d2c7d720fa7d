# Shared by the hack/ scripts that build binaries from the Go module proxy
# into the user cache dir. Source it; it defines functions only.
#
# Cache layout: <cache>/<name>-<key>/ where key hashes everything that
# changes the output (versions, ldflags, build flags, Go version). A build
# goes into a fresh hidden temp dir beside it and is renamed into place
# only when complete, so a failed or interrupted run never leaves anything a
# later run could mistake for a finished cache entry.

assets_cache_root() { echo "${XDG_CACHE_HOME:-$HOME/.cache}/stsbind"; }

assets_log() { echo "${ASSETS_LOG_PREFIX:-assets}: $*" >&2; }

# assets_key <text...>: a short stable hash of the arguments and the Go toolchain.
assets_key() {
  printf '%s\n' "$@" "$(go env GOVERSION GOOS GOARCH)" | sha256sum | cut -c1-12
}

# assets_complete <dir> <file...>: true when every file is executable in dir.
assets_complete() {
  local dir="$1"; shift
  local f
  for f in "$@"; do [[ -x "${dir}/${f}" ]] || return 1; done
}

# assets_tmpdir <dest>: a fresh build dir beside dest; removes temp dirs that
# earlier runs left behind for any entry (older than a day: not a build that
# is still running), and the `<dest>.tmp` dirs of the scripts' first layout.
assets_tmpdir() {
  local dest="$1" parent
  parent="$(dirname "${dest}")"
  mkdir -p "${parent}"
  find "${parent}" -maxdepth 1 -name '.build-*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
  find "${parent}" -maxdepth 1 -name '*.tmp' -type d -exec rm -rf {} + 2>/dev/null || true
  mktemp -d "${parent}/.build-$(basename "${dest}")-XXXXXX"
}

# assets_install <tmp> <dest>: move a finished build into place.
assets_install() {
  local tmp="$1" dest="$2"
  rm -rf "${dest}"
  mv "${tmp}" "${dest}"
}

# k8s_module <dir> <cmd...>: write a throwaway module in dir that builds
# k8s.io/kubernetes/cmd/<cmd> at exactly v$K8S_VERSION and resolve it.
# k8s.io/kubernetes points its staging modules at ./staging; a consumer must
# replace each with the published v0.x.y release of the same minor.
k8s_module() {
  local dir="$1"; shift
  local staging="v0.${K8S_VERSION#1.}" upstream go_line godebug_line c
  mkdir -p "${dir}"
  upstream="$(cd "${dir}" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  [[ -n "${upstream}" ]] || { assets_log "k8s.io/kubernetes@v${K8S_VERSION} is not on the module proxy"; return 1; }
  go_line="$(grep -m1 '^go ' "${upstream}")"
  godebug_line="$(grep -m1 '^godebug ' "${upstream}" || true)"
  {
    echo "module stsbind.dev/k8s-assets"
    echo
    echo "${go_line}"
    echo "${godebug_line}"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "${upstream}" |
      awk '{print $1}' | grep -v -E 'sample-(cli-plugin|controller)$' |
      while read -r m; do echo "replace ${m} => ${m} ${staging}"; done
  } >"${dir}/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${c}"; done
    printf ')\n'
  } >"${dir}/tools.go"
  (cd "${dir}" && GOFLAGS=-mod=mod go get -tags tools $(for c in "$@"; do echo "k8s.io/kubernetes/cmd/${c}@v${K8S_VERSION}"; done) >&2) || return 1
  k8s_module_pinned "${dir}"
}

# k8s_module_pinned <dir>: fail unless the module still builds exactly
# v$K8S_VERSION with staging modules of the same minor (a `go get` that
# resolved "latest" would have moved them).
k8s_module_pinned() {
  local dir="$1" got
  got="$(cd "${dir}" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  if [[ "${got}" != "v${K8S_VERSION}" ]]; then
    assets_log "the throwaway module resolved k8s.io/kubernetes ${got}, not v${K8S_VERSION}"
    return 1
  fi
}

# k8s_ldflags: the version stamp every Kubernetes binary here is built with.
k8s_ldflags() {
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  echo "-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
}

# go_list_deps <dir> <pkg...>: resolve the full package list of the commands
# (module graph and every import), without compiling anything.
go_list_deps() {
  local dir="$1"; shift
  local n
  n="$(cd "${dir}" && GOFLAGS=-mod=mod go list -tags tools -deps "$@" | wc -l)" || return 1
  assets_log "resolved $* (${n} packages)"
}
