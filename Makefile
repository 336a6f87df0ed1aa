# The command surface: README, Jenkinsfile and .ci/run call these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Metaflow refuses to run without a user name (and rejects "root").
export USERNAME ?= fraud-dev
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export LAKEHOUSE_URI ?= $(CURDIR)/.lakehouse
export METAFLOW_DATASTORE_SYSROOT_LOCAL ?= $(CURDIR)
export DUCKDB_PATH ?= $(CURDIR)/.warehouse/fraud.duckdb
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-fast lint format serve ui materialize simulate clean help bench bench-quick

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned (2.13.0, CPU): see STACK_NOTES; constraints.txt pins the rest.
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project (once; again when deps change)

demo: $(STAMP)  ## simulate claims, materialize the whole graph, print a summary
	$(BIN)/fraud demo

test: $(STAMP)  ## the whole test suite (unit, integration, end-to-end)
	$(BIN)/pytest --junitxml=reports/junit.xml

test-fast: $(STAMP)  ## unit tests only (no slow or integration tests)
	$(BIN)/pytest -m "not slow and not integration"

lint: $(STAMP)  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

serve: $(STAMP)  ## FastAPI scoring service on 127.0.0.1:8080 with the champion
	$(BIN)/fraud serve --host 127.0.0.1 --port 8080

ui: $(STAMP)  ## Dagster UI (dagster dev) on 127.0.0.1:3000
	$(BIN)/python -c "from fraud_cli.orchestrate import ensure_dagster_home as e; e('$(DAGSTER_HOME)')"
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

materialize: $(STAMP)  ## ingest new landing files, train, score, report (in-process)
	$(BIN)/fraud materialize

simulate: $(STAMP)  ## write simulated claims files into the landing zone
	$(BIN)/fraud simulate --out $(LAKEHOUSE_URI)/landing --format mixed --bad-fraction 0.003

bench: $(STAMP)  ## every benchmark at full size (tens of minutes): bench/RESULTS.md
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)  ## every benchmark at small size (a few minutes): bench/RESULTS-quick.md
	$(BIN)/python -m bench.run --quick

clean:  ## remove generated data (lakehouse, warehouse, Metaflow and Dagster state)
	rm -rf .lakehouse .warehouse .metaflow .dagster_home reports
