#!/usr/bin/env bash
# Generates the Python code of the gRPC contract (proto/baton/v1/*.proto) next to the .proto
# files, where the `baton.v1` package lives. Generated files are git-ignored; `make` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# protoc finds its plugins (protoc-gen-mypy) on PATH: use the venv's.
PY_BIN="$(cd "$(dirname "$PY")" && pwd)"
export PATH="$PY_BIN:$PATH"
rm -f proto/baton/v1/*_pb2*.py proto/baton/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -Iproto \
  --python_out=proto --grpc_python_out=proto \
  --mypy_out=proto --mypy_grpc_out=proto \
  proto/baton/v1/*.proto
generated=(proto/baton/v1/*_pb2*.py)
echo "codegen: ${#generated[@]} modules in proto/baton/v1"
