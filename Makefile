# The two commands: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: install bytecode system-deps dbt-manifest demo test dev bench lock clean

# uv writes no bytecode unless asked, and where PYTHONDONTWRITEBYTECODE is set Python never
# caches it either: every process (each Dagster run, CLI command, dbt invocation) would then
# compile the stack from source, 14 s instead of 7 s to load the definitions here. So the
# dependencies are compiled at install and the project's own modules before each command.
$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade >/dev/null
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	@echo "installing the project and its pinned dependencies into $(VENV) (and compiling their bytecode) ..."
	@$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[dev,postgres,celery]'
	@touch $(STAMP)

install: $(STAMP) bytecode

# Only modules changed since their last compile are compiled again.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 aios_pipelines benchmarks >/dev/null

# The dbt project's manifest, which the dagster-dbt assets are built from: runs `dbt parse`
# (the project has no package dependencies, so nothing is downloaded).
dbt-manifest: $(STAMP)
	$(BIN)/dagster-dbt project prepare-and-package --file aios_pipelines/defs/analytics/dbt_project.py

# `make demo DRIFT_FROM=2026-08-01` injects an income shift from that day, runs monitoring, and
# retrains once the drifted days' outcomes have matured (the demo's clock runs on until then).
demo: $(STAMP) bytecode dbt-manifest
	$(BIN)/aios demo $(if $(DRIFT_FROM),--drift-from $(DRIFT_FROM))

# Browser tests drive Debian's Chromium; a test tool's own browser download does not work offline.
# The PostgreSQL tests start a throwaway server (tests/conftest.py) from Debian's PostgreSQL
# binaries (/usr/lib/postgresql/<major>/bin, off PATH); the Celery test a throwaway Redis broker
# (Debian's redis-server). One apt-get update for whatever is missing.
system-deps:
	@missing=""; \
	if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then missing="$$missing chromium chromium-driver"; fi; \
	if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  missing="$$missing postgresql"; \
	fi; \
	if ! command -v redis-server >/dev/null 2>&1; then missing="$$missing redis-server"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's$$missing for the browser, PostgreSQL and Celery tests ..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "the tests need Debian's$$missing: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

# Two pytest workers, one per core (TEST_WORKERS=0 runs in one process); each test module
# stays on one worker, so its fixtures (a built dbt project, a PostgreSQL server) are made once.
TEST_WORKERS ?= 2
test: $(STAMP) bytecode system-deps dbt-manifest
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

dev: $(STAMP) bytecode dbt-manifest
	$(BIN)/aios dev

bench: $(STAMP) bytecode
	$(BIN)/python benchmarks/run.py

# Refresh constraints.txt from what is installed (after changing pyproject.toml).
lock: $(STAMP)
	$(BIN)/uv pip freeze --python $(BIN)/python --exclude-editable | grep -v '^aios' > constraints.txt

clean:
	rm -rf $(VENV) .aios_home
