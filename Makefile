# Every target sets itself up: a fresh machine needs only python3 (3.11+).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
GEN := proto/baton/v1/gateway_pb2.py
PROTOS := $(wildcard proto/baton/v1/*.proto)

.PHONY: setup demo test check lint typecheck imports bench clean

setup: $(STAMP) $(GEN)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(GEN): $(PROTOS) hack/codegen.sh $(STAMP)
	PYTHON=$(PY) hack/codegen.sh

demo: setup
	$(VENV)/bin/baton demo --handoffs 3

test: setup
	$(PY) -m pytest -q

# A mirror of the import layout (real folders, linked files) for the tools that walk folders
# themselves: mypy and import-linter cannot follow setuptools' package-dir mapping.
typecheck-tree: setup
	rm -rf build/typecheck && mkdir -p build/typecheck/baton
	cp -rs "$(CURDIR)/services/." build/typecheck/baton/
	cp -rs "$(CURDIR)/operator/controller/." build/typecheck/baton/operator/
	cp -rs "$(CURDIR)/proto/baton/v1/." build/typecheck/baton/v1/
	find build/typecheck -name __pycache__ -prune -exec rm -rf {} +

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: typecheck-tree
	MYPYPATH=build/typecheck $(VENV)/bin/mypy -p baton
	MYPYPATH=build/typecheck $(VENV)/bin/mypy tests $(wildcard bench/*.py)

imports: typecheck-tree
	PYTHONPATH=build/typecheck $(VENV)/bin/lint-imports

check: lint typecheck imports

bench: setup
	$(PY) -m bench

clean:
	rm -rf build $(VENV) proto/baton/v1/*_pb2*.py proto/baton/v1/*_pb2*.pyi
