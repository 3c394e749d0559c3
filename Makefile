# Two commands on a fresh machine: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test install install-dev migrate demo serve bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the local CPU build, so sentence-transformers does not pull a CUDA one.
$(STAMP): requirements.txt pyproject.toml Makefile | $(BIN)/python
	$(PIP) install torch==2.13.0
	$(PIP) install -r requirements.txt
	# compat mode puts the project root on sys.path, so packages added later import without reinstalling.
	$(PIP) install --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

migrate: install
	$(BIN)/huiqi migrate

demo: migrate
	$(BIN)/huiqi demo --if-empty

# Matching catches up in the background once the server runs (see matcher/jobs.py).
run: demo
	$(BIN)/huiqi serve

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python -m bench

lint: install-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache
