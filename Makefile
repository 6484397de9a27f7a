# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each installs what it needs (.venv, Azurite from package-lock.json) and is idempotent.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZURITE_PORT ?= 10000
AZURITE_DIR := .local/azurite

.PHONY: test demo serve bench lint install azurite-start azurite-stop clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

# Lint first: ruff and mypy are part of green, as the house style asks.
test: install lint
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check shared tests bench scripts function_app.py
	$(VENV)/bin/mypy shared scripts function_app.py
	$(VENV)/bin/lint-imports --no-cache

# Azurite for the demo and `make serve` (tests start their own on free ports).
azurite-start: node_modules/.installed
	@mkdir -p $(AZURITE_DIR)
	@if $(PY) -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(0 if s.connect_ex(('127.0.0.1',$(AZURITE_PORT)))==0 else 1)"; then \
		echo "Azurite already listening on 127.0.0.1:$(AZURITE_PORT)"; \
	else \
		echo "Starting Azurite on 127.0.0.1:$(AZURITE_PORT) (data in $(AZURITE_DIR))"; \
		nohup node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort $(AZURITE_PORT) \
			--location $(AZURITE_DIR) --disableTelemetry --skipApiVersionCheck --loose \
			> $(AZURITE_DIR)/azurite.log 2>&1 & echo $$! > $(AZURITE_DIR)/azurite.pid; \
		for i in $$(seq 1 100); do \
			$(PY) -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1',$(AZURITE_PORT)))==0 else 1)" && break; sleep 0.2; \
		done; \
	fi

azurite-stop:
	@if [ -f $(AZURITE_DIR)/azurite.pid ]; then kill $$(cat $(AZURITE_DIR)/azurite.pid) 2>/dev/null || true; rm -f $(AZURITE_DIR)/azurite.pid; fi

demo: install azurite-start
	AZURITE_PORT=$(AZURITE_PORT) $(PY) -m scripts.demo

serve: install azurite-start
	$(PY) -m scripts.serve

bench: install azurite-start
	$(PY) -m bench.run_bench $(BENCH_ARGS)

clean: azurite-stop
	rm -rf .local .venv node_modules
