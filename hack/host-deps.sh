#!/usr/bin/env bash
# What the README's two commands need from the host, checked (and, where Debian's packages can
# provide it and we are root, installed) before anything else runs. Idempotent: a host that has
# everything is left untouched. Anything else the project runs is pinned and built by its own
# files (requirements/*.txt, hack/testbed-bins.lock).
#
# Usage: hack/host-deps.sh [python] [go] [browser] [image] [node]
#   (no argument: the first four, what `make test` needs; `node` is hack/cluster.sh's)
#   python  python3 >= 3.11 with venv and ensurepip (`make setup`, `make demo`)
#   go      Go >= 1.21, which fetches the locked toolchain itself, and the build script's
#           tools: sha256sum, flock, awk (`make testbed-bins`, `make test`)
#   browser Chromium, headless: the presence timeline's page is checked in a real browser
#           (tests/integration/test_presence_timeline.py; `make test`)
#   image   podman (with runc), buildah and mmdebstrap: the image is built without Docker and
#           without a registry, on a base made from Debian packages (hack/image.sh; `make image`,
#           `make test`)
#   node    a real node without Docker (hack/cluster.sh, `make cluster`): containerd, runc, the
#           CNI plugins, iptables, conntrack, nftables (kube-proxy's nftables mode runs `nft`),
#           openssl (the cluster's certificates), ip (iproute2), ipset (kube-router's
#           network-policy controller keeps its peer sets there)
# Env: PYTHON (default python3)
set -euo pipefail
PYTHON="${PYTHON:-python3}"

log() { printf '[host-deps] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt_install <package...>: only as root on a Debian-like host; otherwise say what to install.
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing: $*; install it (Debian: apt-get install $*) and run again"
  fi
  log "installing $* with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2; then
    apt-get update -q >&2 || die "apt-get update failed: cannot install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
      || die "apt-get could not install $*"
  fi
}

check_python() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON: Baton needs Python >= 3.11 (set PYTHON=...)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" --version 2>&1): Baton needs Python >= 3.11 (set PYTHON=...)"
  if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian splits venv/ensurepip out of its python3 package.
    apt_install "python3.$("$PYTHON" -c 'import sys; print(sys.version_info[1])')-venv"
    "$PYTHON" -c 'import venv, ensurepip' || die "$PYTHON still lacks venv/ensurepip"
  fi
}

check_go() {
  local tools=() t v
  for t in sha256sum:coreutils flock:util-linux awk:gawk; do
    command -v "${t%%:*}" >/dev/null 2>&1 || tools+=("${t#*:}")
  done
  [[ ${#tools[@]} -eq 0 ]] || apt_install "${tools[@]}"
  # Debian's golang-go is too old to switch toolchains, so Go is not installed from there.
  command -v go >/dev/null 2>&1 \
    || die "no go: building the test bed's binaries needs Go >= 1.21 (it fetches the locked toolchain from the Go module proxy); install Go and run again"
  v="$(GOTOOLCHAIN=local go env GOVERSION)"
  if ! [[ "$v" =~ ^go1\.([0-9]+) ]] || (( BASH_REMATCH[1] < 21 )); then
    die "go is $v: Go >= 1.21 is needed to fetch the locked toolchain; install a newer Go"
  fi
}

# Debian's chromium (its own security updates; no pinned download of a browser build). The
# tests drive it over the DevTools protocol, so any recent version serves.
check_browser() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || apt_install chromium
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || die "chromium is still missing after installing it"
}

# Debian's podman 4.3 (runs containers with runc here), buildah (podman's build engine, also on
# its own) and mmdebstrap (the base image's root filesystem from Debian's packages). No Docker.
check_image() {
  local missing=() t
  for t in podman:podman runc:runc buildah:buildah mmdebstrap:mmdebstrap; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
  done
  [[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
  for t in podman runc buildah mmdebstrap; do
    command -v "$t" >/dev/null 2>&1 || die "$t is still missing after installing it"
  done
}

# Debian's containerd 1.6, runc 1.1 and CNI plugins 1.1 (docs/real-node.md): the kubelet's CRI
# runtime, with the node's own configuration (hack/cluster.sh never uses /etc/containerd).
check_node() {
  local missing=() t
  for t in containerd:containerd containerd-shim-runc-v2:containerd runc:runc \
    /usr/lib/cni/bridge:containernetworking-plugins iptables:iptables conntrack:conntrack \
    nft:nftables openssl:openssl ip:iproute2 ipset:ipset; do
    if [[ "${t%%:*}" == /* ]]; then [[ -x "${t%%:*}" ]] || missing+=("${t#*:}")
    else command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
    fi
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    apt_install "${missing[@]}"
  fi
  for t in containerd containerd-shim-runc-v2 runc iptables conntrack nft openssl ip ipset; do
    command -v "$t" >/dev/null 2>&1 || die "$t is still missing after installing it"
  done
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(python go browser image)
for t in "${targets[@]}"; do
  case "$t" in
    python) check_python ;;
    go) check_go ;;
    browser) check_browser ;;
    image) check_image ;;
    node) check_node ;;
    *) die "unknown check '$t' (known: python go browser image node)" ;;
  esac
done
