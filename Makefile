# The two front-door commands: `make run` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
PEERS := bench/peers
STAMP_PEERS := $(PEERS)/node_modules/.package-lock.json
NPM := $(shell command -v npm 2>/dev/null)

.PHONY: run test test-browser chromium lint typecheck check bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

# The append benchmark's npm peers (Message DB, Emmett); bench.appends skips them without npm.
$(STAMP_PEERS): $(PEERS)/package-lock.json
	cd $(PEERS) && npm ci --no-audit --no-fund

bench-peers: $(STAMP_PEERS)

run: $(STAMP_RUN)
	$(BIN)/continuity run

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

test: $(STAMP_DEV) lint
	$(BIN)/python -m pytest --ignore=tests/browser

# Debian's Chromium, which the console's browser tests drive with Playwright (Playwright's own
# browser download needs the open internet; Debian's package comes from the registry).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium fonts-liberation >/dev/null; \
	  else echo "install Chromium first: sudo apt-get install chromium fonts-liberation" >&2; \
	    exit 1; fi; }

# The console in headless Chromium: CI's second stage, after `make test`.
test-browser: $(STAMP_DEV) chromium
	$(BIN)/python -m pytest tests/browser

bench: $(STAMP_DEV) $(if $(NPM),$(STAMP_PEERS))
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache $(PEERS)/node_modules
