"""An envtest-style Kubernetes test bed: a real etcd and a real kube-apiserver on loopback.

No kube-controller-manager, no scheduler, no kubelet: objects are stored, validated, admitted
and authorised exactly as in a cluster, but nothing reconciles them (pods stay Pending,
namespaces never finish terminating). The binaries come from ``hack/build-k8s-bins.sh``
(``make testbed-bins``); the flags and why each is there are in ``hack/README-testbed.md``.

    with start_cluster() as cluster:
        install_crds(cluster, [Path("charts/baton/crds/strategyversions.baton.dev.yaml")])
        cluster.kubectl("get", "sv", "-A")

Certificates are made in-process (ECDSA P-256: milliseconds) by a throwaway CA that also signs
client certificates for any user and groups (``Cluster.user_kubeconfig``), which is how RBAC
least privilege is tested: the apiserver takes a client certificate's CN as the user name and
its O entries as the groups.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime as dt
import hashlib
import ipaddress
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import kubernetes.client
import kubernetes.config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BINARIES",
    "CRD_DIR",
    "LOCK_FILE",
    "REPO",
    "Cluster",
    "LockedBinary",
    "TestCluster",
    "TestbedError",
    "as_list",
    "bin_dir",
    "chart_crds",
    "host_platform",
    "install_crds",
    "locked_binaries",
    "locked_toolchain",
    "namespace_name",
    "require_bins",
    "start_cluster",
]

BINARIES = ("etcd", "kube-apiserver", "kubectl")
REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "charts" / "baton" / "crds"

ETCD_READY_TIMEOUT_S = 30.0
APISERVER_READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 30
START_ATTEMPTS = 3  # free ports are picked before the processes bind them: retry on a lost race

CLUSTER_NAME = "baton-testbed"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class TestbedError(RuntimeError):
    """The test bed cannot start: missing binaries, a process that died, a readiness timeout."""

    __test__ = False  # not a pytest test class


# --------------------------------------------------------------------------------------------
# binaries


def bin_dir() -> Path:
    """``${BATON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton}/bin``, as hack/build-k8s-bins.sh."""
    cache = os.environ.get("BATON_CACHE")
    if not cache:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache = str(Path(xdg) / "baton")
    return Path(cache) / "bin"


def _binary(name: str) -> Path | None:
    """The cached, pinned binary: ``bin/<name>`` must be the build script's link to
    ``bin/<name>-<version>``. Never a tool that happens to be installed: a machine's own
    kubectl once read test input differently and failed only on a fresh machine."""
    candidate = bin_dir() / name
    if not (os.access(candidate, os.X_OK) and candidate.is_file()):
        return None
    if candidate.resolve().parent != bin_dir().resolve():
        raise TestbedError(
            f"{candidate} points outside the cache ({candidate.resolve()}); "
            "rebuild the pinned binaries with `make testbed-bins`"
        )
    return candidate


LOCK_FILE = REPO / "hack" / "testbed-bins.lock"


@dataclass(frozen=True)
class LockedBinary:
    """One line of hack/testbed-bins.lock: what the test bed must run."""

    name: str
    version: str
    platform: str
    sha256: str


def host_platform() -> str:
    """The platform as the lock (and Go) names it, e.g. ``linux/amd64``."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    return f"{sys.platform}/{arch.get(machine, machine)}"


def locked_toolchain() -> str:
    for line in LOCK_FILE.read_text().splitlines():
        fields = line.split()
        if fields[:1] == ["toolchain"]:
            return fields[1]
    raise TestbedError(f"{LOCK_FILE} has no toolchain line")


def locked_binaries(for_platform: str | None = None) -> dict[str, LockedBinary]:
    """The lock's binaries for ``for_platform`` (default: this host), by name."""
    wanted = for_platform or host_platform()
    out: dict[str, LockedBinary] = {}
    for line in LOCK_FILE.read_text().splitlines():
        fields = line.split()
        if len(fields) == 4 and not line.startswith("#") and fields[2] == wanted:
            out[fields[0]] = LockedBinary(*fields)
    return out


def require_bins() -> Path:
    """Return ``bin_dir()`` once etcd, kube-apiserver and kubectl are all there."""
    missing = [name for name in BINARIES if _binary(name) is None]
    if missing:
        raise TestbedError(
            f"test bed binaries missing from {bin_dir()}: {', '.join(missing)}; "
            "build them once with `make testbed-bins` (hack/build-k8s-bins.sh)"
        )
    return bin_dir()


def _kubectl_path() -> Path:
    path = _binary("kubectl")
    if path is None:
        raise TestbedError(
            f"no kubectl in {bin_dir()}; run `make testbed-bins` (hack/build-k8s-bins.sh)"
        )
    return path


def as_list(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Several objects as one ``v1/List`` document: what ``kubectl apply -f -`` reads the same
    way in every version (unlike JSON documents joined by ``---``)."""
    return {"apiVersion": "v1", "kind": "List", "items": list(docs)}


# --------------------------------------------------------------------------------------------
# certificates


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically (temp file + rename) with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(hours=1), now + dt.timedelta(days=2)


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "baton-testbed-ca")])
    not_before, not_after = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    *,
    server: bool,
    sans: Sequence[x509.GeneralName] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    not_before, not_after = _validity()
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _user_subject(user: str, groups: Sequence[str]) -> x509.Name:
    """CN=user, O=group for each group: how the apiserver reads a client certificate.

    X.509 caps CN and O at 64 characters, but a service account user name
    (``system:serviceaccount:<63-char namespace>:<name>``) can be longer; the apiserver
    (Go) and OpenSSL accept longer values, so the cap is not enforced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g, _validate=False) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user, _validate=False))
    return x509.Name(attrs)


def _load_ca(
    ca_file: Path, ca_key_file: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TestbedError(f"{ca_key_file}: not the test bed's EC CA key")
    return cert, key


def _make_pki(d: Path) -> _Pki:
    d.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _make_ca()
    serving_cert, serving_key = _issue(
        ca_cert,
        ca_key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        server=True,
        sans=[
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),  # the `kubernetes` Service IP
        ],
    )
    # O=system:masters is bound to cluster-admin by the default RBAC policy.
    admin_cert, admin_key = _issue(
        ca_cert, ca_key, _user_subject("admin", ["system:masters"]), server=False
    )
    sa_key = _new_key()
    pki = _Pki(
        ca_cert=d / "ca.crt",
        ca_key=d / "ca.key",
        serving_cert=d / "apiserver.crt",
        serving_key=d / "apiserver.key",
        admin_cert=d / "admin.crt",
        admin_key=d / "admin.key",
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
    )
    pki.ca_cert.write_bytes(_cert_pem(ca_cert))
    _write_private(pki.ca_key, _key_pem(ca_key))
    pki.serving_cert.write_bytes(_cert_pem(serving_cert))
    _write_private(pki.serving_key, _key_pem(serving_key))
    pki.admin_cert.write_bytes(_cert_pem(admin_cert))
    _write_private(pki.admin_key, _key_pem(admin_key))
    _write_private(pki.sa_key, _key_pem(sa_key))
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_kubeconfig(
    path: Path, *, server: str, ca_pem: bytes, user: str, cert_pem: bytes, key_pem: bytes
) -> Path:
    """A self-contained kubeconfig (JSON is YAML; certificates embedded, so it can be copied)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert_pem),
                    "client-key-data": _b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": user,
        "preferences": {},
    }
    _write_private(path, (json.dumps(config, indent=2) + "\n").encode())
    return path


# --------------------------------------------------------------------------------------------
# the cluster handle


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path}: no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Cluster:
    """A running test bed. Everything it wrote (certificates, kubeconfigs, logs) is in workdir."""

    server: str  # "https://127.0.0.1:<port>"
    workdir: Path
    ca_file: Path
    kubeconfig: Path  # admin: O=system:masters

    @property
    def apiserver_log(self) -> Path:
        return self.workdir / "kube-apiserver.log"

    @property
    def etcd_log(self) -> Path:
        return self.workdir / "etcd.log"

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 30.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (admin unless ``kubeconfig`` is given).

        With ``check`` a nonzero exit raises AssertionError carrying the command, stdout and
        stderr; a timeout raises AssertionError whatever ``check`` is.
        """
        cmd = [
            str(_kubectl_path()),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        try:
            result = subprocess.run(
                cmd,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"kubectl {' '.join(args)} timed out after {timeout}s\n"
                f"stdout:\n{_text(e.stdout)}\nstderr:\n{_text(e.stderr)}"
            ) from None
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig that authenticates as ``user`` in ``groups`` (client cert CN/O).

        ``system:authenticated`` is added by the apiserver; nothing else is. A service account
        is a user name here: ``user_kubeconfig("system:serviceaccount:NS:NAME",
        ["system:serviceaccounts", "system:serviceaccounts:NS"])`` matches RBAC bindings whose
        subject is that ServiceAccount. Made once per (user, groups), then reused.
        """
        digest = hashlib.sha256(json.dumps([user, list(groups)]).encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", user)[:40]
        path = self.workdir / "users" / f"{slug}-{digest}.kubeconfig"
        if path.exists():
            return path
        ca_cert, ca_key = _load_ca(self.ca_file, self.workdir / "pki" / "ca.key")
        cert, key = _issue(ca_cert, ca_key, _user_subject(user, groups), server=False)
        return _write_kubeconfig(
            path,
            server=self.server,
            ca_pem=self.ca_file.read_bytes(),
            user=user,
            cert_pem=_cert_pem(cert),
            key_pem=_key_pem(key),
        )

    def api_client(self, kubeconfig: Path | None = None) -> kubernetes.client.ApiClient:
        """A kubernetes.client.ApiClient for this cluster (admin unless ``kubeconfig``).

        Close it when done (``with cluster.api_client() as api:``).
        """
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig),
            client_configuration=configuration,
            persist_config=False,
        )
        return kubernetes.client.ApiClient(configuration)


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


# --------------------------------------------------------------------------------------------
# processes


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL if pytest dies without tearing down.

    Linux sends it when the *thread* that forked exits, so only from the main thread: a cluster
    started from a worker thread must not die with that thread.
    """
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))

    return preexec


class _Proc:
    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )

    def check_alive(self, context: str) -> None:
        code = self.popen.poll()
        if code is not None:
            raise TestbedError(
                f"{self.name} exited with {code} {context}; last lines of {self.log_path}:\n"
                f"{_tail(self.log_path)}"
            )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout_s)


def _poll(what: str, ready: Callable[[], bool], procs: Sequence[_Proc], timeout_s: float) -> float:
    """Poll ``ready`` until true; fail fast if a process dies. Returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while True:
        for proc in procs:
            proc.check_alive(f"while waiting for {what}")
        if ready():
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- last lines of {p.log_path}:\n{_tail(p.log_path)}" for p in procs
            )
            raise TestbedError(f"{what} not ready after {timeout_s:.0f}s\n{tails}")
        time.sleep(POLL_INTERVAL_S)


def _http_ok(url: str, context: ssl.SSLContext | None, expect: Callable[[bytes], bool]) -> bool:
    # No proxy, whatever *_proxy says: these are loopback addresses.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=2.0) as resp:
            return resp.status == 200 and expect(resp.read())
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return False


def _etcd_healthy(body: bytes) -> bool:
    try:
        return json.loads(body).get("health") == "true"  # type: ignore[no-any-return]
    except ValueError:
        return False


def _address_in_use(proc: _Proc) -> bool:
    return "address already in use" in _tail(proc.log_path, 200)


class TestCluster:
    """Context manager: start etcd + kube-apiserver, yield a Cluster, stop them on exit.

    ``workdir``: where certificates, kubeconfigs and logs go (a fresh temp dir if None, removed
    on exit unless ``keep``). etcd's data dir is always removed on exit.
    ``extra_apiserver_flags``: appended to the documented flags (later flags win).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        extra_apiserver_flags: Sequence[str] = (),
        ready_timeout_s: float = APISERVER_READY_TIMEOUT_S,
        keep: bool = False,
    ) -> None:
        self._workdir = workdir
        self._extra = list(extra_apiserver_flags)
        self._ready_timeout_s = ready_timeout_s
        self._keep = keep
        self._own_workdir = False
        self._procs: list[_Proc] = []
        self.cluster: Cluster | None = None
        self.timings: dict[str, float] = {}

    def __enter__(self) -> Cluster:
        bins = require_bins()
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="baton-testbed-"))
            self._own_workdir = True
        workdir = self._workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            t0 = time.monotonic()
            pki = _make_pki(workdir / "pki")
            self.timings["certs"] = time.monotonic() - t0
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    self.cluster = self._start(bins, workdir, pki)
                    break
                except TestbedError:
                    lost_port_race = any(_address_in_use(p) for p in self._procs)
                    self._stop_procs()
                    if not lost_port_race or attempt == START_ATTEMPTS:
                        raise
            self.timings["total"] = time.monotonic() - t0
        except BaseException:
            self._cleanup()
            raise
        assert self.cluster is not None
        return self.cluster

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    def _start(self, bins: Path, workdir: Path, pki: _Pki) -> Cluster:
        etcd_port, peer_port, api_port = _free_ports(3)
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        data_dir = workdir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)

        etcd = _Proc(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=testbed",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=testbed={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # a throwaway store: no disk waits
                # A single member elects itself after one election timeout: 0.05-0.1 s with
                # these instead of 0.1-0.85 s with the defaults (100 ms / 1 s).
                "--heartbeat-interval=10",
                "--election-timeout=100",
                "--log-level=warn",
            ],
            workdir / "etcd.log",
        )
        self._procs.append(etcd)
        self.timings["etcd"] = _poll(
            "etcd /health",
            lambda: _http_ok(f"{etcd_url}/health", None, _etcd_healthy),
            [etcd],
            ETCD_READY_TIMEOUT_S,
        )

        server = f"https://127.0.0.1:{api_port}"
        apiserver = _Proc(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=RBAC",
                # No kube-controller-manager creates `default` ServiceAccounts, so the plugin
                # would refuse every pod.
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                # Otherwise it logs an error every few seconds about a loopback endpoint.
                "--endpoint-reconciler-type=none",
                *self._extra,
            ],
            workdir / "kube-apiserver.log",
        )
        self._procs.append(apiserver)
        probe = ssl.create_default_context(cafile=str(pki.ca_cert))
        probe.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self.timings["apiserver"] = _poll(
            "kube-apiserver /readyz",
            lambda: _http_ok(f"{server}/readyz", probe, lambda body: body.strip() == b"ok"),
            [etcd, apiserver],
            self._ready_timeout_s,
        )

        kubeconfig = _write_kubeconfig(
            workdir / "admin.kubeconfig",
            server=server,
            ca_pem=pki.ca_cert.read_bytes(),
            user="admin",
            cert_pem=pki.admin_cert.read_bytes(),
            key_pem=pki.admin_key.read_bytes(),
        )
        return Cluster(server=server, workdir=workdir, ca_file=pki.ca_cert, kubeconfig=kubeconfig)

    def _stop_procs(self) -> None:
        # The apiserver first (it would otherwise retry a vanished etcd), then etcd.
        while self._procs:
            self._procs.pop().stop()

    def _cleanup(self) -> None:
        try:
            self._stop_procs()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir / "etcd-data", ignore_errors=True)
                if self._own_workdir and not self._keep:
                    shutil.rmtree(self._workdir, ignore_errors=True)


@contextlib.contextmanager
def start_cluster(
    workdir: Path | None = None,
    *,
    extra_apiserver_flags: Sequence[str] = (),
    ready_timeout_s: float = APISERVER_READY_TIMEOUT_S,
    keep: bool = False,
) -> Iterator[Cluster]:
    """``with start_cluster() as cluster:`` -- see TestCluster."""
    with TestCluster(
        workdir,
        extra_apiserver_flags=extra_apiserver_flags,
        ready_timeout_s=ready_timeout_s,
        keep=keep,
    ) as cluster:
        yield cluster


def install_crds(cluster: Cluster, paths: Sequence[Path], timeout_s: float = 30.0) -> None:
    """``kubectl apply`` the CRD files, then wait until every CRD in them is Established.

    Note: kube-apiserver holds any *create* of a custom resource for 2 s while its CRD's
    Established condition is less than 2 s old (customresource_handler.go, an HA safety delay;
    the condition's time has 1 s resolution). So the first create right after this returns
    takes ~2 s; reads, and creates a few seconds later, are not delayed.
    """
    if not paths:
        return
    files = [f"--filename={p}" for p in paths]
    applied = cluster.kubectl("apply", "--output=name", *files, timeout=timeout_s)
    names = [line for line in applied.stdout.split() if line]
    crds = [n for n in names if n.startswith("customresourcedefinition")]
    if not crds:
        raise TestbedError(f"no CustomResourceDefinition in {', '.join(map(str, paths))}")
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        f"--timeout={timeout_s:.0f}s",
        *crds,
        timeout=timeout_s + 10,
    )


# --------------------------------------------------------------------------------------------
# for the fixtures (tests/e2e/conftest.py)


def chart_crds() -> list[Path]:
    """Every CRD file of the chart, in name order (none while the folder is empty or missing)."""
    if not CRD_DIR.is_dir():
        return []
    return sorted(p for p in CRD_DIR.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


_NOT_DNS = re.compile(r"[^a-z0-9]+")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def namespace_name(test_name: str, *, max_len: int = 63, suffix_len: int = 5) -> str:
    """A DNS-1123 label from a test name: lowercased, dashes, truncated, + a random suffix."""
    stem = _NOT_DNS.sub("-", test_name.lower()).strip("-")
    stem = stem[: max_len - suffix_len - 1].rstrip("-") or "test"
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(suffix_len))
    return f"{stem}-{suffix}"
