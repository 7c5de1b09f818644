#!/usr/bin/env bash
# Build the control-plane binaries the testbed needs (etcd, kube-apiserver,
# helm, kubectl when the machine has none, and Jaeger v2 for the tracing test)
# from their Go modules through the Go module proxy. No prebuilt binary is downloaded (none can be here).
#
# Output: $CACHE/bin/<name>-<version> plus a stable symlink $CACHE/bin/<name>,
# where CACHE=${BATON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton}.
# Anything already built is skipped, so a machine builds each version once.
#
# Usage: hack/build-k8s-bins.sh [etcd] [kube-apiserver] [helm] [kubectl] [jaeger]
#   (no argument: all of them; kubectl only when needed, see BATON_BUILD_KUBECTL)
# Env:
#   BATON_CACHE          cache root (see above)
#   BATON_BUILD_JOBS     go build -p value (default 2)
#   BATON_BUILD_KUBECTL  auto (default: build only if no kubectl is installed),
#                        1 (always build), 0 (never build)
#
# Cold build on a 2-core machine: about 6.5 minutes in all (kube-apiserver ~4),
# leaving ~1.2 GiB in the Go module cache and ~3 GiB in the Go build cache;
# Jaeger adds ~5 minutes cold (~1.3 GiB modules, ~1.6 GiB build cache).
# See hack/README-testbed.md. Builds are reproducible (same bytes each time).
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

# ---- pinned versions --------------------------------------------------------
ETCD_VERSION=v3.6.16        # go.etcd.io/etcd/server/v3
KUBERNETES_VERSION=v1.36.3  # k8s.io/kubernetes (kube-apiserver, kubectl)
HELM_VERSION=v3.22.0        # helm.sh/helm/v3
# Jaeger tags its Go module v1.x.y and releases the same commit as v2.x.y; cmd/jaeger is v2.
JAEGER_MODULE_VERSION=v1.76.0  # github.com/jaegertracing/jaeger
JAEGER_VERSION=v2.13.0         # the release that module version is (its CHANGELOG)
JAEGER_DATE=2025-12-03T16:07:08Z  # the module version's time on the proxy (build info)
# -----------------------------------------------------------------------------

CACHE_DIR="${BATON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton}"
BIN_DIR="$CACHE_DIR/bin"
SRC_DIR="$CACHE_DIR/src"  # throwaway wrapper modules, one per pinned module version
JOBS="${BATON_BUILD_JOBS:-2}"
BUILD_KUBECTL="${BATON_BUILD_KUBECTL:-auto}"

log() { printf '[build-k8s-bins] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Deterministic, host-native, static builds; never fetch another toolchain.
export GOFLAGS="-mod=mod -buildvcs=false"
export GOWORK=off
export GOTOOLCHAIN=local
export GO111MODULE=on
export CGO_ENABLED=0
unset GOOS GOARCH

mkdir -p "$BIN_DIR" "$SRC_DIR"

# One build at a time per cache dir (CI and a developer may both call this).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/.build-k8s-bins.lock"
  if ! flock -n 9; then
    log "another build holds $CACHE_DIR/.build-k8s-bins.lock; waiting"
    flock 9
  fi
  rm -f "$BIN_DIR"/.*.tmp.*  # left by a killed run; we hold the lock
fi

TMP_ROOT="$(mktemp -d)"
trap 'rm -rf "$TMP_ROOT"; rm -f "$BIN_DIR"/.*.tmp.$$' EXIT

GO_VERSION=""
# Go is only needed when something has to be built.
need_go() {
  [[ -z "$GO_VERSION" ]] || return 0
  command -v go >/dev/null 2>&1 || die "go is not installed (need Go >= 1.26 to build)"
  GO_VERSION="$(go env GOVERSION)"   # e.g. go1.26.8
  GO_VERSION="${GO_VERSION#go}"
  GO_VERSION="${GO_VERSION%%[-+ ]*}"
  log "$(go version); GOMODCACHE=$(go env GOMODCACHE); GOCACHE=$(go env GOCACHE)"
}

# have <name> <version>: true (and re-point the symlink) if already built.
have() {
  local name="$1" ver="$2"
  [[ -x "$BIN_DIR/$name-$ver" ]] || return 1
  log "$name $ver: already built ($BIN_DIR/$name-$ver), skipping"
  link "$name" "$name-$ver"
}

# Path of a module version's go.mod in the module cache (fetches only the .mod).
module_gomod() {
  local mod="$1" ver="$2" f
  f="$(cd "$TMP_ROOT" && GOFLAGS= go list -m -f '{{.GoMod}}' "$mod@$ver")" \
    || die "cannot resolve $mod@$ver through the module proxy"
  [[ -s "$f" ]] || die "no go.mod for $mod@$ver"
  printf '%s\n' "$f"
}

# Print the replace directives a wrapper module must carry for <gomod>:
# directory replaces (./staging/src/k8s.io/api, ../api, ...) become the same
# module at <local-version>; FORBIDDEN_DEPENDENCY guards are dropped; module
# replaces are copied as they are. (A dependency's own replaces are ignored by
# Go, which is why a wrapper is needed at all.)
wrapper_replaces() {
  local gomod="$1" local_ver="$2"
  awk -v lv="$local_ver" '
    { sub(/\/\/.*/, "") }
    /^replace[ \t]*\(/ { blk = 1; next }
    blk && /^[ \t]*\)/ { blk = 0; next }
    /^replace[ \t]/ { sub(/^replace[ \t]+/, ""); line = $0 }
    blk && /=>/ { line = $0 }
    line != "" {
      split(line, side, "=>"); line = ""
      n = split(side[1], l, " "); m = split(side[2], r, " ")
      if (n < 1 || m < 1) next
      if (r[1] ~ /FORBIDDEN_DEPENDENCY/) next
      if (r[1] ~ /^(\.\.?\/|\/)/) { printf "\t%s => %s %s\n", l[1], l[1], lv; next }
      gsub(/^[ \t]+|[ \t]+$/, "", side[1]); gsub(/^[ \t]+|[ \t]+$/, "", side[2])
      printf "\t%s => %s\n", side[1], side[2]
    }' "$gomod" | sed 's/[ \t]*$//'
}

# ensure_wrapper <dir> <module> <version> <local-version>: (re)write the wrapper go.mod.
ensure_wrapper() {
  local dir="$1" mod="$2" ver="$3" local_ver="$4" gomod replaces
  need_go
  gomod="$(module_gomod "$mod" "$ver")"
  replaces="$(wrapper_replaces "$gomod" "$local_ver")"
  mkdir -p "$dir"
  {
    printf '// Generated by hack/build-k8s-bins.sh; safe to delete.\n'
    printf 'module baton.local/k8s-bins/%s\n\ngo %s\n\nrequire %s %s\n' \
      "$(basename "$dir")" "$GO_VERSION" "$mod" "$ver"
    if [[ -n "$replaces" ]]; then
      printf '\nreplace (\n%s\n)\n' "$replaces"
    fi
  } >"$dir/go.mod.new"
  if ! cmp -s "$dir/go.mod.new" "$dir/go.mod" 2>/dev/null; then
    mv "$dir/go.mod.new" "$dir/go.mod"
    log "wrote wrapper module $dir/go.mod ($(printf '%s\n' "$replaces" | grep -c '=>' || true) replace lines)"
  else
    rm -f "$dir/go.mod.new"
  fi
}

# link <name> <target>: atomically point $BIN_DIR/<name> at <target>.
link() {
  local name="$1" target="$2"
  ln -sfn "$target" "$BIN_DIR/.$name.link.tmp.$$"
  mv -Tf "$BIN_DIR/.$name.link.tmp.$$" "$BIN_DIR/$name"
}

# build <name> <version> <wrapper-dir> <package> <extra-ldflags> <check-args...>
build() {
  local name="$1" ver="$2" dir="$3" pkg="$4" xld="$5"; shift 5
  local out="$BIN_DIR/$name-$ver" tmp="$BIN_DIR/.$name-$ver.tmp.$$" t0 secs
  have "$name" "$ver" && return 0
  log "$name $ver: building $pkg (go $GO_VERSION, -p $JOBS, nice 19) in $dir"
  t0=$SECONDS
  (cd "$dir" && nice -n 19 go build -p "$JOBS" -trimpath -ldflags "-s -w $xld" -o "$tmp" "$pkg") \
    || die "$name $ver: go build failed (see output above)"
  secs=$((SECONDS - t0))
  log "$name $ver: checking: $name $*"
  "$tmp" "$@" >&2 || die "$name $ver: built binary does not run: $name $*"
  mv -f "$tmp" "$out"
  link "$name" "$name-$ver"
  log "$name $ver: built in ${secs}s, $(du -h "$out" | cut -f1) -> $out"
}

build_etcd() {
  local dir="$SRC_DIR/etcd-$ETCD_VERSION"
  have etcd "$ETCD_VERSION" && return 0
  ensure_wrapper "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION"
  build etcd "$ETCD_VERSION" "$dir" go.etcd.io/etcd/server/v3 "" --version
}

KUBE_WRAPPER="$SRC_DIR/kubernetes-$KUBERNETES_VERSION"
kubernetes_wrapper() {
  local v="${KUBERNETES_VERSION#v}"
  # Staging modules (k8s.io/api, ...) are published as v0.<minor>.<patch>.
  ensure_wrapper "$KUBE_WRAPPER" k8s.io/kubernetes "$KUBERNETES_VERSION" "v0.${v#*.}"
}

kubernetes_ldflags() {
  local v="${KUBERNETES_VERSION#v}" major minor p out=""
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  printf '%s\n' "$out"
}

build_kube_apiserver() {
  have kube-apiserver "$KUBERNETES_VERSION" && return 0
  kubernetes_wrapper
  build kube-apiserver "$KUBERNETES_VERSION" "$KUBE_WRAPPER" k8s.io/kubernetes/cmd/kube-apiserver \
    "$(kubernetes_ldflags)" --version
}

build_kubectl() {
  local sys
  if [[ "$BUILD_KUBECTL" != 0 ]] && have kubectl "$KUBERNETES_VERSION"; then
    return 0
  fi
  if [[ "$BUILD_KUBECTL" == auto ]]; then
    sys=""
    if [[ -x /usr/bin/kubectl ]]; then
      sys=/usr/bin/kubectl
    else
      # Any kubectl on PATH that is not one of ours.
      sys="$(PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$BIN_DIR" | paste -sd: -)" \
        command -v kubectl 2>/dev/null || true)"
    fi
    if [[ -n "$sys" ]]; then
      log "kubectl: using installed $sys (set BATON_BUILD_KUBECTL=1 to build $KUBERNETES_VERSION)"
      link kubectl "$sys"
      return 0
    fi
  elif [[ "$BUILD_KUBECTL" == 0 ]]; then
    log "kubectl: BATON_BUILD_KUBECTL=0, not building"
    return 0
  fi
  kubernetes_wrapper
  build kubectl "$KUBERNETES_VERSION" "$KUBE_WRAPPER" k8s.io/kubernetes/cmd/kubectl \
    "$(kubernetes_ldflags)" version --client
}

build_helm() {
  local dir="$SRC_DIR/helm-$HELM_VERSION" gomod cg minor xld p
  have helm "$HELM_VERSION" && return 0
  ensure_wrapper "$dir" helm.sh/helm/v3 "$HELM_VERSION" "$HELM_VERSION"
  # As helm's Makefile does: version, and the Kubernetes version that
  # .Capabilities/lint default to, taken from the client-go it is built with.
  gomod="$(module_gomod helm.sh/helm/v3 "$HELM_VERSION")"
  cg="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")"
  [[ "$cg" =~ ^v0\.([0-9]+)\. ]] || die "helm: cannot find k8s.io/client-go version in $gomod"
  minor="${BASH_REMATCH[1]}"
  xld="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    xld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
  done
  build helm "$HELM_VERSION" "$dir" helm.sh/helm/v3/cmd/helm "$xld" version
}

build_jaeger() {
  local dir="$SRC_DIR/jaeger-$JAEGER_MODULE_VERSION" p=github.com/jaegertracing/jaeger/internal/version
  have jaeger "$JAEGER_VERSION" && return 0
  ensure_wrapper "$dir" github.com/jaegertracing/jaeger "$JAEGER_MODULE_VERSION" "$JAEGER_MODULE_VERSION"
  # As its Makefile's build-jaeger does, minus the UI bundle (the tests use the HTTP API only;
  # without the bundle the UI route serves a placeholder page).
  build jaeger "$JAEGER_VERSION" "$dir" github.com/jaegertracing/jaeger/cmd/jaeger \
    "-X $p.latestVersion=$JAEGER_VERSION -X $p.date=$JAEGER_DATE" version
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(etcd kube-apiserver helm kubectl jaeger)

log "cache: $CACHE_DIR; targets: ${targets[*]}"
T0=$SECONDS
for t in "${targets[@]}"; do
  case "$t" in
    etcd) build_etcd ;;
    kube-apiserver) build_kube_apiserver ;;
    helm) build_helm ;;
    kubectl) build_kubectl ;;
    jaeger) build_jaeger ;;
    *) die "unknown target '$t' (known: etcd kube-apiserver helm kubectl jaeger)" ;;
  esac
done
log "done in $((SECONDS - T0))s; binaries in $BIN_DIR:"
ls -l "$BIN_DIR" >&2
