# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# `make run` passes --port and --feed, so they follow the OMFLOW_* twins unless PORT=/FEED= say.
PORT   ?= $(or $(OMFLOW_PORT),8700)
FEED   ?= $(or $(OMFLOW_FEED),demo)

.PHONY: run test lint bench clean

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
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)
	$(BIN)/mypy --strict src

test: lint  ## lint, type-check and run the whole suite
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/fanout.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
