"""The Baton image, built and run for real: `hack/image.sh` (what `make image` runs) builds the
Dockerfile with podman on the local python:3.11-slim made from Debian packages, then every test
runs the image the way Kubernetes runs it (uid 10001, read-only root filesystem).

The build is the module's fixture: cold (no base, no layers) ~1.5 min on 2 cores, warm a few
seconds. podman, runc and mmdebstrap come from Debian (`hack/host-deps.sh image`, which
`make test` runs); without them the tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "image.sh"
# Its own tag, so that a `make image` elsewhere on the machine cannot retag what these tests run
# (the build is the same: the same script and tree, every layer shared with baton:dev).
IMAGE = f"baton:test-{os.getpid()}"
BASE = "docker.io/library/python:3.11-slim"
UID = "10001"
BUILD_TIMEOUT_S = 900.0  # a cold build is ~90 s here; a fresh machine also downloads the debs
RUN_TIMEOUT_S = 60.0
# As hack/image.sh runs containers: runc by name, ulimits within this machine's hard limits.
PODMAN_RUN = [
    "podman",
    "run",
    "--rm",
    "--pull=never",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=16384:16384",
    "--ulimit",
    "nproc=4096:4096",
]

# The fixture's build counts against the first test's timeout.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 2 * RUN_TIMEOUT_S)


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGE", "ARCHIVE")}
    return env | extra


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    for tool in ("podman", "runc", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `hack/host-deps.sh image` (make test does)")
    result = subprocess.run(
        [str(SCRIPT), "build"],
        cwd=REPO,
        env=script_env(IMAGE=IMAGE),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    try:
        assert result.returncode == 0, f"hack/image.sh build failed:\n{result.stderr[-6000:]}"
        yield IMAGE
    finally:
        # Only the names: the layers stay, as the next build's cache.
        for name in (f"localhost/{IMAGE}", f"docker.io/library/{IMAGE}"):
            if podman("image", "exists", name).returncode == 0:
                untag = podman("untag", name, name)
                assert untag.returncode == 0, untag.stderr


def run(
    image: str, *args: str, options: tuple[str, ...] = ("--read-only",), entrypoint: str = ""
) -> subprocess.CompletedProcess[str]:
    cmd = [*PODMAN_RUN, *options]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    return subprocess.run(
        [*cmd, image, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def inspect(ref: str) -> dict[str, Any]:
    result = podman("image", "inspect", ref)
    assert result.returncode == 0, result.stderr
    (found,) = json.loads(result.stdout)
    assert isinstance(found, dict)
    return found


def test_the_image_is_built_on_the_local_debian_base(image: str) -> None:
    config = inspect(image)["Config"]
    labels = config["Labels"]
    base_labels = inspect(BASE)["Config"]["Labels"]
    # FROM python:3.11-slim resolved to the base hack/image.sh made, not to anything pulled.
    assert labels["io.baton.base.key"] == base_labels["io.baton.base.key"]
    assert labels["org.opencontainers.image.title"] == "baton"
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["baton"]
    # The base records the Debian packages that went into it; its python is the image's.
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = Path(os.environ.get("BATON_CACHE") or xdg / "baton") / "image"
    manifest = cache / f"base-{base_labels['io.baton.base.key']}.packages"
    packages = dict(line.split("\t")[:2] for line in manifest.read_text().splitlines())
    assert packages["python3.11"] == base_labels["io.baton.base.python"]
    version = run(image, "--version", entrypoint="python")
    assert version.returncode == 0, version.stderr
    upstream = packages["python3.11"].split("-")[0]  # 3.11.2-6+deb12u9 -> 3.11.2
    assert version.stdout.strip() == f"Python {upstream}"


def test_it_runs_as_uid_10001(image: str) -> None:
    result = run(image, "-c", "id -u; id -g; echo $HOME", entrypoint="sh")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [UID, UID, "/data"]


def test_a_read_only_root_runs_and_cannot_be_written(image: str) -> None:
    help_ = run(image, "--help")
    assert help_.returncode == 0, help_.stderr
    assert help_.stdout.startswith("usage: baton")
    # As root, so that only the read-only mount can refuse the write...
    probe = ("-c", "touch /probe && echo written")
    refused = run(image, *probe, options=("--read-only", "--user", "0"), entrypoint="sh")
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    # ...as the control shows: the same write without --read-only succeeds.
    written = run(image, *probe, options=("--user", "0"), entrypoint="sh")
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == "written"


def test_no_pip_at_run_time(image: str) -> None:
    result = run(image, "-m", "pip", "--version", entrypoint="python")
    assert result.returncode != 0
    assert "No module named pip" in result.stderr
    probe = "import importlib.util as u; print(u.find_spec('pip'), u.find_spec('setuptools'))"
    spec = run(image, "-c", probe, entrypoint="python")
    assert spec.stdout.split() == ["None", "None"], spec.stderr
    on_path = run(image, "-c", "command -v pip pip3 || true", entrypoint="sh")
    assert on_path.stdout.strip() == ""
    # The control: the base has pip (the Dockerfile's build stage uses it); the image removed it.
    base = subprocess.run(
        [*PODMAN_RUN, BASE, "python", "-m", "pip", "--version"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert base.returncode == 0, base.stderr
    assert base.stdout.startswith("pip ")


@pytest.mark.parametrize("command", ["presence", "gateway", "strategy", "sim", "operator"])
def test_the_baton_entrypoint_runs_each_component(image: str, command: str) -> None:
    """Each command's --help imports its component, so a dependency missing from the runtime
    lock, or bytecode it would try to write, fails here."""
    result = run(image, command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: baton {command}")
    assert result.stderr == ""


def test_export_writes_an_archive_containerd_can_import(image: str, tmp_path: Path) -> None:
    archive = tmp_path / "baton.tar"
    result = subprocess.run(
        [str(SCRIPT), "export"],
        cwd=REPO,
        env=script_env(IMAGE=image, ARCHIVE=str(archive)),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    with tarfile.open(archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        (manifest,) = json.load(manifest_file)
        config_file = tar.extractfile(manifest["Config"])
        assert config_file is not None
        config = json.load(config_file)
        names = set(tar.getnames())
    # The name a pod's `image: baton:...` resolves to in containerd (baton:dev ->
    # docker.io/library/baton:dev).
    assert manifest["RepoTags"] == [f"docker.io/library/{image}"]
    assert set(manifest["Layers"]) <= names
    assert config["config"]["User"] == f"{UID}:{UID}"
    assert config["config"]["Entrypoint"] == ["baton"]
    assert config["rootfs"]["diff_ids"] == inspect(image)["RootFS"]["Layers"]
