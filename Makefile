# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each installs what it needs (.venv, Azurite from package-lock.json) and is idempotent.
# `make` alone lists the targets (each target's `## ` comment is its line in `make help`).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The local ports: Azurite's (demo, serve, bench, scripts.azurite_sas) and `make serve`'s API.
AZURITE_PORT ?= 10000
PORT ?= 7071
# Each port's Azurite keeps its data in $(AZURITE_DIR)/<port>, beside its pid file.
AZURITE_DIR ?= .local/azurite
# `make test` runs the suite in this many pytest-xdist processes, each with its own Azurite, API server and Key
# Vault fake on free ports; a test file stays in one process (its module fixtures are made once). Most tests wait
# on storage and servers rather than compute, so two halve the wall time on two cores. 0: one process, no xdist.
TEST_WORKERS ?= 2
export AZURITE_PORT AZURITE_DIR

.DEFAULT_GOAL := help
.PHONY: help test demo serve bench lint install azurite-start azurite-stop azurite-status clean

help: ## list the targets, one line each (what `make` alone does)
	@echo "make <target>   (ports: AZURITE_PORT=$(AZURITE_PORT) for Azurite, PORT=$(PORT) for make serve)"
	@awk 'BEGIN { FS = ":[^#]*## " } /^[a-z][a-z-]*:[^#]*## / { printf "  %-15s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed ## create .venv and install Azurite (npm ci); nothing if up to date

# Lint first: ruff and mypy are part of green, as the house style asks.
test: install lint ## lint, then the whole test suite against its own Azurite on free ports
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: install ## ruff, mypy and the import contract (import-linter)
	$(VENV)/bin/ruff check shared tests bench scripts function_app.py
	$(VENV)/bin/mypy shared scripts function_app.py
	$(VENV)/bin/lint-imports --no-cache

# Azurite for the demo, `make serve` and the benchmark (tests start their own on free ports). A port held by
# a server this checkout did not start is refused, naming the port and how to pick another.
azurite-start: install ## start this checkout's Azurite on 127.0.0.1:AZURITE_PORT (nothing if it runs)
	@$(PY) -m scripts.local_azurite start --for "make $(or $(lastword $(MAKECMDGOALS)),azurite-start)"

azurite-stop: ## stop this checkout's Azurite on AZURITE_PORT (never a process it did not start)
	@if [ -x $(PY) ]; then $(PY) -m scripts.local_azurite stop; fi

azurite-status: ## say whose server listens on AZURITE_PORT
	@$(PY) -m scripts.local_azurite status

demo: install azurite-start ## the product end to end on Azurite: a destination, two batches, the export pass
	@$(PY) -m scripts.demo

serve: install azurite-start ## the app on 127.0.0.1:PORT (default 7071): the HTTP API and the timer
	@$(PY) -m scripts.serve --port $(PORT) $(SERVE_ARGS)

bench: install azurite-start ## export throughput and memory against the floor (bench/README.md)
	BENCH_STORAGE_CONNECTION="$${BENCH_STORAGE_CONNECTION:-$$($(PY) -m scripts.local_azurite connection-string)}" \
		$(PY) -m bench.run_bench $(BENCH_ARGS)

clean: ## stop every Azurite of this checkout; remove .local, .venv and node_modules
	@if [ -x $(PY) ]; then $(PY) -m scripts.local_azurite stop --all; fi
	rm -rf .local .venv node_modules
