#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, without Docker and without a registry:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet (containerd + runc, CNI
# bridge), kube-proxy (nftables), kube-router's network-policy controller (NetworkPolicies
# enforced with iptables and ipset) and CoreDNS, from the binaries hack/build-k8s-bins.sh builds
# and pins, with every image built here and imported into the node's own containerd.
#
# Usage: hack/cluster.sh up | down | status | host-state
#   up          build or verify the binaries (hack/testbed-bins.lock), import the images (pause,
#               CoreDNS, Jaeger, and baton:dev from `make image-archive`), save the host's state, start
#               everything, wait until the node is Ready, CoreDNS is available and kube-router
#               enforces NetworkPolicies (its chains hooked into the filter table); print the
#               timings and the kubeconfig. A cluster that is already up is left alone; the
#               leftovers of one that crashed are cleaned (`down`) first. Each `up` is a fresh
#               cluster (etcd and containerd start empty).
#   down        stop everything and undo every change to the host (docs/real-node.md): processes
#               (pid files, checked against their executables), pods' processes and cgroups,
#               mounts, network namespaces, the bridge, iptables chains, ipsets and nftables tables,
#               sysctls (restored to the values saved by `up`), /var/lib/kubelet,
#               /var/log/{pods,containers} and /var/lib/cni entries, containerd's state.
#               Idempotent; works after a crash (stale pid files, no running process). The last
#               run's logs stay in $STATE/logs.
#   status      what runs, the node and CoreDNS; exit 0 only when the cluster is up and Ready
#   host-state  print the host's state that `down` restores (sysctls, nftables tables, iptables
#               chains, links, mounts, cgroups, directories), one item a line, sorted
# Env:
#   BATON_CLUSTER_DIR   state dir (default /var/lib/baton-cluster): pids/, logs/, pki/,
#                       kubeconfig, containerd's root and state, etcd's data, the kubelet's root
#   BATON_CLUSTER_BUILD 0: do not build missing binaries, only verify them (default 1)
#   BATON_CLUSTER_IMAGE 0: do not build and import baton:dev (default 1)
#   BATON_CACHE         where hack/build-k8s-bins.sh caches the binaries
# Needs root (containerd, the kubelet, netfilter), Debian's containerd/runc/CNI plugins, iptables
# and ipset (hack/host-deps.sh node). Network: only loopback and the bridge baton0 this script creates
# (10.213.0.0/24 pods, 10.214.0.0/24 services); nothing is routed off the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

CMD="${1:-}"
case "$CMD" in
  up|down|status|host-state) ;;
  -h|--help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; [[ -n "$CMD" ]]; exit $? ;;
  *) printf '[cluster] ERROR: unknown command %s (see --help)\n' "$CMD" >&2; exit 2 ;;
esac

S="${BATON_CLUSTER_DIR:-/var/lib/baton-cluster}"
CACHE_DIR="${BATON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton}"
BIN="$CACHE_DIR/bin"
NODE=baton-node
BRIDGE=baton0
NET_NAME=baton
POD_CIDR=10.213.0.0/24
GW=10.213.0.1
SVC_CIDR=10.214.0.0/24
KUBE_SVC_IP=10.214.0.1
DNS_IP=10.214.0.10
ETCD_PORT=32379
ETCD_PEER_PORT=32380
API_PORT=6443
GUARD_TABLE=baton_cluster_guard   # nftables table (inet) confining the pods' traffic
PAUSE_REF=localhost/baton-pause:v1.0.0
COREDNS_REF=localhost/baton-coredns:v1.15.0
# The chart's in-cluster Jaeger (hack/cluster-values.yaml points jaeger.image at it): the pinned
# jaeger binary of hack/testbed-bins.lock, laid out as upstream's image lays it out.
JAEGER_REF=localhost/baton-jaeger:v2.13.0
BATON_ARCHIVE="$REPO/build/image/baton-dev.tar"
SOCK="$S/containerd/containerd.sock"
KUBECONFIG_FILE="$S/kubeconfig"
# The sysctls the kubelet, kube-proxy and the CNI bridge plugin may set: saved by up, restored
# by down.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.forwarding net.ipv4.conf.all.route_localnet net.ipv6.conf.all.forwarding
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Host directories the node writes outside $S (removed by down when up found them absent).
HOST_DIRS=(/var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni /run/containerd
  /etc/cni /opt/cni)
# In start order; down stops them in reverse.
PROCS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
  kube-router)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[[ $(id -u) -eq 0 ]] || die "must run as root (containerd, the kubelet and netfilter need it)"

# ---- the host's state ----------------------------------------------------------
# host_state: what down restores, canonical (sorted lines), so that two snapshots compare with
# diff. Per-interface sysctls of our bridge and veths vanish with them, so only global ones.
host_state() {
  local k d
  for k in "${SYSCTLS[@]}"; do
    printf 'sysctl %s = %s\n' "$k" "$(sysctl -n "$k" 2>/dev/null | tr -s '\t ' ' ' || echo absent)"
  done
  nft list tables 2>/dev/null | sed 's/^/nft /'
  ipset list -n 2>/dev/null | sed 's/^/ipset /'
  for k in iptables ip6tables; do
    "$k-save" 2>/dev/null | awk -v t="$k" '/^\*/ { tb = substr($1, 2) } /^:/ { print t, tb, "chain", substr($1, 2) }
      /^-A/ { print t, tb, "rule", $0 }'
  done
  ip -o link show | awk -F': ' '{ n = $2; sub(/@.*/, "", n); m = ""
    if (match($0, / master [^ ]+/)) m = substr($0, RSTART, RLENGTH); print "link", n m }'
  awk '{ print "mount", $5, $9 }' /proc/self/mountinfo
  for d in /sys/fs/cgroup/*/; do
    find "$d" -maxdepth 1 -mindepth 1 -type d -printf 'cgroup %p\n' 2>/dev/null
  done
  for d in "${HOST_DIRS[@]}"; do [[ -e "$d" ]] && printf 'dir %s\n' "$d"; done
  find /run/netns -mindepth 1 -maxdepth 1 -printf 'netns %p\n' 2>/dev/null || true
  find /var/lib/cni -mindepth 2 -maxdepth 2 -printf 'cni %p\n' 2>/dev/null || true
} 

if [[ "$CMD" == host-state ]]; then
  host_state | LC_ALL=C sort -u
  exit 0
fi

# ---- processes -----------------------------------------------------------------
pid_of() {  # pid_of <name>: the pid in its pid file if that process still runs its binary
  local f="$S/pids/$1.pid" pid exe
  [[ -r "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  exe="${exe% (deleted)}"
  [[ "$(basename "$exe")" == "$1"* ]] || return 1  # a recycled pid is not ours
  printf '%s\n' "$pid"
}

start() {  # start <name> <argv...>: in its own session, log and pid file under $S
  local name="$1" fd; shift
  (
    # Only stdio goes to the process: a descriptor this script inherited would be held as long
    # as the daemon runs. `flock LOCK hack/cluster.sh up` passes its lock's: the lock then
    # outlived `up` and a `flock LOCK hack/cluster.sh down` waited for it forever.
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if [[ "$fd" -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@"
  ) >>"$S/logs/$name.log" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$S/pids/$name.pid"
}

# stop_procs <name...>: TERM to all at once, KILL to what still runs after 3 s (nothing is kept:
# no need for a graceful end), pid files removed.
stop_procs() {
  local name pid i t pids=() left
  t="$(now)"
  for name in "$@"; do
    if pid="$(pid_of "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      log "stopping $name (pid $pid)"
    fi
  done
  for ((i = 0; i < 30 && ${#pids[@]} > 0; i++)); do
    left=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    pids=("${left[@]}")
    [[ ${#pids[@]} -eq 0 ]] || sleep 0.1
  done
  for pid in "${pids[@]}"; do
    log "pid $pid still runs after 3 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
  for name in "$@"; do rm -f "$S/pids/$name.pid"; done
  log "stopped $* in $(since "$t") s"
}

kctl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }

# ---- status --------------------------------------------------------------------
status() {
  local p ok=0 pid
  for p in "${PROCS[@]}"; do
    if pid="$(pid_of "$p")"; then printf '%-24s running (pid %s)\n' "$p" "$pid"
    else printf '%-24s not running\n' "$p"; ok=1
    fi
  done
  [[ $ok -eq 0 ]] || return 1
  kctl get nodes -o wide 2>&1 || return 1
  [[ "$(kctl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] || return 1
  kctl -n kube-system get deploy coredns 2>&1 || return 1
  [[ "$(kctl -n kube-system get deploy coredns -o jsonpath='{.status.availableReplicas}' 2>/dev/null)" -ge 1 ]] || return 1
  printf 'kubeconfig: %s\n' "$KUBECONFIG_FILE"
}

if [[ "$CMD" == status ]]; then
  status
  exit $?
fi

# ---- down ----------------------------------------------------------------------
# Every step tolerates what is already gone, so down can run any number of times, after a crash
# or after a half-finished up.
down() {
  local t0 p pid cg f ino inodes="" mp tbl fam name chain ipt k v
  t0="$(now)"
  [[ -d "$S" ]] || { log "nothing to take down ($S does not exist)"; return 0; }
  # The kubelet first: it would restart what the rest of this kills; kube-router with it, since
  # it would put back the chains and sets removed below.
  stop_procs kube-router kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd
  # Every pod's processes (the sandboxes' pause included) live in the kubelet's cgroups: note
  # their network namespaces, kill them, remove the cgroups (deepest first).
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$cg" ]] || continue
    while read -r pid; do
      ino="$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null)" && inodes+=" $ino"
      kill -KILL "$pid" 2>/dev/null || true
    done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
  sleep 0.2
  for cg in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$cg" ]] || continue
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d "$cg" ]] || { sleep 0.5; find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
    [[ ! -d "$cg" ]] || log "warning: cgroup $cg still there"
  done
  # The runtime shims of our containerd (they outlive it), then containerd.
  for f in /proc/[0-9]*/cmdline; do
    pid="${f#/proc/}"; pid="${pid%/cmdline}"
    if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q -- "containerd-shim.* -address $SOCK"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  stop_procs containerd
  # Network namespaces: the pods' (by inode), and any cni-* one made since up.
  for f in /run/netns/*; do
    [[ -e "$f" ]] || continue
    ino="$(stat -L -c %i "$f" 2>/dev/null || true)"
    if [[ -n "$ino" && " $inodes " == *" $ino "* ]] \
      || { [[ "$(basename "$f")" == cni-* && -f "$S/host/netns" ]] && ! grep -qxF "$f" "$S/host/netns"; }; then
      umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true
      rm -f "$f"
    fi
  done
  # Mounts under the state dir and the kubelet's dirs (volumes, rootfs, shm), deepest first.
  while read -r mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: cannot unmount $mp"
  done < <(awk -v s="$S/" '{ m = $5; gsub(/\\040/, " ", m) } index(m, s) == 1 || index(m, "/var/lib/kubelet/") == 1 || index(m, "/run/containerd/io.containerd") == 1 { print length(m), m }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
  if [[ -f "$S/host/state" ]] && ! grep -q '^mount /run/netns ' "$S/host/state" \
    && mountpoint -q /run/netns; then
    umount /run/netns 2>/dev/null || umount -l /run/netns || true
  fi
  # The bridge (its veths went with the namespaces).
  ip link del "$BRIDGE" 2>/dev/null || true
  # nftables: kube-proxy's tables and ours.
  for tbl in "ip kube-proxy" "ip6 kube-proxy" "inet $GUARD_TABLE"; do
    # shellcheck disable=SC2086  # "family name"
    nft delete table $tbl 2>/dev/null || true
  done
  # iptables (nft backend): the kubelet's and kube-router's KUBE-* chains (KUBE-ROUTER-*,
  # KUBE-POD-FW-*, KUBE-NWPLCY-*) and every rule that jumps to one.
  for ipt in iptables ip6tables; do
    for tbl in filter nat mangle; do
      "$ipt-save" -t "$tbl" 2>/dev/null | awk '/^-A / && / -j KUBE-/' | while read -r rule; do
        printf '*%s\n-D %s\nCOMMIT\n' "$tbl" "${rule#-A }" | "$ipt-restore" -n 2>/dev/null || true
      done
      "$ipt-save" -t "$tbl" 2>/dev/null | awk '/^:KUBE-/ { print substr($1, 2) }' \
        | while read -r chain; do
          "$ipt" -t "$tbl" -F "$chain" 2>/dev/null || true
          "$ipt" -t "$tbl" -X "$chain" 2>/dev/null || true
        done
    done
  done
  # kube-router's ipsets (KUBE-SRC-*, KUBE-DST-*, their temporary copies), once no rule uses them:
  # those that up did not find.
  if [[ -f "$S/host/state" ]] && command -v ipset >/dev/null 2>&1; then
    ipset list -n 2>/dev/null | while read -r name; do
      grep -qxF "ipset $name" "$S/host/state" && continue
      [[ "$name" == KUBE-* || "$name" == TMP-* || "$name" == inet6:* ]] || continue
      ipset destroy "$name" 2>/dev/null || log "warning: cannot destroy the ipset $name"
    done
  fi
  # nftables tables that the iptables calls above (the kubelet's) created and that are now empty.
  if [[ -f "$S/host/state" ]]; then
    nft list tables 2>/dev/null | while read -r _ fam name; do
      grep -qxF "nft table $fam $name" "$S/host/state" && continue
      if ! nft -a list table "$fam" "$name" 2>/dev/null | grep '# handle' | grep -Evq '^\s*(table|chain) '; then
        nft delete table "$fam" "$name" 2>/dev/null && log "removed the empty nftables table $fam $name"
      fi
    done
  fi
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$SVC_CIDR" >/dev/null 2>&1 || true
  # Sysctls back to what up found.
  if [[ -f "$S/host/sysctls" ]]; then
    while read -r k v; do
      [[ "$v" == absent || "$(sysctl -n "$k" 2>/dev/null | tr -s '\t ' ' ')" == "$v" ]] \
        || sysctl -q -w "$k=$v" >/dev/null || log "warning: cannot restore $k=$v"
    done <"$S/host/sysctls"
  fi
  # Directories up found absent; CNI state of our network in a shared /var/lib/cni.
  for f in /var/lib/cni/results/"$NET_NAME"-*-eth0; do
    [[ -e "$f" ]] || continue
    p="${f#/var/lib/cni/results/"$NET_NAME"-}"
    rm -f "$f" "/var/lib/cni/results/cni-loopback-${p%-eth0}-lo"
  done
  rm -rf /var/lib/cni/networks/"$NET_NAME"
  if [[ -f "$S/host/state" ]]; then
    for f in "${HOST_DIRS[@]}"; do
      grep -qxF "dir $f" "$S/host/state" || rm -rf "$f"
    done
  fi
  # containerd's root and state, etcd, the kubelet's root, the PKI: everything but the logs.
  find "$S" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null \
    || { sleep 1; find "$S" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +; }
  log "down in $(since "$t0") s (logs of the last run: $S/logs)"
}

if [[ "$CMD" == down ]]; then
  down
  exit 0
fi

# ---- up ------------------------------------------------------------------------
T0="$(now)"
if status >/dev/null 2>&1; then
  log "already up: $KUBECONFIG_FILE"
  exit 0
fi
if [[ -d "$S/pids" || -d "$S/host" ]]; then
  log "leftovers of an earlier run in $S: taking them down first"
  down
fi

hack/host-deps.sh node
if [[ "${BATON_CLUSTER_BUILD:-1}" == 1 ]]; then
  hack/host-deps.sh go
  hack/build-k8s-bins.sh etcd kube-apiserver kubectl helm jaeger node 2>&1 | { grep -v '^[-l]r' || true; } >&2
fi
hack/build-k8s-bins.sh --verify etcd kube-apiserver kubectl helm jaeger node >/dev/null \
  || die "the binaries do not match hack/testbed-bins.lock (run hack/build-k8s-bins.sh)"
mkdir -p "$S/logs"
if [[ "${BATON_CLUSTER_IMAGE:-1}" == 1 ]]; then
  log "make image-archive (log: $S/logs/image.log)"
  make --no-print-directory image-archive >"$S/logs/image.log" 2>&1 \
    || die "make image-archive failed: $(tail -5 "$S/logs/image.log")"
fi
T_BUILD="$(since "$T0")"

# Refuse CIDRs the host already routes (another network would be shadowed or reached).
for c in "$POD_CIDR" "$SVC_CIDR"; do
  r="$(ip -4 route get "${c%.0/*}.1" 2>/dev/null | head -1 || true)"
  if [[ -n "$r" && "$r" != *" via "* && "$r" != *"dev $BRIDGE "* ]]; then
    die "$c collides with a network of this host (ip route get: $r)"
  fi
done

# Pods on one bridge reach a Service's pods on the same bridge only if bridged frames go through
# netfilter (the reply must be un-DNATed): br_netfilter (built into this machine's kernel).
if [[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
  modprobe br_netfilter 2>/dev/null || true
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] \
    || die "no br_netfilter (net.bridge.bridge-nf-call-iptables): modprobe br_netfilter, then run again"
fi

mkdir -p "$S"/{pids,logs,host,pki,etcd,kubelet,pod-logs,cni/net.d,cni/ipam,containerd,images,volumes}
find "$S/logs" -name '*.log' ! -name image.log -delete
# The host as it was, for down.
host_state | LC_ALL=C sort -u >"$S/host/state"
for k in "${SYSCTLS[@]}"; do
  printf '%s %s\n' "$k" "$(sysctl -n "$k" 2>/dev/null | tr -s '\t ' ' ' || echo absent)"
done >"$S/host/sysctls"
find /run/netns -mindepth 1 -maxdepth 1 >"$S/host/netns" 2>/dev/null || true
# From here on, a failure takes everything down again.
on_up_exit() {
  local rc=$?
  [[ $rc -eq 0 ]] || { log "up failed (exit $rc): logs in $S/logs; taking it down"; down; }
}
trap on_up_exit EXIT

# ---- the network: a bridge whose address is the node's IP ------------------------
# (the saved value is restored by down)
[[ "$(sysctl -n net.bridge.bridge-nf-call-iptables)" == 1 ]] || sysctl -q -w net.bridge.bridge-nf-call-iptables=1
ip link add "$BRIDGE" type bridge 2>/dev/null || true
ip addr replace "$GW/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
# Pods reach each other, the node's address on the bridge and services; nothing else. Nothing
# from a pod is forwarded out of the bridge, nor reaches another address of this host.
nft -f - <<EOF
table inet $GUARD_TABLE {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "$BRIDGE" oifname != "$BRIDGE" drop
    oifname "$BRIDGE" iifname != "$BRIDGE" ip saddr != $POD_CIDR drop
  }
  chain input {
    type filter hook input priority -10; policy accept;
    iifname "$BRIDGE" ip daddr != { $GW, 255.255.255.255, ${GW%.1}.255 } drop
  }
}
EOF

# ---- certificates --------------------------------------------------------------
P="$S/pki"
openssl ecparam -name prime256v1 -genkey -noout -out "$P/ca.key" 2>/dev/null
openssl req -x509 -new -key "$P/ca.key" -subj "/CN=baton-cluster-ca" -days 30 -out "$P/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
# cert <name> <subject> <extendedKeyUsage> [subjectAltName]
cert() {
  local n="$1" subj="$2" eku="$3" san="${4:-}"
  openssl ecparam -name prime256v1 -genkey -noout -out "$P/$n.key" 2>/dev/null
  openssl req -new -key "$P/$n.key" -subj "$subj" -out "$P/$n.csr" 2>/dev/null
  {
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
    printf 'extendedKeyUsage=%s\n' "$eku"
    [[ -z "$san" ]] || printf 'subjectAltName=%s\n' "$san"
  } >"$P/$n.ext"
  openssl x509 -req -in "$P/$n.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 30 \
    -extfile "$P/$n.ext" -out "$P/$n.crt" 2>/dev/null
  rm -f "$P/$n.csr" "$P/$n.ext"
}
cert apiserver "/CN=kube-apiserver" serverAuth \
  "IP:$GW,IP:$KUBE_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert admin "/O=system:masters/CN=baton-cluster-admin" clientAuth
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
cert kube-proxy "/CN=system:kube-proxy" clientAuth
cert kube-router "/CN=system:kube-router" clientAuth
cert kubelet "/O=system:nodes/CN=system:node:$NODE" clientAuth
cert kubelet-serving "/CN=$NODE" serverAuth "IP:$GW,DNS:$NODE"
openssl ecparam -name prime256v1 -genkey -noout -out "$P/sa.key" 2>/dev/null
openssl ec -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null

kubeconfig() {  # kubeconfig <file> <cert name>
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: baton
  cluster:
    server: https://$GW:$API_PORT
    certificate-authority: $P/ca.crt
users:
- name: $2
  user:
    client-certificate: $P/$2.crt
    client-key: $P/$2.key
contexts:
- name: baton
  context: {cluster: baton, user: $2}
current-context: baton
EOF
}
kubeconfig "$KUBECONFIG_FILE" admin
for n in controller-manager scheduler kube-proxy kube-router kubelet; do kubeconfig "$P/$n.kubeconfig" "$n"; done

# ---- containerd ----------------------------------------------------------------
cat >"$S/containerd/config.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
    max_conf_num = 1
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"
EOF
cat >"$S/cni/net.d/10-$NET_NAME.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NET_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$S/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GW"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
start containerd containerd --config "$S/containerd/config.toml"
for ((i = 0; i < 100; i++)); do ctr --address "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr --address "$SOCK" version >/dev/null 2>&1 || die "containerd did not start: $S/logs/containerd.log"

# ---- images: all local -----------------------------------------------------------
T_IMG0="$(now)"
python3 hack/local-image.py --binary "$BIN/pause" --path /pause --ref "$PAUSE_REF" \
  --output "$S/images/pause.tar" >&2
python3 hack/local-image.py --binary "$BIN/coredns" --path /coredns --ref "$COREDNS_REF" \
  --arg=-conf --arg=/etc/coredns/Corefile --output "$S/images/coredns.tar" >&2
# Jaeger as upstream's jaegertracing/jaeger image runs it: no arguments (its built-in all-in-one
# configuration, memory storage), uid 10001, every listener on JAEGER_LISTEN_HOST.
python3 hack/local-image.py --binary "$BIN/jaeger" --path /cmd/jaeger/jaeger-linux \
  --ref "$JAEGER_REF" --user 10001:10001 --env JAEGER_LISTEN_HOST=0.0.0.0 \
  --output "$S/images/jaeger.tar" >&2
ctr_ images import "$S/images/pause.tar" >/dev/null
ctr_ images import "$S/images/coredns.tar" >/dev/null
ctr_ images import "$S/images/jaeger.tar" >/dev/null
if [[ "${BATON_CLUSTER_IMAGE:-1}" == 1 ]]; then
  [[ -s "$BATON_ARCHIVE" ]] || die "no $BATON_ARCHIVE (make image-archive)"
  ctr_ images import "$BATON_ARCHIVE" >/dev/null
fi
T_IMG="$(since "$T_IMG0")"
log "images in containerd ($T_IMG s): $(ctr_ images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

# ---- the control plane ---------------------------------------------------------
T_CP0="$(now)"
start etcd "$BIN/etcd" --name baton --data-dir "$S/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "baton=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
  --unsafe-no-fsync --log-level warn
start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$GW" --advertise-address "$GW" --secure-port "$API_PORT" \
  --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
  --client-ca-file "$P/ca.crt" \
  --kubelet-client-certificate "$P/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$P/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
  --service-cluster-ip-range "$SVC_CIDR" --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction --allow-privileged=true --profiling=false
for ((i = 0; i < 600; i++)); do
  kctl get --raw /readyz >/dev/null 2>&1 && break
  pid_of kube-apiserver >/dev/null || die "kube-apiserver exited: $S/logs/kube-apiserver.log"
  sleep 0.1
done
kctl get --raw /readyz >/dev/null 2>&1 || die "kube-apiserver not ready after 60 s"
T_API="$(since "$T_CP0")"
log "kube-apiserver ready in $T_API s"
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$P/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$P/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$P/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
  --use-service-account-credentials=true --service-account-private-key-file "$P/sa.key" \
  --root-ca-file "$P/ca.crt" --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
  --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$SVC_CIDR" --profiling=false
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$P/scheduler.kubeconfig" \
  --authentication-kubeconfig "$P/scheduler.kubeconfig" --authorization-kubeconfig "$P/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false

# ---- the node ------------------------------------------------------------------
printf '# hack/cluster.sh: pods get no resolver of the host\n' >"$S/kubelet/resolv.conf"
cat >"$S/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCK
address: $GW
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $S/kubelet/resolv.conf
podLogsDirectory: $S/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 50
EOF
start kubelet "$BIN/kubelet" --config "$S/kubelet/config.yaml" --kubeconfig "$P/kubelet.kubeconfig" \
  --root-dir "$S/kubelet/root" --hostname-override "$NODE" --node-ip "$GW"
cat >"$S/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $P/kube-proxy.kubeconfig}
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: [$GW/32]
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
EOF
start kube-proxy "$BIN/kube-proxy" --config "$S/kube-proxy.yaml"

# ---- in-cluster: CoreDNS and storage -----------------------------------------------
kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: coredns, namespace: kube-system}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: "system:coredns"}
  rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: "system:coredns"}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
  subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: coredns, namespace: kube-system}
  data:
    # No forward plugin: names outside the cluster are not resolved (nothing leaves the host).
    Corefile: |
      .:53 {
          errors
          health {
              lameduck 5s
          }
          ready
          kubernetes cluster.local in-addr.arpa ip6.arpa {
              pods insecure
              fallthrough in-addr.arpa ip6.arpa
              ttl 30
          }
          cache 30
          loop
          reload
          loadbalance
      }
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
  spec:
    replicas: 1
    selector: {matchLabels: {k8s-app: kube-dns}}
    template:
      metadata: {labels: {k8s-app: kube-dns}}
      spec:
        serviceAccountName: coredns
        priorityClassName: system-cluster-critical
        dnsPolicy: Default
        securityContext:
          runAsUser: 65534
          runAsGroup: 65534
          runAsNonRoot: true
          sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "53"}]
        containers:
        - name: coredns
          image: $COREDNS_REF
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          ports:
          - {name: dns, containerPort: 53, protocol: UDP}
          - {name: dns-tcp, containerPort: 53, protocol: TCP}
          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
          resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 128Mi}}
          readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 1}
          livenessProbe: {httpGet: {path: /health, port: 8080}, initialDelaySeconds: 10}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
        volumes:
        - name: config
          configMap: {name: coredns, items: [{key: Corefile, path: Corefile}]}
- apiVersion: v1
  kind: Service
  metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
  spec:
    clusterIP: $DNS_IP
    selector: {k8s-app: kube-dns}
    ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
# kube-router (its network-policy controller): what its informers watch (it starts them all,
# whichever controllers run: services, endpoints and slices too), read only.
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: "system:baton-kube-router"}
  rules:
  - apiGroups: [""]
    resources: [namespaces, pods, services, nodes, endpoints]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: "system:baton-kube-router"}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:baton-kube-router"}
  subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-router"}]
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata:
    name: standard
    annotations: {storageclass.kubernetes.io/is-default-class: "true"}
  provisioner: kubernetes.io/no-provisioner
  volumeBindingMode: WaitForFirstConsumer
  reclaimPolicy: Retain
EOF
# Storage: static local PersistentVolumes, one directory each under $S/volumes (no dynamic
# provisioner): the default StorageClass "standard" binds a claim to one of them when its pod is
# scheduled. Enough for the chart's gateway (one 1Gi claim) and a few more.
for i in 1 2 3 4; do
  mkdir -p "$S/volumes/pv$i"
  chmod 0777 "$S/volumes/pv$i"
  cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: baton-local-pv$i}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: standard
  local: {path: $S/volumes/pv$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE]}]
EOF
done | kctl apply -f - >/dev/null

# ---- NetworkPolicies: kube-router's network-policy controller --------------------------
# Only its firewall (no BGP router, no service proxy: kube-proxy serves Services). It reads its
# Node object once at start (the node's IP), so it starts once the kubelet has registered the
# node. It enforces with iptables (the nft backend) in the filter table: KUBE-ROUTER-{INPUT,
# FORWARD,OUTPUT} hooked first into the built-in chains, a KUBE-POD-FW-* chain per pod that a
# policy selects, a KUBE-NWPLCY-* chain per policy, the peers in ipsets; what no policy allows
# is REJECTed. Bridged pod-to-pod frames reach it through br_netfilter (--physdev-is-bridged).
# Why kube-router and not kube-network-policies: docs/real-node.md (this kernel has no nftables
# queue expression). No health or metrics port.
for ((i = 0; i < 300; i++)); do
  kctl get node "$NODE" >/dev/null 2>&1 && break
  pid_of kubelet >/dev/null || die "kubelet exited: $S/logs/kubelet.log"
  sleep 0.1
done
kctl get node "$NODE" >/dev/null 2>&1 || die "the kubelet did not register $NODE in 30 s"
start kube-router "$BIN/kube-router" --kubeconfig "$P/kube-router.kubeconfig" \
  --hostname-override "$NODE" --run-firewall=true --run-router=false --run-service-proxy=false \
  --run-loadbalancer=false --enable-cni=false --enable-ipv4=true --enable-ipv6=false \
  --service-cluster-ip-range "$SVC_CIDR" --health-port 0 --metrics-port 0 --v 1
# Enforcing: its chain is hooked into FORWARD (done after its first sync of the policies).
netpol_ready() { iptables -w 5 -S FORWARD 2>/dev/null | grep -q -- '-j KUBE-ROUTER-FORWARD'; }

# ---- wait: node Ready, CoreDNS available, NetworkPolicies enforced ---------------------
T_NODE="" T_DNS="" T_NETPOL=""
for ((i = 0; i < 1200; i++)); do
  for p in "${PROCS[@]}"; do pid_of "$p" >/dev/null || die "$p exited: $S/logs/$p.log"; done
  if [[ -z "$T_NETPOL" ]] && netpol_ready; then
    T_NETPOL="$(since "$T_CP0")"
    log "kube-router enforces NetworkPolicies at $T_NETPOL s"
  fi
  if [[ -z "$T_NODE" && "$(kctl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; then
    T_NODE="$(since "$T_CP0")"
    log "node $NODE Ready at $T_NODE s"
  fi
  if [[ -n "$T_NODE" && -z "$T_DNS" && "$(kctl -n kube-system get deploy coredns -o jsonpath='{.status.availableReplicas}' 2>/dev/null)" == 1 ]]; then
    T_DNS="$(since "$T_CP0")"
  fi
  [[ -z "$T_DNS" || -z "$T_NETPOL" ]] || break
  sleep 0.1
done
[[ -n "$T_DNS" && -n "$T_NETPOL" ]] \
  || die "not ready after 120 s (node Ready: ${T_NODE:-no}, CoreDNS: ${T_DNS:-no}, kube-router: ${T_NETPOL:-no}); see $S/logs"
trap - EXIT
TOTAL="$(since "$T0")"
printf '{"total_s": %s, "bins_and_image_s": %s, "images_import_s": %s, "apiserver_ready_s": %s, "node_ready_s": %s, "coredns_available_s": %s, "netpol_enforced_s": %s}\n' \
  "$TOTAL" "$T_BUILD" "$T_IMG" "$T_API" "$T_NODE" "$T_DNS" "$T_NETPOL" >"$S/timings.json"
log "up in $TOTAL s: binaries+image $T_BUILD s, images import $T_IMG s; from the control plane's start: apiserver ready $T_API s, node Ready $T_NODE s, CoreDNS available $T_DNS s, NetworkPolicies enforced $T_NETPOL s"
log "export KUBECONFIG=$KUBECONFIG_FILE   # kubectl: $BIN/kubectl"
