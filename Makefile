# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# `make run` passes --port and --feed, so they follow the OMFLOW_* twins unless PORT=/FEED= say.
PORT   ?= $(or $(OMFLOW_PORT),8700)
FEED   ?= $(or $(OMFLOW_FEED),demo)

.PHONY: run test lint bench bench-e2e cluster clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps: reinstall only when the project's metadata changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[server]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[server,dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run  ## start the server with the demo feed and print a working key
	$(BIN)/omflow serve --feed $(FEED) --port $(PORT) --demo-key

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests $(wildcard benchmarks) $(wildcard scripts)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks) $(wildcard scripts)
	$(BIN)/mypy --strict src

test: lint  ## lint, type-check and run the whole suite
	$(BIN)/python -m pytest

# Headless Chromium for the live-page test (tests/server/test_live_page.py), which skips
# without it. Not a prerequisite of `make test`: it is a system package (about 300 MB, root,
# apt-get), so .ci/run asks for it and a newcomer may. Never a browser download.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	} || { echo "make chromium: install Debian's chromium package (as root: apt-get install chromium)"; exit 1; }

# Two gateway processes and a feed process on the local Redis and PostgreSQL (README: «Running
# several nodes»). CLUSTER_REDIS / CLUSTER_KEYS / CLUSTER_PORT choose where.
CLUSTER_PORT  ?= 8800
CLUSTER_REDIS ?= redis://127.0.0.1:6379/5
CLUSTER_KEYS  ?= postgresql://postgres@127.0.0.1:5432/test?search_path=omflow_cluster
cluster: $(VENV)/.installed-run  ## a local cluster: 2 gateways + 1 feed on Redis and PostgreSQL
	$(BIN)/python scripts/cluster.py --port $(CLUSTER_PORT) --redis '$(CLUSTER_REDIS)' \
		--keys '$(CLUSTER_KEYS)'

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/fanout.py

# omflow beside nginx+nchan through the public interfaces (benchmarks/README.md «End to end»).
# Installs Debian's nginx-light and libnginx-mod-nchan when missing and run as root.
bench-e2e: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/e2e.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
