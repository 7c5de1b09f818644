#!/usr/bin/env bash
# Build the Baton image (the Dockerfile, unchanged) with podman, without Docker and without a
# registry. The Dockerfile's `FROM python:3.11-slim` resolves to a local base image made here
# from Debian packages, so nothing is ever pulled.
#
# Usage: hack/image.sh [base | build | export | verify] [--refresh] [--record]   (default: build)
#   base     the base image, docker.io/library/python:3.11-slim in podman's storage: Debian
#            bookworm (mmdebstrap, minbase) with python3, python3-venv, python-is-python3,
#            ca-certificates, passwd, and pip/setuptools/wheel installed into /usr/local from
#            Debian's own wheels, laid out as python:3.11-slim is for what the Dockerfile runs
#            (`python`, `python -m venv`, `python -m pip`, `pip uninstall pip`, useradd).
#            Cached: rebuilt only when its recipe (this script's base_recipe) changes, or with
#            --refresh (to take Debian's updates). The versions of every Debian package in it
#            are written to $CACHE/image/base-<key>.packages and compared with
#            hack/image-base.packages, the versions last recorded: a difference is printed.
#   build    base, then the Dockerfile as $IMAGE (podman build --pull=never; layers cached)
#   export   build, then save it as a docker archive for `ctr -n k8s.io images import` or
#            `kind load image-archive`: $ARCHIVE, named as a pod's `image: $IMAGE` resolves
#            (baton:dev -> docker.io/library/baton:dev)
#   verify   check the built image: runs as uid 10001, a read-only root works and cannot be
#            written (even by root), no pip, the `baton` entrypoint answers; print its size
#   --record (with base) write the base's package versions into hack/image-base.packages
# Env:
#   IMAGE          the image's name (default baton:dev)
#   ARCHIVE        export's output (default build/image/baton-dev.tar; build/ is git-ignored)
#   BATON_CACHE    cache root (default ${XDG_CACHE_HOME:-~/.cache}/baton)
#
# Podman here runs containers with runc and needs explicit nofile/nproc ulimits (its defaults
# exceed this machine's hard limits); pip inside the build reaches PyPI through the machine's CA
# bundle, mounted over the image's for RUN steps only (nothing of it is committed to a layer).
# Runs as root (mmdebstrap's root mode, podman's system storage); not tried rootless.
# Measured on a 2-core machine (docs/image.md): base ~35 s, image ~40 s cold, ~4 s cached.
set -euo pipefail
cd "$(dirname "$0")/.."

CMD=build
RECORD=0
REFRESH=0
for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    base|build|export|verify) CMD="$arg" ;;
    --record) RECORD=1 ;;
    --refresh) REFRESH=1 ;;
    *) printf '[image] ERROR: unknown argument %s (see --help)\n' "$arg" >&2; exit 2 ;;
  esac
done

IMAGE="${IMAGE:-baton:dev}"
ARCHIVE="${ARCHIVE:-build/image/baton-dev.tar}"
CACHE_DIR="${BATON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton}/image"
BASE_REF=docker.io/library/python:3.11-slim
# The name a pod's `image: $IMAGE` resolves to (containerd and the kubelet qualify it as Docker
# does): baton:dev -> docker.io/library/baton:dev.
case "$IMAGE" in
  */*) first="${IMAGE%%/*}" ;;
  *) first="" ;;
esac
if [[ -z "$first" ]]; then EXPORT_REF="docker.io/library/$IMAGE"
elif [[ "$first" == *.* || "$first" == *:* || "$first" == localhost ]]; then EXPORT_REF="$IMAGE"
else EXPORT_REF="docker.io/$IMAGE"
fi
RECORDED=hack/image-base.packages
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# runc, named: podman prefers crun when both are installed. Ulimits within this machine's hard
# limits (podman's default nofile of 1048576 is refused by runc).
RUN_OPTS=(--runtime runc --ulimit nofile=16384:16384 --ulimit nproc=4096:4096)

TMP_DIR=""
trap '[[ -z "$TMP_DIR" ]] || rm -rf "$TMP_DIR"' EXIT

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || log "warning: not root; this script is only tried as root (rootless podman, unshare mmdebstrap)"
for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run hack/host-deps.sh image"
done

# ---- the base ----------------------------------------------------------------
# What decides the base's content: this recipe and build_base, which reads it. Their hash is the
# cache key (a label on the image), computed below build_base.
base_recipe() {
  cat <<'EOF'
suite bookworm
variant minbase
mirror deb http://deb.debian.org/debian bookworm main
mirror deb http://deb.debian.org/debian bookworm-updates main
mirror deb http://deb.debian.org/debian-security bookworm-security main
hook-dir /usr/share/mmdebstrap/hooks/merged-usr
include python3 python3-venv python-is-python3 ca-certificates passwd python3-pip-whl python3-setuptools-whl python3-wheel-whl
dpkg path-exclude=/usr/share/man/*
dpkg path-exclude=/usr/share/doc/*
dpkg path-include=/usr/share/doc/*/copyright
dpkg path-exclude=/usr/share/locale/*
dpkg path-exclude=/usr/share/info/*
dpkg path-exclude=/usr/lib/python3*/EXTERNALLY-MANAGED
pip /usr/local: pip setuptools wheel from /usr/share/python-wheels
env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
env LANG=C.UTF-8
cmd ["python3"]
EOF
}
label_of() {  # label_of <image> <label>: the label's value, "" when the image or label is absent
  podman image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null | sed 's/^<no value>$//'
}

# show_difference: the built base's packages against the recorded ones.
show_difference() {
  if [[ ! -f "$RECORDED" ]]; then
    log "no $RECORDED yet: record this base's versions with \`hack/image.sh base --record\`"
  elif diff -q <(grep -v '^#' "$RECORDED") "$MANIFEST" >/dev/null; then
    log "base packages: as recorded in $RECORDED ($(grep -vc '^#' "$RECORDED") packages)"
  else
    log "base packages differ from $RECORDED (< recorded, > this base):"
    diff <(grep -v '^#' "$RECORDED") "$MANIFEST" | grep '^[<>]' >&2 || true
  fi
}

build_base() {
  mkdir -p "$CACHE_DIR"
  if [[ $REFRESH -eq 0 && "$(label_of "$BASE_REF" io.baton.base.key)" == "$BASE_KEY" && -s "$MANIFEST" ]]; then
    log "base $BASE_REF: cached (recipe $BASE_KEY, $(wc -l <"$MANIFEST") Debian packages in $MANIFEST)"
    show_difference
    return 0
  fi
  local tmp t0=$SECONDS
  TMP_DIR="$(mktemp -d)"  # removed on exit, failed or not (150 MB of root filesystem)
  tmp="$TMP_DIR"
  log "base $BASE_REF: building (recipe $BASE_KEY) with mmdebstrap, nice 19"
  local suite="" args=() key value
  while read -r key value; do
    case "$key" in
      suite) suite="$value" ;;
      variant) args+=("--variant=$value") ;;
      hook-dir) args+=("--hook-dir=$value") ;;
      include) args+=("--include=${value// /,}") ;;
      dpkg) args+=("--dpkgopt=$value") ;;
    esac
  done < <(base_recipe)
  # The pip of python:3.11-slim: installed into /usr/local (with its RECORD, so the Dockerfile's
  # `pip uninstall` works), from the wheels Debian ships for venvs; then what the Dockerfile
  # runs, tried. The host's environment (PIP_* settings, proxies) stays out of the chroot.
  # The package list is taken last.
  # shellcheck disable=SC2016  # $1 is the hook's argument, the root: mmdebstrap expands it
  local in_root='chroot "$1" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root sh -euc'
  args+=(
    --customize-hook="$in_root 'w=/usr/share/python-wheels; set -- \$w/pip-*.whl; python3 \$1/pip install --quiet --no-index --no-cache-dir --disable-pip-version-check --root-user-action=ignore \$w/pip-*.whl \$w/setuptools-*.whl \$w/wheel-*.whl'"
    --customize-hook="$in_root 'python -m pip --version; python -m venv --without-pip /tmp/v; rm -rf /tmp/v'"
    --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Package}\t\${Version}\t\${Architecture}\n' >'$tmp/packages'"
  )
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root nice -n 19 \
    mmdebstrap --quiet "${args[@]}" "$suite" "$tmp/rootfs.tar" - \
    < <(base_recipe | sed -n 's/^mirror //p') >&2 \
    || die "mmdebstrap failed (is deb.debian.org reachable? see the output above)"
  sort "$tmp/packages" >"$MANIFEST.tmp"
  mv -f "$MANIFEST.tmp" "$MANIFEST"
  local changes=()
  while read -r key value; do
    case "$key" in
      env) changes+=(--change "ENV $value") ;;
      cmd) changes+=(--change "CMD $value") ;;
    esac
  done < <(base_recipe)
  changes+=(
    --change "LABEL io.baton.base.key=$BASE_KEY"
    --change "LABEL io.baton.base.python=$(awk '$1 == "python3.11" { print $2 }' "$MANIFEST")"
    --change "LABEL io.baton.base.packages=$(sha256sum "$MANIFEST" | cut -c1-16)"
  )
  podman import --quiet "${changes[@]}" "$tmp/rootfs.tar" "$BASE_REF" >/dev/null \
    || die "podman import failed"
  log "base $BASE_REF: built in $((SECONDS - t0))s, $(podman image inspect --format '{{.Size}}' "$BASE_REF" | numfmt --to=si)B, $(wc -l <"$MANIFEST") Debian packages -> $MANIFEST"
  show_difference
}

BASE_KEY="$( (base_recipe; declare -f build_base) | sha256sum | cut -c1-16)"
MANIFEST="$CACHE_DIR/base-$BASE_KEY.packages"

record_base() {
  {
    printf '# The Debian packages of the base image (hack/image.sh base), as last recorded with\n'
    # shellcheck disable=SC2016  # backquotes as text
    printf '# `hack/image.sh base --record`: a later build prints how it differs. Debian updates its\n'
    printf '# packages in place (security), so this records what went in; it cannot pin it.\n'
    printf '# package\tversion\tarchitecture\n'
    cat "$MANIFEST"
  } >"$RECORDED"
  log "recorded $(wc -l <"$MANIFEST") packages in $RECORDED"
}

# ---- the image ---------------------------------------------------------------
build_image() {
  local t0=$SECONDS mounts=()
  [[ -r "$CA_BUNDLE" ]] && mounts=(--volume "$CA_BUNDLE:$CA_BUNDLE:ro")
  log "$IMAGE: podman build (--pull=never, nice 19)"
  nice -n 19 podman build --pull=never --layers "${RUN_OPTS[@]}" "${mounts[@]}" \
    --label "io.baton.base.key=$BASE_KEY" --tag "$IMAGE" --file Dockerfile . >&2 \
    || die "podman build failed (see the output above)"
  log "$IMAGE: built in $((SECONDS - t0))s, $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=si)B"
}

export_image() {
  mkdir -p "$(dirname "$ARCHIVE")"
  podman tag "$IMAGE" "$EXPORT_REF"
  rm -f "$ARCHIVE.tmp"
  podman save --quiet --format docker-archive --output "$ARCHIVE.tmp" "$EXPORT_REF" \
    || die "podman save failed"
  mv -f "$ARCHIVE.tmp" "$ARCHIVE"
  log "$ARCHIVE: $EXPORT_REF, $(du -h "$ARCHIVE" | cut -f1), sha256 $(sha256sum "$ARCHIVE" | cut -c1-64)"
  log "import it with: ctr -n k8s.io images import $ARCHIVE   (or: kind load image-archive $ARCHIVE)"
}

# run <podman run args...>: the image as a container would run it, never pulling.
run() { podman run --rm --pull=never "${RUN_OPTS[@]}" "$@"; }

verify_image() {
  local bad=0 out
  check() {  # check <what> <command...>
    local what="$1"; shift
    if out="$("$@" 2>&1)"; then log "ok: $what"; else log "FAILED: $what: $out"; bad=1; fi
  }
  check "runs as uid 10001" test "$(run --entrypoint id "$IMAGE" -u)" = 10001
  check "baton --help on a read-only root" run --read-only "$IMAGE" --help
  check "baton presence --help" run --read-only "$IMAGE" presence --help
  check "/ cannot be written, even by root" \
    run --read-only --user 0 --entrypoint sh "$IMAGE" -c '! touch /probe 2>/dev/null'
  check "no pip module" run --read-only --entrypoint python "$IMAGE" \
    -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pip") is not None)'
  log "$IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=si)B, base recipe $(label_of "$IMAGE" io.baton.base.key)"
  [[ $bad -eq 0 ]] || die "$IMAGE does not hold"
}

# One build at a time per cache (CI and a developer may both call this).
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.image.lock"
flock 9

case "$CMD" in
  base) build_base; [[ $RECORD -eq 0 ]] || record_base ;;
  build) build_base; build_image ;;
  export) build_base; build_image; export_image ;;
  verify) verify_image ;;
esac
