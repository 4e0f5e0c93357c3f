# ModelPilot developer commands. Every target does the set-up it needs.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup lint fmt test test-unit test-integration test-chaos test-kind cluster-up cluster-down demo lock

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
# and the chaos tier (failures injected into its own control plane; prints what it survived).
test: lint
	$(PYTEST) tests

test-unit: setup
	$(PYTEST) tests/unit

test-integration: setup
	$(PYTEST) tests/integration

test-chaos: setup
	$(PYTEST) tests/chaos

# Opt-in: the integration tier against a kind cluster (needs Docker and kind).
test-kind: setup
	@bash hack/test-kind.sh

cluster-up: setup
	@$(PY) -m modelpilot.devcluster up

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m modelpilot.devcluster down; else echo "nothing was running"; fi

# The whole product on one machine, about 9 minutes (DEMO_MINUTES=4 for a shorter run).
demo: setup
	@$(PY) -m modelpilot.demo

# Re-pin requirements.lock from a clean environment built from pyproject.toml.
lock:
	@bash hack/lock.sh
