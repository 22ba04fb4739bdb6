# gridscope developer entry points. `make serve` and `make test` are the two that matter;
# everything else is optional. All targets work from a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium
# Per-test wall-clock limit (pytest-timeout); the whole suite must stay well under 15 min.
TEST_TIMEOUT ?= 180
PYTEST_ARGS ?=
ARGS ?=

export GRIDSCOPE_CHROMIUM := $(CHROMIUM)

.PHONY: help venv serve test browser bench loadtest lint clean distclean

help:
	@echo "make serve     run the dashboard on http://localhost:5006 (bundled catalog, LocalCluster); ARGS='...' is passed to 'gridscope serve'"
	@echo "make test      create/refresh .venv, install Chromium if missing, run the test suite"
	@echo "make venv      create .venv and pip install -e '.[test]' (again only when pyproject.toml changes)"
	@echo "make browser   install Debian's chromium (root) or say how to"
	@echo "make bench     opt-in benchmarks (tests/bench/run.py)"
	@echo "make loadtest  headless load benchmark: 100 Bokeh-protocol sessions x 3 min + HTTP API (tests/load/headless.py);"
	@echo "               ARGS='--sessions 10 --seconds 20' for a short run, ARGS=--browsers for the 20-Chromium run"
	@echo "make lint      ruff check, ruff format --check, mypy on pipelines/ and data_catalog/"
	@echo "make clean     remove caches and build outputs (keeps .venv); 'make distclean' also removes .venv"

venv: $(STAMP)

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: '$(PYTHON)' not found; gridscope needs Python >= 3.11 (make PYTHON=/path/to/python3.11 ...)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { \
	  echo "error: gridscope needs Python >= 3.11, but $(PYTHON) is $$($(PYTHON) -c 'import platform; print(platform.python_version())'); run e.g. make PYTHON=python3.11 $(MAKECMDGOALS)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[test]'
	@touch $(STAMP)

serve: venv
	$(VENV)/bin/gridscope serve $(ARGS)

test: venv browser
	$(PY) -m pytest -q -p no:cacheprovider --timeout=$(TEST_TIMEOUT) --durations=30 $(PYTEST_ARGS)

browser:
	@if [ -x "$(CHROMIUM)" ]; then \
	  echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium with apt-get"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
	  echo "Chromium not found at $(CHROMIUM); browser tests will be skipped." >&2; \
	  echo "Install it with:  sudo apt-get update && sudo apt-get install -y chromium" >&2; \
	  echo "or point at another build:  make test CHROMIUM=/path/to/chromium" >&2; \
	fi

bench: venv
	$(PY) -m tests.bench.run $(ARGS)

loadtest: venv
	$(PY) -m tests.load.run $(ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean:
	rm -rf build dist .pytest_cache .ruff_cache .mypy_cache .hypothesis test-artifacts bench-results *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
