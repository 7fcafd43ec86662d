# The project's tasks. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.DEFAULT_GOAL := help
.PHONY: help run prod test lint format bench install install-dev rolling-restart

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime  ## Create .venv and install the runtime requirements

# tsc, pinned in package.json / package-lock.json, for the check of static/sessions/client.d.ts
# (tests/js/types.test.mjs). Only when npm is there: without it the node tests pass the check over.
node_modules/.installed: package.json package-lock.json
	if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $@; fi

install-dev: $(VENV)/.dev node_modules/.installed  ## Also install the test, lint and benchmark tools (and tsc, with npm)

run: $(VENV)/.runtime  ## Migrate, create the demo users on first run, serve daphne on $(HOST):$(PORT)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_users --url http://$(HOST):$(PORT)/
	$(PY) -m daphne -b $(HOST) -p $(PORT) project.asgi:application

prod: $(VENV)/.runtime  ## The production layout: nginx in front of $$PROCESSES daphnes (docs/deployment.md)
	$(PY) scripts/prod.py

# The server processes recorded in RUN_DIR (<name>.pid and <name>.json, scripts/rolling_restart.py),
# or `make prod`'s run directory (run/ by default), whose script then restarts its own daphnes.
RUN_DIR ?= run

rolling-restart:  ## Restart the processes of $(RUN_DIR) (make prod's, by default) one at a time: each drains, the next waits for /healthz
	$(PY) scripts/rolling_restart.py restart --run-dir $(RUN_DIR)

test: $(VENV)/.dev node_modules/.installed  ## Every test: lint, pytest (SQLite, PostgreSQL, Redis, Chromium), node (with tsc), conformance
	PYTHON=$(abspath $(PY)) scripts/test.sh

lint: $(VENV)/.dev  ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev  ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.dev  ## The benchmark against peers (bench/README.md); ARGS=--quick for a short run
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/run.py $(ARGS)
