"""The installed distribution's version, read from its metadata (pyproject.toml is the one place
it is written).

``baton`` is a namespace package spread over ``services/``, ``operator/`` and ``proto/`` (see
README's Layout), so it has no ``__init__.py`` to hold this.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("baton")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"
