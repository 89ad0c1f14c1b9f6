# kopfscale — the front door. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
CLUSTER_DIR := .cluster
KUBECONFIG_LOCAL := $(abspath $(CLUSTER_DIR))/kubeconfig
PYTEST_ARGS ?=

.PHONY: help dev test unit lint run cluster-up cluster-down controlplane bench bench-controlplane clean image image-test

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV_STAMP): pyproject.toml tools/devcluster/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet -e tools/devcluster
	touch $@

dev: $(VENV_STAMP) ## Create .venv: kopfscale with its dev extra, and the local control plane (tools/devcluster)

controlplane: ## Build (or reuse from ~/.cache/kopfscale) the local control-plane binaries
	bash tools/controlplane/build.sh

test: $(VENV_STAMP) controlplane ## Run the whole test suite (unit + integration on a local control plane)
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(VENV_STAMP) ## Run only the fast unit tests (no cluster)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: $(VENV_STAMP) ## ruff and mypy
	$(BIN)/ruff check operator tools/devcluster tests bench
	$(BIN)/ruff format --check operator tools/devcluster tests bench
	$(BIN)/mypy

run: $(VENV_STAMP) ## Run the operator in the foreground (current kubeconfig, else a local control plane)
	@if $(BIN)/kopfscale cluster reachable; then \
		echo "kopfscale: running against the current kubeconfig ($$($(BIN)/kopfscale cluster reachable --describe))"; \
		exec $(BIN)/kopfscale run --all-namespaces --verbose; \
	else \
		echo "kopfscale: no cluster is reachable; starting the local control plane in $(CLUSTER_DIR)/"; \
		$(MAKE) --no-print-directory cluster-up >/dev/null && \
		echo "kopfscale: installing crds/ and running the operator (in another shell: export KUBECONFIG=$(KUBECONFIG_LOCAL))" && \
		KUBECONFIG=$(KUBECONFIG_LOCAL) $(BIN)/kopfscale cluster kubectl apply --server-side -f crds/ && \
		KUBECONFIG=$(KUBECONFIG_LOCAL) exec $(BIN)/kopfscale run --all-namespaces --verbose; \
	fi

PEERS ?=
cluster-up: $(VENV_STAMP) controlplane ## Start the local control plane in the background (PEERS=1: with KEDA); prints the KUBECONFIG export
	@$(BIN)/kopfscale cluster up --state-dir $(CLUSTER_DIR) $(if $(filter 1 yes true,$(PEERS)),--peers)

cluster-down: ## Stop the local control plane and every process it started
	@if [ -x $(BIN)/kopfscale ]; then $(BIN)/kopfscale cluster down --state-dir $(CLUSTER_DIR); fi

BENCH_ARGS ?=
bench: $(VENV_STAMP) controlplane ## Benchmarks vs the naive baseline (~30 min; BENCH_ARGS=--quick for a smoke run); writes bench/results/
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-controlplane: $(VENV_STAMP) ## Benchmark the control plane: cold build time, start-to-ready, RSS per process (PEERS=1: with KEDA)
	$(BIN)/python bench/controlplane.py $(if $(filter 1 yes true,$(PEERS)),--peers)

clean: cluster-down ## Remove the venv and local state (keeps the ~/.cache/kopfscale binaries)
	rm -rf $(VENV) $(CLUSTER_DIR) .pytest_cache .mypy_cache .ruff_cache

image: ## Build the operator image with buildah (local debootstrap base, vfs, chroot); prints size and time
	bash tools/image/build.sh

image-test: $(VENV_STAMP) controlplane ## Run the built image (podman) on a local control plane: it must reconcile a Greeter
	$(BIN)/python -m pytest -p tests.conftest tools/image/test_image.py $(PYTEST_ARGS)
