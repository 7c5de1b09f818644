"""The Python locks (requirements/*.txt, from hack/lock-python.sh) are what the tests run on:
every pin installed at its version, every pin hashed, one version per package across the
locks, and each pin within what pyproject.toml asks for."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "requirements"
DEV, RUNTIME, CODEGEN = (LOCKS / f"{n}.txt" for n in ("dev", "runtime", "codegen"))

PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s*--hash=sha256:[0-9a-f]{64})*)", re.MULTILINE
)


@cache
def pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    return {
        canonicalize_name(m.group(1)): (m.group(2), m.group(3).count("--hash=sha256:"))
        for m in PIN.finditer(path.read_text())
    }


@cache
def pyproject() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"runtime": project["dependencies"], "dev": project["optional-dependencies"]["dev"]}


@pytest.mark.parametrize("lock", [DEV, RUNTIME, CODEGEN], ids=lambda p: p.name)
def test_every_pin_is_hashed_and_no_machine_setting_leaks_in(lock: Path) -> None:
    text = lock.read_text()
    lines = [ln for ln in text.splitlines() if re.match(r"^[A-Za-z0-9]", ln)]
    assert lines
    assert len(lines) == len(pins(lock)), "every requirement line is an exact pin"
    assert all(n >= 1 for _, n in pins(lock).values()), "a pin without a hash"
    assert not re.search(r"^--(find-links|index-url|extra-index-url|trusted-host)", text, re.M)


def test_the_venv_runs_exactly_the_dev_lock() -> None:
    wrong = {}
    for name, (version, _) in pins(DEV).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong[name] = f"lock {version}, installed {installed}"
    assert not wrong, f"run `make setup` (the venv is rebuilt from the lock): {wrong}"


@pytest.mark.parametrize("lock", [RUNTIME, CODEGEN], ids=lambda p: p.name)
def test_one_version_per_package_across_the_locks(lock: Path) -> None:
    dev = pins(DEV)
    differ = {
        n: (v, dev.get(n, ("absent", 0))[0])
        for n, (v, _) in pins(lock).items()
        if dev.get(n, ("", 0))[0] != v
    }
    assert not differ, f"{lock.name} vs dev.txt: {differ}"


@pytest.mark.parametrize(("group", "lock"), [("runtime", RUNTIME), ("dev", DEV)])
def test_the_lock_satisfies_pyproject(group: str, lock: Path) -> None:
    locked = pins(lock)
    for text in pyproject()[group] + (pyproject()["runtime"] if group == "dev" else []):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} ({group}) is not in {lock.name}: run `make lock`"
        assert req.specifier.contains(locked[name][0], prereleases=True), (
            f"{lock.name} pins {name}=={locked[name][0]}, pyproject asks {req}: run `make lock`"
        )


def test_the_runtime_lock_holds_no_dev_tool() -> None:
    runtime = pins(RUNTIME)
    for tool in ("pytest", "mypy", "ruff", "hypothesis", "grpcio-tools"):
        assert tool not in runtime
