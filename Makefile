# ModelPilot developer commands. Every target does the set-up it needs.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup lint fmt test test-unit test-integration test-chaos test-e2e test-kind images cluster-up cluster-down demo lock

setup:
	@bash hack/setup.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The whole suite: lint and types, unit tests, integration tests on the local control plane,
# the chaos tier (failures injected into its own control plane; prints what it survived),
# and the end-to-end tier on a real node (ModelPilot installed from manifests/).
test: lint
	$(PYTEST) tests

test-unit: setup
	$(PYTEST) tests/unit

test-integration: setup
	$(PYTEST) tests/integration

test-chaos: setup
	$(PYTEST) tests/chaos

test-e2e: setup
	$(PYTEST) tests/e2e

# ModelPilot's and the sample model's images from Debian packages and requirements.lock (no
# Docker), imported into the node's containerd when `make cluster-up NODE=1` runs one.
images: setup
	@$(PY) -m modelpilot.devcluster images

# Opt-in: the integration tier against a kind cluster (needs Docker and kind).
test-kind: setup
	@bash hack/test-kind.sh

# NODE=1 adds a real node (containerd, kubelet, kube-proxy, kube-scheduler; needs root).
cluster-up: setup
	@$(PY) -m modelpilot.devcluster up $(if $(filter 1,$(NODE)),--node)

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m modelpilot.devcluster down; else echo "nothing was running"; fi

# The whole product on one machine, about 9 minutes (DEMO_MINUTES=4 for a shorter run).
demo: setup
	@$(PY) -m modelpilot.demo

# Re-pin requirements.lock from a clean environment built from pyproject.toml.
lock:
	@bash hack/lock.sh
