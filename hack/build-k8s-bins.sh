#!/usr/bin/env bash
# Build the binaries the test bed runs (etcd, kube-apiserver, kubectl, helm, and Jaeger v2 for the
# tracing test) and the real node of hack/cluster.sh (kubelet, kube-scheduler,
# kube-controller-manager, kube-proxy, CoreDNS, and the pod sandbox's pause binary from
# hack/pause/; kube-router, whose network-policy controller enforces NetworkPolicies) from their
# Go modules through the Go module proxy, and verify each against the
# lock, hack/testbed-bins.lock (versions, toolchain, sha256). No prebuilt binary is downloaded
# (none can be here), and nothing that happens to be installed on the machine is used: the
# machine's own kubectl, say, is never linked in.
#
# Output: $CACHE/bin/<name>-<version> plus a stable symlink $CACHE/bin/<name>,
# where CACHE=${BATON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton}.
# A cached binary whose sha256 matches the lock is kept; one that does not (stale, foreign,
# truncated) is rebuilt, and a build whose bytes still differ from the lock fails.
#
# Usage: hack/build-k8s-bins.sh [--verify | --update-lock] [NAME...]
#   NAME: etcd kube-apiserver kubectl helm jaeger kubelet kube-scheduler kube-controller-manager
#         kube-proxy coredns pause kube-router; or the groups `testbed` (the first five) and
#         `node` (the rest)
#   (no name: all of them)
#   --verify       build nothing: check that each cached binary is there, is the one the lock
#                  names and that its symlink points at it; print a table; exit 1 on any miss
#   --update-lock  build what is missing, then record the sha256 of each binary in the lock
#                  for this platform (after changing a version there)
# Env:
#   BATON_CACHE          cache root (see above)
#   BATON_BUILD_JOBS     go build -p value (default 2)
#
# Cold build on a 2-core machine (empty Go caches): ~12.5 minutes for the test bed's five, ~12 more
# for the node's six and ~4 for kube-router (docs/real-node.md), see hack/README-testbed.md; with
# the binaries cached and verified: a few seconds.
set -euo pipefail

MODE=build
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  --verify) MODE=verify; shift ;;
  --update-lock) MODE=update-lock; shift ;;
esac

TESTBED_TARGETS=(etcd kube-apiserver kubectl helm jaeger)
NODE_TARGETS=(kubelet kube-scheduler kube-controller-manager kube-proxy coredns pause kube-router)
ALL_TARGETS=("${TESTBED_TARGETS[@]}" "${NODE_TARGETS[@]}")
# expand_targets <name...>: the names, groups expanded, or all of them when none is given.
expand_targets() {
  local t
  [[ $# -gt 0 ]] || set -- "${ALL_TARGETS[@]}"
  for t in "$@"; do
    case "$t" in
      testbed) printf '%s\n' "${TESTBED_TARGETS[@]}" ;;
      node) printf '%s\n' "${NODE_TARGETS[@]}" ;;
      *) printf '%s\n' "$t" ;;
    esac
  done
}
LOCK="$(cd "$(dirname "$0")" && pwd)/testbed-bins.lock"
CACHE_DIR="${BATON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton}"
BIN_DIR="$CACHE_DIR/bin"
SRC_DIR="$CACHE_DIR/src"  # throwaway wrapper modules, one per pinned module version
JOBS="${BATON_BUILD_JOBS:-2}"

log() { printf '[build-k8s-bins] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- the lock ----------------------------------------------------------------
[[ -r "$LOCK" ]] || die "no lock file at $LOCK"

# The platform a lock line is for, as Go names it (the hash differs per platform).
host_platform() {
  local os arch
  os="$(uname -s | tr '[:upper:]' '[:lower:]')"
  case "$(uname -m)" in
    x86_64|amd64) arch=amd64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
  esac
  printf '%s/%s\n' "$os" "$arch"
}
PLATFORM="$(host_platform)"

lock_toolchain() {
  local t
  t="$(awk '$1 == "toolchain" { print $2; exit }' "$LOCK")"
  [[ "$t" =~ ^go[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || die "$LOCK: no valid 'toolchain goX.Y.Z' line"
  printf '%s\n' "$t"
}

# lock_version <name>: the pinned version; every line naming <name> must agree on it.
lock_version() {
  local name="$1" versions
  versions="$(awk -v n="$name" '$1 == n { print $2 }' "$LOCK" | sort -u)"
  [[ -n "$versions" ]] || die "$LOCK: no line for $name"
  [[ "$(printf '%s\n' "$versions" | wc -l)" -eq 1 ]] \
    || die "$LOCK: the lines for $name disagree on the version: $(tr "\n" " " <<<"$versions")"
  printf '%s\n' "$versions"
}

# lock_sha <name>: the recorded sha256 for this platform ("" when none is recorded).
lock_sha() {
  awk -v n="$1" -v p="$PLATFORM" '$1 == n && $3 == p && length($4) == 64 && $4 ~ /^[0-9a-f]+$/ { print $4; exit }' "$LOCK"
}

# lock_record <name> <version> <sha>: write this platform's line for <name> (replace or add).
lock_record() {
  local name="$1" ver="$2" sha="$3" tmp="$LOCK.tmp.$$"
  awk -v n="$name" -v v="$ver" -v p="$PLATFORM" -v h="$sha" '
    function line() { return sprintf("%-16s %-9s %-13s %s", n, v, p, h) }
    $1 == n && $3 == p { if (!done) print line(); done = 1; next }
    { print }
    END { if (!done) print line() }' "$LOCK" >"$tmp"
  mv -f "$tmp" "$LOCK"
  log "$name $ver: recorded $sha for $PLATFORM in $LOCK"
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

TOOLCHAIN="$(lock_toolchain)"
ETCD_VERSION="$(lock_version etcd)"               # go.etcd.io/etcd/server/v3
KUBERNETES_VERSION="$(lock_version kube-apiserver)"  # k8s.io/kubernetes (kube-apiserver, kubectl)
[[ "$(lock_version kubectl)" == "$KUBERNETES_VERSION" ]] \
  || die "$LOCK: kubectl and kube-apiserver must be the same Kubernetes version (one module)"
for k in kubelet kube-scheduler kube-controller-manager kube-proxy; do
  [[ "$(lock_version "$k")" == "$KUBERNETES_VERSION" ]] \
    || die "$LOCK: $k and kube-apiserver must be the same Kubernetes version (one module)"
done
COREDNS_VERSION="$(lock_version coredns)"         # github.com/coredns/coredns
PAUSE_VERSION="$(lock_version pause)"             # hack/pause/ (this repository's source)
KUBE_ROUTER_VERSION="$(lock_version kube-router)" # github.com/cloudnativelabs/kube-router/v2
# The module version's time on the proxy: kube-router's --version prints it (its Makefile puts the
# build's date there, which would make every build differ).
case "$KUBE_ROUTER_VERSION" in
  v2.1.0) KUBE_ROUTER_DATE=2024-03-02T21:45:54Z ;;
  *) die "kube-router $KUBE_ROUTER_VERSION: add its module's date to $0" ;;
esac
HELM_VERSION="$(lock_version helm)"               # helm.sh/helm/v3
JAEGER_VERSION="$(lock_version jaeger)"           # the release (jaeger version)
# Jaeger tags its Go module v1.x.y and releases the same commit as v2.x.y; cmd/jaeger is v2.
# How the module version maps to the release is build knowledge, so it stays here.
case "$JAEGER_VERSION" in
  v2.13.0)
    JAEGER_MODULE_VERSION=v1.76.0        # github.com/jaegertracing/jaeger (its CHANGELOG)
    JAEGER_DATE=2025-12-03T16:07:08Z ;;  # the module version's time on the proxy (build info)
  *) die "jaeger $JAEGER_VERSION: add its module version and date to $0" ;;
esac
# -----------------------------------------------------------------------------

# check_cached <name> <version>: print "ok", "missing", "unrecorded" or "mismatch <sha>".
check_cached() {
  local f="$BIN_DIR/$1-$2" want got
  [[ -f "$f" && -x "$f" ]] || { echo missing; return; }
  want="$(lock_sha "$1")"
  got="$(sha_of "$f")"
  if [[ -z "$want" ]]; then echo "unrecorded $got"
  elif [[ "$got" == "$want" ]]; then echo ok
  else echo "mismatch $got"
  fi
}

# ---- --verify: read the cache against the lock, build nothing ----------------
if [[ "$MODE" == verify ]]; then
  mapfile -t targets < <(expand_targets "$@")
  bad=0
  printf '%-23s %-9s %-13s %-10s %s\n' binary version platform status sha256
  for t in "${targets[@]}"; do
    ver="$(lock_version "$t")"
    read -r status got <<<"$(check_cached "$t" "$ver")"
    if [[ "$status" == ok ]]; then
      target="$(readlink "$BIN_DIR/$t" 2>/dev/null || true)"
      [[ "$target" == "$t-$ver" ]] || { status="bad-link"; got="$BIN_DIR/$t -> ${target:-nothing}"; }
    fi
    [[ "$status" == ok ]] && got="$(lock_sha "$t")" || bad=1
    printf '%-23s %-9s %-13s %-10s %s\n' "$t" "$ver" "$PLATFORM" "$status" "${got:-}"
  done
  if [[ $bad -ne 0 ]]; then
    log "the cache $BIN_DIR does not match $LOCK: run \`make testbed-bins\` to rebuild"
    exit 1
  fi
  log "all binaries match $LOCK"
  exit 0
fi

# Deterministic, host-native, static builds, with the toolchain the lock names.
export GOFLAGS="-mod=mod -buildvcs=false"
export GOWORK=off
export GOTOOLCHAIN="$TOOLCHAIN"
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
  command -v go >/dev/null 2>&1 \
    || die "go is not installed: building needs Go >= 1.21 (it fetches $TOOLCHAIN itself); on Debian: apt-get install golang-go"
  GO_VERSION="$(cd "$TMP_ROOT" && go env GOVERSION)" \
    || die "go cannot provide the toolchain $TOOLCHAIN (GOTOOLCHAIN=$TOOLCHAIN: is the Go module proxy reachable?)"
  [[ "$GO_VERSION" == "$TOOLCHAIN" ]] \
    || die "go runs $GO_VERSION where the lock names $TOOLCHAIN (a go older than 1.21 cannot switch toolchains)"
  GO_VERSION="${GO_VERSION#go}"
  log "$(cd "$TMP_ROOT" && go version); GOMODCACHE=$(go env GOMODCACHE); GOCACHE=$(go env GOCACHE)"
}

# have <name> <version>: true (and re-point the symlink) if a cached binary matches the lock.
# A binary that does not match is removed, so that it is built again.
have() {
  local name="$1" ver="$2" status got
  read -r status got <<<"$(check_cached "$name" "$ver")"
  case "$status" in
    ok)
      log "$name $ver: cached and matches the lock, skipping"
      link "$name" "$name-$ver"
      return 0 ;;
    missing) return 1 ;;
    unrecorded)
      if [[ "$MODE" == update-lock ]]; then
        lock_record "$name" "$ver" "$got"
        link "$name" "$name-$ver"
        return 0
      fi
      die "$name $ver: no sha256 recorded for $PLATFORM in $LOCK; check the cached binary, then record it with \`$0 --update-lock $name\`" ;;
    mismatch)
      log "$name $ver: cached binary does not match the lock (sha256 $got, lock $(lock_sha "$name")): rebuilding"
      rm -f "$BIN_DIR/$name-$ver"
      return 1 ;;
  esac
}
# Path of a module version's go.mod in the module cache (fetches only the .mod).
module_gomod() {
  local mod="$1" ver="$2" f
  f="$(cd "$TMP_ROOT" && GOFLAGS='' go list -m -f '{{.GoMod}}' "$mod@$ver")" \
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
  local out="$BIN_DIR/$name-$ver" tmp="$BIN_DIR/.$name-$ver.tmp.$$" t0 secs got want
  have "$name" "$ver" && return 0
  need_go
  log "$name $ver: building $pkg (go $GO_VERSION, -p $JOBS, nice 19) in $dir"
  t0=$SECONDS
  (cd "$dir" && nice -n 19 go build -p "$JOBS" -trimpath -ldflags "-s -w $xld" -o "$tmp" "$pkg") \
    || die "$name $ver: go build failed (see output above)"
  secs=$((SECONDS - t0))
  log "$name $ver: checking: $name $*"
  "$tmp" "$@" >&2 || die "$name $ver: built binary does not run: $name $*"
  got="$(sha_of "$tmp")"
  want="$(lock_sha "$name")"
  if [[ "$MODE" == update-lock ]]; then
    [[ "$got" == "$want" ]] || lock_record "$name" "$ver" "$got"
  elif [[ -z "$want" ]]; then
    rm -f "$tmp"
    die "$name $ver: built (sha256 $got) but $LOCK records no hash for $PLATFORM; record it with \`$0 --update-lock $name\` once checked"
  elif [[ "$got" != "$want" ]]; then
    rm -f "$tmp"
    die "$name $ver: the build is not the locked binary: sha256 $got, lock $want (same toolchain $TOOLCHAIN and module versions give the same bytes: what differs?)"
  fi
  mv -f "$tmp" "$out"
  link "$name" "$name-$ver"
  log "$name $ver: built in ${secs}s, $(du -h "$out" | cut -f1), sha256 matches the lock -> $out"
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

# Always the pinned kubectl: a machine's own (e.g. a version-dispatching wrapper of another
# client family) reads some input differently, which once passed CI on one machine by luck.
build_kubectl() {
  have kubectl "$KUBERNETES_VERSION" && return 0
  kubernetes_wrapper
  build kubectl "$KUBERNETES_VERSION" "$KUBE_WRAPPER" k8s.io/kubernetes/cmd/kubectl \
    "$(kubernetes_ldflags)" version --client
}

# The node's Kubernetes binaries: the same wrapper module as kube-apiserver and kubectl.
build_kube_node() {
  local name="$1"
  have "$name" "$KUBERNETES_VERSION" && return 0
  kubernetes_wrapper
  build "$name" "$KUBERNETES_VERSION" "$KUBE_WRAPPER" "k8s.io/kubernetes/cmd/$name" \
    "$(kubernetes_ldflags)" --version
}

build_coredns() {
  local dir="$SRC_DIR/coredns-$COREDNS_VERSION"
  have coredns "$COREDNS_VERSION" && return 0
  ensure_wrapper "$dir" github.com/coredns/coredns "$COREDNS_VERSION" "$COREDNS_VERSION"
  # Its Makefile sets only coremain.GitCommit; the version is in the source.
  build coredns "$COREDNS_VERSION" "$dir" github.com/coredns/coredns \
    "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -version
}

# The pod sandbox's process: hack/pause/ in this repository (a few lines of Go, standard library
# only), copied into a throwaway module so that the build is the same wherever the repo lives.
# The version in the lock names the source; change it when hack/pause/main.go changes.
build_pause() {
  local src dir="$SRC_DIR/pause-$PAUSE_VERSION"
  have pause "$PAUSE_VERSION" && return 0
  need_go
  src="$(cd "$(dirname "$0")" && pwd)/pause"
  mkdir -p "$dir"
  cp -f "$src/main.go" "$dir/main.go"
  printf '// Generated by hack/build-k8s-bins.sh; safe to delete.\nmodule baton.local/pause\n\ngo %s\n' \
    "$GO_VERSION" >"$dir/go.mod"
  build pause "$PAUSE_VERSION" "$dir" . "-X main.version=$PAUSE_VERSION" -version
}

# kube-router: only its network-policy controller runs (hack/cluster.sh: --run-firewall, no
# router, no service proxy), but it is one binary. The Makefile's ldflags, with the version
# and the module's date in place of the commit and the build's date.
build_kube_router() {
  local dir="$SRC_DIR/kube-router-$KUBE_ROUTER_VERSION" p=github.com/cloudnativelabs/kube-router/v2/pkg/version
  have kube-router "$KUBE_ROUTER_VERSION" && return 0
  ensure_wrapper "$dir" github.com/cloudnativelabs/kube-router/v2 "$KUBE_ROUTER_VERSION" "$KUBE_ROUTER_VERSION"
  build kube-router "$KUBE_ROUTER_VERSION" "$dir" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
    "-X $p.Version=$KUBE_ROUTER_VERSION -X $p.BuildDate=$KUBE_ROUTER_DATE" --version
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

mapfile -t targets < <(expand_targets "$@")

log "cache: $CACHE_DIR; lock: $LOCK ($TOOLCHAIN, $PLATFORM); targets: ${targets[*]}"
T0=$SECONDS
for t in "${targets[@]}"; do
  case "$t" in
    etcd) build_etcd ;;
    kube-apiserver) build_kube_apiserver ;;
    helm) build_helm ;;
    kubectl) build_kubectl ;;
    jaeger) build_jaeger ;;
    kubelet|kube-scheduler|kube-controller-manager|kube-proxy) build_kube_node "$t" ;;
    coredns) build_coredns ;;
    pause) build_pause ;;
    kube-router) build_kube_router ;;
    *) die "unknown target '$t' (known: ${ALL_TARGETS[*]})" ;;
  esac
done
log "done in $((SECONDS - T0))s; binaries in $BIN_DIR:"
ls -l "$BIN_DIR" >&2
