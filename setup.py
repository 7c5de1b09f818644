"""The one thing pyproject.toml cannot say: ``baton`` is a namespace package in three roots.

Every package is found in its root and built from the folder its name names, so a module's
import path is its path under ``services/``, ``operator/`` or ``proto/``. setuptools'
``packages.find`` cannot do this (it maps ``baton`` to one root only). Metadata, dependencies
and package data are in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOTS = ("services", "operator", "proto")  # services/ first: its baton/ holds cli.py, wire.py...


def package_dirs() -> dict[str, str]:
    """Each package's folder: ``baton.gateway`` -> ``services/baton/gateway``."""
    found: dict[str, str] = {}
    for root in ROOTS:
        for package in find_namespace_packages(
            root, include=["baton", "baton.*"], exclude=["*.__pycache__", "*.__pycache__.*"]
        ):
            folder = Path(root, *package.split("."))
            if package in found:
                # Only the namespace itself spans roots, and only one root puts modules in it.
                if package != "baton" or any(folder.glob("*.py")):
                    raise SystemExit(f"{package}: modules in both {found[package]} and {folder}")
                continue
            found[package] = folder.as_posix()
    return found


PACKAGE_DIRS = package_dirs()
setup(packages=sorted(PACKAGE_DIRS), package_dir=PACKAGE_DIRS)
