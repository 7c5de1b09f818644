#!/usr/bin/env bash
# Regenerate the Python locks in requirements/ from pyproject.toml: every package at one exact
# version with the sha256 of each of its files on PyPI, so `make setup` and the image install
# exactly what the tests ran with (pip --require-hashes refuses anything else).
#
#   requirements/dev.txt      pyproject's dependencies + the dev extra (make setup)
#   requirements/runtime.txt  pyproject's dependencies alone (the image's runtime venv)
#   requirements/codegen.txt  hack/codegen.sh's tools (the image's build stage)
#
# runtime.txt and codegen.txt are constrained to dev.txt, so a package has one version in all
# three (tests/unit/test_locks.py checks it). Run after changing a dependency in pyproject.toml,
# or to move every pin to the newest release (--upgrade); review the diff, run `make test`.
#
# Usage: hack/lock-python.sh [--upgrade]
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_TOOLS_VERSION=7.7.0
TOOLS="${BATON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton}/pip-tools-$PIP_TOOLS_VERSION"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$TOOLS/bin/pip-compile" ]]; then
  "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --quiet "pip-tools==$PIP_TOOLS_VERSION"
fi
upgrade=()
[[ "${1:-}" == --upgrade ]] && upgrade=(--upgrade)

# --no-emit-*: the lock names packages and hashes only, never this machine's index or
# find-links settings.
compile() {
  "$TOOLS/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host "${upgrade[@]}" "$@"
}
compile --extra dev -o requirements/dev.txt pyproject.toml
compile -c requirements/dev.txt -o requirements/runtime.txt pyproject.toml
compile -c requirements/dev.txt -o requirements/codegen.txt requirements/codegen.in
grep -c '==' requirements/*.txt
