# flagdash — everyday commands. `make help` lists them.
#
# Only Python 3.11 is needed: the first target that needs it creates .venv and installs the
# pinned lock (requirements/base.txt to run, requirements/dev.txt to test). A stamp file in
# .venv records which lock was installed, so later runs skip pip until the lock changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PORT ?= 8000
HOST ?= 127.0.0.1
RUN_URL := http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(PORT)
PYTEST_ARGS ?=
LOCK_ARGS ?=
PIP_COMPILE_FLAGS := --allow-unsafe --no-emit-find-links --no-emit-index-url --strip-extras

.PHONY: help run test lint bench bench-toggle bench-ofrep bench-cloud bench-scan lock clean distclean venv deps deps-dev chromium static migrate seed

help:  ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# --- virtualenv ---------------------------------------------------------------------------------

$(PY):
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found (looked for python3.11 and python3)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' \
		|| { echo "$(PYTHON) is not Python 3.11 or 3.12" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# A stamp per lock file: make reinstalls only when the lock is newer than the stamp.
$(VENV)/.installed-base: requirements/base.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements/base.txt
	@touch $@

# dev.txt pins every package of base.txt at the same version, so it satisfies both stamps.
$(VENV)/.installed-dev: requirements/dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements/dev.txt
	@touch $@ $(VENV)/.installed-base

venv: $(PY)
deps: $(VENV)/.installed-base  ## Create .venv and install the runtime lock
deps-dev: $(VENV)/.installed-dev  ## Create .venv and install the development lock

# --- run ----------------------------------------------------------------------------------------

migrate: deps
	$(PY) manage.py migrate --noinput

static: deps
	$(PY) manage.py collectstatic --noinput --verbosity 0

seed: migrate
	$(PY) manage.py seed_demo

run: deps migrate static seed  ## Migrate, load demo data, start web + worker + beat (Ctrl-C stops all)
	@echo
	@echo "================================================================================"
	@echo "  flagdash:  $(RUN_URL)/"
	@echo "  Demo logins (admin, editor, viewer), the demo OFREP API key and a curl line"
	@echo "  that evaluates allow-bitcoin-at-checkout in beta are printed above by seed_demo."
	@echo "  Starting web, worker and beat; Ctrl-C stops all of them."
	@echo "================================================================================"
	@echo
	exec env PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT) --procfile Procfile

# --- checks -------------------------------------------------------------------------------------

# Browser tests drive Debian's Chromium (Playwright cannot download browsers here).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; \
		elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
		else echo "/usr/bin/chromium is missing and neither root nor sudo is available:" \
			"install the 'chromium' package" >&2; exit 1; fi; \
		echo "Installing Chromium from Debian's packages"; \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

test: deps-dev chromium  ## ruff, mypy, then the whole pytest suite (PYTEST_ARGS=...)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy flagdash benchmarks
	$(BIN)/pytest $(PYTEST_ARGS)

lint: deps-dev  ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy flagdash benchmarks

bench: deps  ## Flag list and audit export benchmarks on PostgreSQL (database flagdash_bench)
	$(PY) benchmarks/run.py

bench-toggle: deps-dev chromium  ## Click a toggle in Chromium → rollout complete, median of 20 (PostgreSQL + Redis)
	$(PY) benchmarks/toggle_to_complete.py --runs 20

bench-ofrep: deps  ## OFREP single/bulk req/s, p50/p99 with gunicorn at 1 and 2 workers; in-memory cost
	$(PY) benchmarks/ofrep.py

bench-cloud: deps-dev  ## AWS calls of one Linear20PercentEvery6Minutes rollout; Azure stepping lag (2 min)
	CI=true $(BIN)/pytest -q -s -p no:cacheprovider tests/backends/test_aws_appconfig_calls.py
	CI=true FLAGDASH_MEASURE_AZURE_LAG=1 $(BIN)/pytest -q -s -p no:cacheprovider \
		tests/backends/azure/test_azure_appconfig_worker.py -k production

bench-scan: deps  ## manage.py scan_code_refs on a generated tree of 50,000 files (walk and git)
	$(PY) benchmarks/scan_code_refs.py --git

lock: deps-dev  ## Recompile requirements/*.txt from pyproject.toml (LOCK_ARGS=--upgrade to bump)
	$(BIN)/pip-compile $(PIP_COMPILE_FLAGS) $(LOCK_ARGS) --output-file=requirements/base.txt pyproject.toml
	$(BIN)/pip-compile $(PIP_COMPILE_FLAGS) $(LOCK_ARGS) --extra=dev --output-file=requirements/dev.txt pyproject.toml

clean:  ## Remove caches, build output and collected static files (keeps .venv and var/ data)
	rm -rf .pytest_cache .ruff_cache .mypy_cache test-results build dist *.egg-info var/static
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean  ## Also remove .venv and var/ (the local SQLite database and secret key)
	rm -rf $(VENV) var
