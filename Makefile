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

.PHONY: help dev test test-tools unit lint run cluster-up cluster-down controlplane bench bench-controlplane shadow clean image image-test image-push manifests chart-files

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

test: $(VENV_STAMP) controlplane test-tools ## Run the whole test suite (unit + integration on a local control plane)
	$(BIN)/pytest $(PYTEST_ARGS)

test-tools: ## Check the system tools the tests need (prometheus and promtool: Debian's prometheus package)
	@missing=""; for tool in prometheus promtool openssl; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "make test needs:$$missing. Install Debian's packages: sudo apt-get install prometheus openssl" >&2; \
		echo "(.ci/run installs them; the Prometheus source tests and the alert-rule tests run the real binaries)" >&2; \
		exit 1; \
	fi

unit: $(VENV_STAMP) ## Run only the fast unit tests (no cluster)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: $(VENV_STAMP) ## ruff and mypy
	$(BIN)/ruff check operator tools/devcluster tests bench
	$(BIN)/ruff format --check operator tools/devcluster tests bench
	$(BIN)/mypy

# make run: which cluster (local: the local control plane in .cluster/, started or reused;
# current: whatever your kubeconfig's current context reaches, only when you say so), the
# loopback ports of /metrics and /healthz, SCOPE (default every namespace; SCOPE="-n dev" needs
# the KopfPeering "kopfscale" in dev, as the namespaced manifests create it), and VERBOSE=1 for
# kopf's debug log.
CLUSTER ?= local
RUN_METRICS_PORT ?= 8081
RUN_HEALTH_PORT ?= 8080
VERBOSE ?=
SCOPE ?= --all-namespaces
RUN_ARGS = $(SCOPE) --peering=kopfscale --priority=0 \
	--metrics-port=$(RUN_METRICS_PORT) --metrics-address=127.0.0.1 \
	--liveness=http://127.0.0.1:$(RUN_HEALTH_PORT)/healthz $(if $(VERBOSE),--verbose)

run: $(VENV_STAMP) ## Run the operator on the local control plane (CLUSTER=current: your kubeconfig's cluster; VERBOSE=1: debug)
	@case "$(CLUSTER)" in \
	local) \
		$(MAKE) --no-print-directory cluster-up >/dev/null || exit 1; \
		export KUBECONFIG=$(KUBECONFIG_LOCAL); \
		$(BIN)/kopfscale cluster kubectl apply --server-side --force-conflicts -f crds/ -f deploy/crds/ >/dev/null || exit 1; \
		echo "kopfscale: the local control plane is up; in another shell: export KUBECONFIG=$(KUBECONFIG_LOCAL)"; \
		exec $(BIN)/kopfscale run $(RUN_ARGS);; \
	current) \
		$(BIN)/kopfscale cluster reachable || { echo "kopfscale: CLUSTER=current, but the current kubeconfig reaches no cluster" >&2; exit 1; }; \
		exec $(BIN)/kopfscale run $(RUN_ARGS);; \
	*) echo "kopfscale: CLUSTER must be local (default) or current, not '$(CLUSTER)'" >&2; exit 2;; \
	esac

PEERS ?=
cluster-up: $(VENV_STAMP) controlplane ## Start the local control plane in the background (PEERS=1: with KEDA); prints the KUBECONFIG export
	@$(BIN)/kopfscale cluster up --state-dir $(CLUSTER_DIR) $(if $(filter 1 yes true,$(PEERS)),--peers)

cluster-down: ## Stop the local control plane and every process it started
	@if [ -x $(BIN)/kopfscale ]; then $(BIN)/kopfscale cluster down --state-dir $(CLUSTER_DIR); fi

BENCH_ARGS ?=
# make bench: QUICK=1 runs every scenario at small N (a smoke run, results in bench/results/quick/);
# SCENARIOS=burst,soak a subset (footprint, burst, reaction, steady, soak, lateness, unrelated);
# PEERS=0 leaves KEDA out; BENCH_ARGS passes anything else to python -m bench.run (--help lists it).
QUICK ?=
SCENARIOS ?=
bench: $(VENV_STAMP) controlplane ## Benchmarks beside their floors, the naive loop and KEDA+HPA (~2 h; QUICK=1 smoke ~15 min; SCENARIOS=a,b); writes bench/results/
	$(BIN)/python -m bench.run $(if $(filter 1 yes true,$(QUICK)),--quick) \
		$(if $(SCENARIOS),--scenarios $(SCENARIOS)) $(if $(filter 0 no false,$(PEERS)),--no-peers) $(BENCH_ARGS)

bench-controlplane: $(VENV_STAMP) ## Benchmark the control plane: cold build time, start-to-ready, RSS per process (PEERS=1: with KEDA)
	$(BIN)/python bench/controlplane.py $(if $(filter 1 yes true,$(PEERS)),--peers)

SHADOW_ARGS ?=
shadow: $(VENV_STAMP) controlplane ## kopfscale in mode Observe beside the HPA and KEDA (~8 min; SHADOW_ARGS=--short); writes bench/results/shadow.*
	$(BIN)/python -m bench.shadow $(SHADOW_ARGS)

CHART_DIR := deploy/helm/kopfscale
chart-files: ## Copy crds/, deploy/crds/ and deploy/monitoring/rules.yaml into the chart (helm packages no symlinks); tests check the copies
	cp crds/*.yaml deploy/crds/*.yaml $(CHART_DIR)/crds/
	mkdir -p $(CHART_DIR)/files && cp deploy/monitoring/rules.yaml $(CHART_DIR)/files/rules.yaml
	bash deploy/render.sh

clean: cluster-down ## Remove the venv and local state (keeps the ~/.cache/kopfscale binaries)
	rm -rf $(VENV) $(CLUSTER_DIR) .pytest_cache .mypy_cache .ruff_cache

image: ## Build the operator image with buildah (local debootstrap base, vfs, chroot); prints size and time
	bash tools/image/build.sh

REGISTRY ?=
TAG ?=
image-push: ## Push the image make image built: make image-push REGISTRY=registry.example.com/team TAG=0.1.0 (buildah)
	REGISTRY="$(REGISTRY)" TAG="$(TAG)" bash tools/image/push.sh

manifests: ## Plain manifests for your image: make manifests REGISTRY=… TAG=… writes build/manifests/{kubernetes,namespaced}/
	@test -n "$(REGISTRY)" -a -n "$(TAG)" || { echo "usage: make manifests REGISTRY=<host[/path]> TAG=<tag>" >&2; exit 2; }
	KOPFSCALE_RENDER_OUT=build/manifests KOPFSCALE_IMAGE_REPOSITORY="$(patsubst %/,%,$(REGISTRY))/kopfscale" \
		KOPFSCALE_IMAGE_TAG="$(TAG)" bash deploy/render.sh

image-test: $(VENV_STAMP) controlplane ## Run the built image (podman) on a local control plane: it must reconcile a Greeter
	$(BIN)/python -m pytest -p tests.conftest tools/image/test_image.py $(PYTEST_ARGS)
