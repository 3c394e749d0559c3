# Two commands on a fresh machine: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The big installs print what pip collects (a first `make run` downloads for a minute or two); small ones stay quiet.
PIP_LOUD := $(BIN)/pip --disable-pip-version-check
PIP := $(BIN)/pip -q --disable-pip-version-check
STEP := @printf '\n==> %s\n'

STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
NPM_STAMP := node_modules/.installed
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

.PHONY: run test install install-dev migrate demo bench lint clean browser wrk

$(BIN)/python:
	$(STEP) "1/5 创建 Python 虚拟环境 $(VENV)"
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the local CPU build, so sentence-transformers does not pull a CUDA one.
$(STAMP): requirements.txt pyproject.toml Makefile | $(BIN)/python
	$(STEP) "2/5 安装 PyTorch（CPU 版，首次约需 1–2 分钟）"
	$(PIP_LOUD) install torch==2.13.0
	$(STEP) "3/5 安装 Python 依赖（requirements.txt）"
	$(PIP_LOUD) install -r requirements.txt
	$(STEP) "    安装惠企本身（开发模式）"
	# compat mode puts the project root on sys.path, so packages added later import without reinstalling.
	$(PIP) install --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(STEP) "安装测试与检查工具（requirements-dev.txt）"
	$(PIP_LOUD) install -r requirements-dev.txt
	touch $@

# Front-end packages (htmx, ECharts, Pico CSS, Swagger UI) exactly as package-lock.json pins them; the web UI
# serves them from node_modules under /static/vendor (no CDN, nothing third-party committed). No install
# scripts: none of them needs one, and one of Swagger UI's dependencies (@scarf/scarf) would report usage.
$(NPM_STAMP): package.json package-lock.json
	$(STEP) "4/5 安装前端依赖（npm ci：htmx、ECharts、Pico CSS、Swagger UI）"
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; no browser is downloaded) and a
# CJK font, so pages and screenshots show Chinese rather than empty boxes. Needs root (apt-get).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && $(APT_INSTALL) chromium)
	@fc-list :lang=zh family 2>/dev/null | grep -q . || (apt-get update && $(APT_INSTALL) fonts-noto-cjk)

# Debian's wrk, the load generator of `bench.serving` (C, one thread: the bench's Python client would take
# a core of the two from the server). The bench falls back to its Python client without it. Needs root (apt-get).
wrk:
	@command -v wrk >/dev/null 2>&1 || (apt-get update && $(APT_INSTALL) wrk)

install: $(STAMP) $(NPM_STAMP)

install-dev: $(DEV_STAMP)

migrate: install
	$(STEP) "5/5 升级数据库结构并载入演示数据"
	$(BIN)/huiqi migrate

demo: migrate
	$(BIN)/huiqi demo --if-empty

# Matching catches up in the background once the server runs (see matcher/jobs.py).
run: demo
	$(BIN)/huiqi run

test: install-dev $(NPM_STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev wrk
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
