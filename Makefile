# Every target sets itself up: a fresh machine needs python3 (3.11+) for the demo, and Go to build
# the test bed's binaries; hack/host-deps.sh checks (and on Debian installs) what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
GEN := proto/baton/v1/gateway_pb2.py
PROTOS := $(wildcard proto/baton/v1/*.proto)
LOCK := requirements/dev.txt

.PHONY: setup demo test testbed-bins verify-bins lock check lint typecheck imports bench clean image image-archive kind-load chart-lint cluster cluster-down cluster-status

# A real single-node cluster on this machine, without Docker (hack/cluster.sh, docs/real-node.md):
# containerd + runc, the kubelet and the control plane from hack/testbed-bins.lock, CoreDNS, the
# baton:dev image imported. Root only. `make cluster-down` undoes every change to the host.
cluster: setup
	hack/cluster.sh up

cluster-down:
	hack/cluster.sh down

cluster-status:
	hack/cluster.sh status

# The image every component runs from (Dockerfile), its archive for containerd or kind, and the
# kind cluster of kind-config.yaml.
IMAGE ?= baton:dev
IMAGE_ARCHIVE ?= build/image/baton-dev.tar
KIND_CLUSTER ?= baton
# helm as hack/build-k8s-bins.sh builds it (`make testbed-bins`).
HELM ?= $(or $(BATON_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/baton)/bin/helm

setup: $(STAMP) $(GEN)

# The venv holds exactly the lock (requirements/dev.txt: every version and every file's sha256;
# pip refuses anything else), then the project itself, editable, with no further resolution.
# A venv made from another lock is rebuilt from scratch rather than patched.
$(STAMP): pyproject.toml setup.py $(LOCK) hack/host-deps.sh
	PYTHON=$(PYTHON) hack/host-deps.sh python
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps --requirement $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

$(GEN): $(PROTOS) hack/codegen.sh $(STAMP)
	PYTHON=$(PY) hack/codegen.sh

demo: setup
	$(VENV)/bin/baton demo --handoffs 3

test: setup testbed-bins
	hack/host-deps.sh browser image node
	$(PY) -m pytest -q

# etcd, kube-apiserver, kubectl, helm and Jaeger for the e2e test bed (tests/e2e), and kubelet,
# kube-scheduler, kube-controller-manager, kube-proxy, CoreDNS and pause for the real node
# (hack/cluster.sh, tests/node), built once
# from their Go modules into ${BATON_CACHE:-${XDG_CACHE_HOME:-~/.cache}/baton}/bin and verified
# against hack/testbed-bins.lock (versions, toolchain, sha256); a cached binary that does not
# match is rebuilt (see hack/README-testbed.md).
testbed-bins:
	hack/host-deps.sh go
	hack/build-k8s-bins.sh

# The cache against the lock, building nothing: a stale or foreign binary fails here.
verify-bins:
	hack/build-k8s-bins.sh --verify

# Regenerate requirements/*.txt from pyproject.toml (hack/lock-python.sh).
lock:
	PYTHON=$(PYTHON) hack/lock-python.sh

# `baton` is one namespace package over three roots (README's Layout): the static tools read the
# tree as it is, from these roots (mypy through pyproject's mypy_path, import-linter through
# PYTHONPATH), with no mirror.
ROOTS := services:operator:proto

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/shellcheck hack/*.sh .ci/run

# One run over the code (the three roots of `baton`; `mypy -p baton` would stop at the first
# portion of the namespace it finds), one over the tests and the benchmarks (packages too).
typecheck: setup
	$(VENV)/bin/mypy services operator proto
	$(VENV)/bin/mypy tests bench

imports: setup
	PYTHONPATH=$(ROOTS) $(VENV)/bin/lint-imports

check: lint typecheck imports

# The handoff against its baselines (~17 min), then leader election against the Lease settings
# (~3 min). Each writes its JSON to bench/results/; the others (bench.scale, bench.standby,
# bench.soak) are run by name.
bench: setup
	$(PY) -m bench
	$(PY) -m bench.election

# Always podman, never Docker: one path, the one the tests build and run (tests/integration/
# test_image.py), and it needs neither a Docker engine nor a registry: the Dockerfile's
# python:3.11-slim is a local base made from Debian packages (hack/image.sh, docs/image.md).
# Elsewhere, `docker build -t baton:dev .` builds the same Dockerfile on the real base.
image:
	hack/host-deps.sh image
	IMAGE=$(IMAGE) hack/image.sh build

# The image as a docker archive named docker.io/library/baton:dev, for
# `ctr -n k8s.io images import` on a node or `kind load image-archive`.
image-archive:
	hack/host-deps.sh image
	IMAGE=$(IMAGE) ARCHIVE=$(IMAGE_ARCHIVE) hack/image.sh export

# Copy the image into the kind cluster's node (`kind create cluster --config kind-config.yaml`).
kind-load: image-archive
	kind load image-archive $(IMAGE_ARCHIVE) --name $(KIND_CLUSTER)

# The chart, strictly; tests/e2e/test_chart.py also lints it with other values and applies it.
chart-lint: testbed-bins
	$(HELM) lint --strict charts/baton

clean:
	rm -rf build $(VENV) proto/baton/v1/*_pb2*.py proto/baton/v1/*_pb2*.pyi
