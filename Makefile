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
# CI/CD (scripts/deploy_model.py: fraud_cli.deploy): where the pulled champion goes, and where
# it is deployed.
export MODEL_DIR ?= $(CURDIR)/build/model
export DEPLOY_TARGET ?= fastapi

.PHONY: install demo test test-fast lint format serve ui materialize simulate clean help bench-serve bench bench-quick replicate \
	pull-model deploy smoke notify deploy-training lint-jenkinsfile

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned (2.13.0, CPU: other pins pull a multi-GB CUDA build); constraints.txt pins the rest.
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project (once; again when deps change)

demo: $(STAMP)  ## simulate claims, materialize the whole graph, print a summary
	$(BIN)/fraud demo

# On every core (at most 4), module by module; the container modules once the image (built by the
# controlling process meanwhile) is ready (tests/support/scheduling.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: $(STAMP)  ## the whole test suite (unit, integration, end-to-end)
	$(BIN)/pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadscope --junitxml=reports/junit.xml --durations=15

test-fast: $(STAMP)  ## unit tests only (no slow or integration tests)
	$(BIN)/pytest -m "not slow and not integration"

lint: $(STAMP)  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Without FRAUD_API_KEYS, `make serve` is the local demo: it opts out of API keys explicitly
# (the service refuses to start without keys otherwise, and always with FRAUD_ENV=prod).
serve: $(STAMP)  ## FastAPI scoring service on 127.0.0.1:8080 with the champion
	$(if $(FRAUD_API_KEYS),,FRAUD_API_AUTH_DISABLED=true) $(BIN)/fraud serve --host 127.0.0.1 --port 8080

ui: $(STAMP)  ## Dagster UI (dagster dev) on 127.0.0.1:3000
	$(BIN)/python -c "from fraud_cli.orchestrate import ensure_dagster_home as e; e('$(DAGSTER_HOME)')"
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# scripts/materialize.py (fraud_cli.materialize): with DAGSTER_URL, launches MATERIALIZE_SELECTION
# on that Dagster and follows the runs; without it, in-process (no selection: `fraud materialize`,
# the whole cycle).
materialize: $(STAMP)  ## ingest new files, train, score, report (or MATERIALIZE_SELECTION on DAGSTER_URL)
	$(BIN)/python scripts/materialize.py

pull-model: $(STAMP)  ## download + verify the champion bundle of LAKEHOUSE_URI into MODEL_DIR
	$(BIN)/python scripts/deploy_model.py pull

deploy: $(STAMP)  ## deploy the pulled champion to DEPLOY_TARGET (fastapi | sagemaker | k8s)
	$(BIN)/python scripts/deploy_model.py deploy

smoke: $(STAMP)  ## smoke-test the deployed API (DEPLOY_TARGET) with the pulled champion
	$(BIN)/python scripts/deploy_model.py smoke

# No install step: a build that failed in Setup is still reported (notify.py needs only the
# standard library; it reads the champion's metrics when the project is installed).
notify:  ## Slack + e-mail with the build's context (NOTIFY_STATUS); never fails
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) scripts/notify.py

deploy-training: $(STAMP)  ## create/update FraudTrainingFlow's Step Functions state machine
	$(BIN)/fraud deploy-training

# npm-groovy-lint (package.json, Node >= 20 and Java >= 17): installed into node_modules on first use.
lint-jenkinsfile:  ## lint the Jenkinsfile with npm-groovy-lint (CodeNarc)
	@test -x node_modules/.bin/npm-groovy-lint || npm ci --no-audit --no-fund
	node_modules/.bin/npm-groovy-lint --noserver --failon warning Jenkinsfile

simulate: $(STAMP)  ## write simulated claims files into the landing zone
	$(BIN)/fraud simulate --out $(LAKEHOUSE_URI)/landing --format mixed --bad-fraction 0.003

bench: $(STAMP)  ## every benchmark at full size (tens of minutes): bench/RESULTS.md
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)  ## every benchmark at small size (a few minutes): bench/RESULTS-quick.md
	$(BIN)/python -m bench.run --quick

clean:  ## remove generated data (lakehouse, warehouse, Metaflow and Dagster state)
	rm -rf .lakehouse .warehouse .metaflow .dagster_home reports build

replicate: $(STAMP)  ## upsert model_metrics into the BI warehouse only (FRAUD_WAREHOUSE=snowflake)
	$(BIN)/python -c "from fraud_cli.orchestrate import ensure_dagster_home as e; e('$(DAGSTER_HOME)')"
	$(BIN)/dagster asset materialize -m fraud_assets.definitions --select snowflake_metrics_replica

bench-serve: $(STAMP)  ## scoring API under load (wrk, pinned cores; QUICK=1): bench/results/serve.json
	@mkdir -p bench/results
	$(BIN)/python bench/serve.py $(if $(QUICK),--quick) --out bench/results/serve$(if $(QUICK),-quick).json
