# Two commands on a fresh machine: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
NPM_STAMP := node_modules/.installed
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

.PHONY: run test install install-dev migrate demo bench lint clean browser

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

# Front-end packages (htmx, ECharts, Pico CSS) exactly as package-lock.json pins them; the web UI
# serves them from node_modules under /static/vendor (no CDN, nothing third-party committed).
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; no browser is downloaded) and a
# CJK font, so pages and screenshots show Chinese rather than empty boxes. Needs root (apt-get).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && $(APT_INSTALL) chromium)
	@fc-list :lang=zh family 2>/dev/null | grep -q . || (apt-get update && $(APT_INSTALL) fonts-noto-cjk)

install: $(STAMP) $(NPM_STAMP)

install-dev: $(DEV_STAMP)

migrate: install
	$(BIN)/huiqi migrate

demo: migrate
	$(BIN)/huiqi demo --if-empty

# Matching catches up in the background once the server runs (see matcher/jobs.py).
run: demo
	$(BIN)/huiqi run

test: install-dev $(NPM_STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python -m bench

# The same checks pre-commit runs: lint, format, the architecture contracts and the type checker
# (both configured in pyproject.toml).
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache node_modules test-artifacts
