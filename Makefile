# SP-E — `make run` starts the stack, `make test` runs the whole suite. Nothing else to install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Web UI: frontend/ builds into the folder the gateway serves (services/gateway/static.py).
UI_OUT := services/gateway/static
UI_INDEX := $(UI_OUT)/index.html
UI_DEPS := frontend/node_modules/.installed
UI_SRC := $(shell find frontend/src frontend/public -type f 2>/dev/null) frontend/index.html \
	frontend/vite.config.ts frontend/tsconfig.json frontend/package.json frontend/package-lock.json
CHROMIUM := /usr/bin/chromium
PROMTOOL := /usr/bin/promtool
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install ui ui-test chromium promtool lint bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "SP-E needs Python 3.11 or newer (set PYTHON=...)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# npm ci: exactly package-lock.json, again only when the lock (or package.json) changed.
$(UI_DEPS): frontend/package.json frontend/package-lock.json
# Vite's own range: ^20.19 or >= 22.12.
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: SP-E's web UI needs Node.js 20.19+ or 22.12+ with npm"; exit 1; }
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit((a === 20 && b >= 19) || a > 22 || (a === 22 && b >= 12) ? 0 : 1)' || \
		{ echo "SP-E's web UI needs Node.js 20.19+ or 22.12+ (what Vite supports); found $$(node --version)"; exit 1; }
	cd frontend && npm ci --no-audit --no-fund
	touch $(UI_DEPS)

# Rebuilt only when a frontend source is newer than the last build.
$(UI_INDEX): $(UI_DEPS) $(UI_SRC)
	cd frontend && npm run build
	touch $(UI_INDEX)

ui: $(UI_INDEX)

ui-test: $(UI_DEPS)
	cd frontend && npm run test -- --run

# The browser tests drive Debian's Chromium; installed only when missing (root on CI).
chromium:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium; }

# promtool (Debian's prometheus package) checks the Prometheus config, the alert rules and their
# unit tests, and every service's /metrics output; installed only when missing.
promtool:
	@test -x $(PROMTOOL) || { echo "installing Debian's prometheus package for promtool"; \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends prometheus; }

run: install ui
	$(PY) scripts/run.py

test: install ui ui-test chromium promtool
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check services tests bench scripts
	$(PY) -m mypy services

bench: install ui chromium
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf .data
