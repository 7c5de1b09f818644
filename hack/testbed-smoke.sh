#!/usr/bin/env bash
# Smoke test: etcd + kube-apiserver on loopback with self-made certs.
set -euo pipefail
BIN="${BATON_CACHE:-$HOME/.cache/baton}/bin"
T="$(mktemp -d /tmp/testbed.XXXXXX)"
echo "workdir $T"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
EP=$(freeport); PP=$(freeport); AP=$(freeport)
echo "etcd client $EP peer $PP apiserver $AP"

# --- certs ---
cd "$T"
t0=$(date +%s.%N)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=baton-testbed-ca" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > apiserver.ext
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout admin.key -out admin.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > client.ext
openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile client.ext -out admin.crt 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
ADMIN_TOKEN=$(openssl rand -hex 16); USER_TOKEN=$(openssl rand -hex 16)
printf '%s,admin-token,uid-admin,"system:masters"\n%s,alice,uid-alice\n' "$ADMIN_TOKEN" "$USER_TOKEN" > tokens.csv
echo "certs in $(python3 -c "print(round($(date +%s.%N)-$t0,2))")s"

# --- etcd ---
"$BIN/etcd" --name testbed --data-dir "$T/etcd" \
  --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "testbed=http://127.0.0.1:$PP" --initial-cluster-state new \
  --unsafe-no-fsync --log-level warn > "$T/etcd.log" 2>&1 &
echo $! > "$T/etcd.pid"
t_etcd=$(date +%s.%N)
until curl -fsS "http://127.0.0.1:$EP/health" 2>/dev/null | grep -q '"health":"true"'; do sleep 0.1; done
echo "etcd healthy after $(python3 -c "print(round($(date +%s.%N)-$t_etcd,2))")s"

# --- kube-apiserver ---
t_api=$(date +%s.%N)
# shellcheck disable=SC2086  # EXTRA_API_FLAGS is a list of flags: split on purpose
"$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$EP" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$AP" \
  --tls-cert-file="$T/apiserver.crt" --tls-private-key-file="$T/apiserver.key" \
  --client-ca-file="$T/ca.crt" \
  --token-auth-file="$T/tokens.csv" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$T/sa.pub" \
  --service-account-signing-key-file="$T/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=RBAC \
  --disable-admission-plugins=ServiceAccount \
  --allow-privileged=true \
  --endpoint-reconciler-type=none \
  ${EXTRA_API_FLAGS:-} > "$T/apiserver.log" 2>&1 &
echo $! > "$T/apiserver.pid"
K=(kubectl --server "https://127.0.0.1:$AP" --certificate-authority "$T/ca.crt" --client-certificate "$T/admin.crt" --client-key "$T/admin.key")
for _ in $(seq 1 600); do
  if out=$("${K[@]}" get --raw /readyz 2>/dev/null) && [[ "$out" == ok ]]; then break; fi
  kill -0 "$(cat "$T/apiserver.pid")" || { echo "apiserver died"; tail -30 "$T/apiserver.log"; exit 1; }
  sleep 0.1
done
echo "readyz: $out after $(python3 -c "print(round($(date +%s.%N)-$t_api,2))")s"
echo "$T" > /tmp/smoke/last
if [[ "${KEEP:-0}" != 1 ]]; then
  kill "$(cat "$T/apiserver.pid")"; wait "$(cat "$T/apiserver.pid")" 2>/dev/null || true
  kill "$(cat "$T/etcd.pid")"; wait "$(cat "$T/etcd.pid")" 2>/dev/null || true
  grep -E '^E' "$T/apiserver.log" | cut -c1-200 | head -5
  rm -rf "$T"
fi
