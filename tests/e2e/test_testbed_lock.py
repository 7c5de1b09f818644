"""The test bed runs exactly the binaries hack/testbed-bins.lock names, and the build script
holds the cache to that lock: a missing, stale or foreign binary is reported by ``--verify`` and
rebuilt by a build, never used."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.testbed import REPO, bin_dir, host_platform, locked_binaries, locked_toolchain

SCRIPT = REPO / "hack" / "build-k8s-bins.sh"
NAMES = ("etcd", "kube-apiserver", "kubectl", "helm", "jaeger")
# The real node's (hack/cluster.sh, tests/node): built, locked and verified the same way.
NODE_NAMES = (
    "kubelet",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-proxy",
    "coredns",
    "pause",
    "kube-router",  # its network-policy controller: the chart's NetworkPolicies enforced
)
KUBERNETES = ("kubectl", "kubelet", "kube-scheduler", "kube-controller-manager", "kube-proxy")
TIMEOUT_S = 60.0
REBUILD_TIMEOUT_S = 600.0  # one binary with warm Go caches: ~10-30 s; cold would be minutes


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*args: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT_S) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=True, env=env)
    return out.stdout + out.stderr


def script(*args: str, cache: Path, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATON_CACHE": str(cache)}
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# What each binary says its version is, from the binary itself.
VERSION_OF: dict[str, Callable[[Path], str]] = {
    "etcd": lambda p: re.search(r"etcd Version: (\S+)", run(str(p), "--version")).group(1),  # type: ignore[union-attr]
    "kube-apiserver": lambda p: run(str(p), "--version").split()[-1],
    "kubectl": lambda p: json.loads(run(str(p), "version", "--client", "--output=json"))[
        "clientVersion"
    ]["gitVersion"],
    "helm": lambda p: run(str(p), "version", "--template={{.Version}}").strip(),
    "jaeger": lambda p: re.search(r'"gitVersion":\s*"([^"]+)"', run(str(p), "version")).group(1),  # type: ignore[union-attr]
    "kubelet": lambda p: run(str(p), "--version").split()[-1],
    "kube-scheduler": lambda p: run(str(p), "--version").split()[-1],
    "kube-controller-manager": lambda p: run(str(p), "--version").split()[-1],
    "kube-proxy": lambda p: run(str(p), "--version").split()[-1],
    "coredns": lambda p: run(str(p), "-version").split()[-1],
    "pause": lambda p: run(str(p), "-version").split()[-1],
    # "Running <path> version v2.1.0, built on <the module's date>, go1.x"
    "kube-router": lambda p: re.search(r" version (\S+),", run(str(p), "--version")).group(1),  # type: ignore[union-attr]
}


def test_the_lock_names_every_binary_for_this_platform() -> None:
    locked = locked_binaries()
    assert sorted(locked) == sorted(NAMES + NODE_NAMES), f"lock lines for {host_platform()}"
    for entry in locked.values():
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry
        assert re.fullmatch(r"v\d+\.\d+\.\d+", entry.version), entry
    # One module, one version: kubectl is the same Kubernetes as the apiserver.
    for name in KUBERNETES:
        assert locked[name].version == locked["kube-apiserver"].version, name
    assert re.fullmatch(r"go\d+\.\d+\.\d+", locked_toolchain())


@pytest.mark.parametrize("name", NAMES + NODE_NAMES)
def test_the_test_bed_runs_the_locked_binary(name: str) -> None:
    entry = locked_binaries()[name]
    path = bin_dir() / name
    # The stable name is the build script's link to the versioned binary in the cache, never a
    # tool that happens to be installed on the machine.
    assert path.is_symlink(), f"{path} is not the build script's link"
    assert path.resolve() == (bin_dir() / f"{name}-{entry.version}").resolve()
    assert sha256(path.resolve()) == entry.sha256, f"{path} is not the locked {name}"
    version = VERSION_OF[name](path).lstrip("v")
    assert version == entry.version.lstrip("v"), f"{name} says {version}, lock {entry.version}"


def test_verify_passes_on_the_cache_the_tests_use() -> None:
    result = script("--verify", cache=bin_dir().parent)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, entry in locked_binaries().items():
        assert re.search(
            rf"^{re.escape(name)}\s+{entry.version}\s+\S+\s+ok\s+{entry.sha256}$",
            result.stdout,
            re.MULTILINE,
        ), result.stdout


def test_verify_names_a_missing_a_foreign_and_a_mislinked_binary(tmp_path: Path) -> None:
    locked = locked_binaries()
    cache = tmp_path / "cache"
    bins = cache / "bin"
    bins.mkdir(parents=True)
    # etcd: a foreign binary under the locked name; kubectl: the machine's own, linked in (what
    # the old script did); helm: the right bytes behind a link to somewhere else; the rest missing.
    foreign = bins / f"etcd-{locked['etcd'].version}"
    foreign.write_text("#!/bin/sh\necho 'etcd Version: 3.6.16'\n")
    foreign.chmod(0o755)
    (bins / "kubectl").symlink_to("/usr/bin/kubectl")
    real_helm = bins / f"helm-{locked['helm'].version}"
    shutil.copy2(bin_dir() / "helm", real_helm)
    (bins / "elsewhere").symlink_to(real_helm)
    (bins / "helm").symlink_to("elsewhere")

    result = script("--verify", cache=cache)

    assert result.returncode == 1
    status = {
        line.split()[0]: line.split()[3] for line in result.stdout.splitlines()[1:] if line.strip()
    }
    assert status == {
        "etcd": "mismatch",
        "kube-apiserver": "missing",
        "kubectl": "missing",
        "helm": "bad-link",
        "jaeger": "missing",
        **dict.fromkeys(NODE_NAMES, "missing"),
    }
    assert sha256(foreign) in result.stdout  # the foreign hash is shown, to compare
    assert "make testbed-bins" in result.stderr


def test_a_build_replaces_a_foreign_cached_binary_with_the_locked_one(tmp_path: Path) -> None:
    """The refusal is real: the build script rebuilds (from the warm Go caches) rather than
    keep a binary whose bytes differ from the lock."""
    entry = locked_binaries()["etcd"]
    cache = tmp_path / "cache"
    (cache / "bin").mkdir(parents=True)
    foreign = cache / "bin" / f"etcd-{entry.version}"
    foreign.write_text("#!/bin/sh\necho 'etcd Version: 3.6.16'\n")
    foreign.chmod(0o755)

    result = script("etcd", cache=cache, timeout=REBUILD_TIMEOUT_S)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "does not match the lock" in result.stderr
    assert "rebuilding" in result.stderr
    assert sha256(foreign) == entry.sha256
    assert (cache / "bin" / "etcd").resolve() == foreign.resolve()
