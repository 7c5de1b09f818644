"""README's Layout table matches the tree: every folder it names exists and holds the files it
names, and every package of the ``baton`` namespace is in it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("services", "operator", "proto")


def layout_rows() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = re.match(r"\| `([^`]+/)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    assert rows, "README has no Layout table"
    return rows


def test_every_path_in_the_layout_exists() -> None:
    for folder, holds in layout_rows().items():
        assert (REPO / folder).is_dir(), f"Layout: {folder} is not a folder"
        for name in re.findall(r"`([A-Za-z0-9_./-]+)`", holds):
            if name.endswith(".py"):
                assert (REPO / folder / name).is_file(), f"Layout: {folder}{name} does not exist"
            elif name.endswith("/"):
                assert (REPO / folder / name).is_dir(), f"Layout: {folder}{name} does not exist"


def test_every_package_is_in_the_layout() -> None:
    rows = layout_rows()
    named = set(rows)
    for folder, holds in rows.items():
        named |= {folder + sub for sub in re.findall(r"`([A-Za-z0-9_]+/)`", holds)}
    for root in ROOTS:
        for init in (REPO / root).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            folder = init.parent.relative_to(REPO).as_posix() + "/"
            assert folder in named, f"{folder}: a package README's Layout does not show"


def test_baton_is_a_namespace_package_in_every_root() -> None:
    for root in ROOTS:
        assert (REPO / root / "baton").is_dir(), root
        assert not (REPO / root / "baton" / "__init__.py").exists(), (
            f"{root}/baton/__init__.py would end the namespace package"
        )
        assert not (REPO / root / "__init__.py").exists(), root
