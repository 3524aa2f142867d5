# The commands the README names. Each creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV := $(BIN)/uv
# Into this venv, compiled at install (as pip does), so no process compiles them again.
UV_FLAGS := --python $(BIN)/python --compile-bytecode
FT_HOME ?= $(CURDIR)/.ft_home
RECIPE ?= recipes/tweet_sentiment.yaml
# Every server binds to loopback; BIND_HOST=0.0.0.0 exposes them (behind your own auth/proxy).
BIND_HOST ?= 127.0.0.1
UI_PORT ?= 3000
MLFLOW_PORT ?= 5000
SERVE_PORT ?= 5001
MODEL_NAME ?= $(shell test -x $(BIN)/python && $(BIN)/python -c "from ft_pipeline.recipe import load_recipe; print(load_recipe('$(RECIPE)').model_name)" 2>/dev/null)
PYTEST_ARGS ?=
# make test runs the suite on this many pytest-xdist workers (the live tests, which each start
# `dagster dev`, share one of them). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
# Dagster instance settings copied into DAGSTER_HOME: dagster.yaml (SQLite under the state
# folder) or dagster.postgres.yaml (PostgreSQL; docs/scaling-out.md).
FT_DAGSTER_CONFIG ?= dagster.yaml

export FT_HOME
export FT_DAGSTER_CONFIG := $(abspath $(FT_DAGSTER_CONFIG))
export FT_RECIPE := $(abspath $(RECIPE))
export DAGSTER_HOME := $(FT_HOME)/dagster
export HF_HUB_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false

CHROMIUM ?= /usr/bin/chromium

.PHONY: install browser-deps postgres-deps run experiment test ui mlflow-ui mlflow-server serve predict rollback bench bench-quality docs lint format status clean

$(STAMP): pyproject.toml requirements-bundled.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned, by pip, which finds the CPU wheel in pip's configured find-links
	# (uv does not read pip's config); then uv installs the rest, about 3x faster than pip,
	# keeping the installed torch (it satisfies the project's torch==2.13.0).
	$(BIN)/python -m pip install -q torch==2.13.0 uv==0.13.9
	$(UV) pip install -q $(UV_FLAGS) -e '.[dev]'
	$(UV) pip install -q $(UV_FLAGS) --no-deps -r requirements-bundled.txt
	@touch $@

install: $(STAMP)

# The browser test drives Debian's chromium (Playwright's own browser download is not used).
browser-deps:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser test (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi; \
	  { $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$sudo apt-get install -y -qq chromium > /dev/null; } \
	  || echo "could not install chromium; skip the browser test: make test PYTEST_ARGS='-m \"not browser\"'"; }

# The PostgreSQL test runs Debian's PostgreSQL server (initdb, pg_ctl) on a loopback port.
postgres-deps:
	@command -v pg_ctl > /dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl > /dev/null 2>&1 || { \
	  echo "installing Debian's postgresql for the PostgreSQL test (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi; \
	  { $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$sudo apt-get install -y -qq postgresql > /dev/null; } \
	  || echo "could not install postgresql; skip its test: make test PYTEST_ARGS='-m \"not postgres\"'"; }

run: $(STAMP)
	$(BIN)/ft-pipeline run

# The shipped experiment (docs/experiments.md): its variants trained one at a time on the
# bundled corpus, compared on the same test rows, the winner deployed if it passes its gate.
# See it in the UI with `make ui RECIPE=$(EXPERIMENT)`.
EXPERIMENT ?= recipes/tweet_sentiment_experiment.yaml
experiment: $(STAMP)
	$(BIN)/ft-pipeline --recipe $(EXPERIMENT) experiment

status: $(STAMP)
	$(BIN)/ft-pipeline status

test: $(STAMP) browser-deps postgres-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Dagster (webserver + daemon) on UI_PORT and the MLflow UI on MLFLOW_PORT; Ctrl-C stops both.
# With FT_MLFLOW_TRACKING_URI set (`make mlflow-server` running), no MLflow UI is started:
# the tracking server is the UI.
ui: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && cp $(FT_DAGSTER_CONFIG) $(DAGSTER_HOME)/dagster.yaml
	@if [ -n "$$FT_MLFLOW_TRACKING_URI" ]; then \
	  echo "Dagster UI: http://$(BIND_HOST):$(UI_PORT)   MLflow: $$FT_MLFLOW_TRACKING_URI"; \
	else \
	  echo "Dagster UI: http://$(BIND_HOST):$(UI_PORT)   MLflow UI: http://$(BIND_HOST):$(MLFLOW_PORT)"; \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mlflow ui --backend-store-uri sqlite:///$(FT_HOME)/mlflow.db \
		--default-artifact-root $(FT_HOME)/mlartifacts -h $(BIND_HOST) -p $(MLFLOW_PORT) \
		> $(FT_HOME)/mlflow-ui.log 2>&1 & \
	fi; \
	mlflow_pid=$$!; trap "test -n \"$$mlflow_pid\" && kill $$mlflow_pid 2>/dev/null" EXIT INT TERM; \
	$(BIN)/dagster dev -w workspace.yaml -h $(BIND_HOST) -p $(UI_PORT)

mlflow-ui: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mlflow ui --backend-store-uri sqlite:///$(FT_HOME)/mlflow.db \
		--default-artifact-root $(FT_HOME)/mlartifacts -h $(BIND_HOST) -p $(MLFLOW_PORT)

# MLflow tracking server with its store in PostgreSQL (database FT_MLFLOW_PG_DB, `mlflow` by
# default) on the server of DAGSTER_PG_HOST/PORT/USER/PASSWORD; the password reaches libpq
# from the environment only. Point the pipeline at it: FT_MLFLOW_TRACKING_URI=http://$(BIND_HOST):$(MLFLOW_PORT)
mlflow-server: $(STAMP)
	$(BIN)/ft-pipeline mlflow-server --host $(BIND_HOST) --port $(MLFLOW_PORT)

# Serve the champion over HTTP: POST http://$(BIND_HOST):$(SERVE_PORT)/invocations
# The registry is FT_MLFLOW_TRACKING_URI's when set (`make mlflow-server`), else the SQLite store.
serve: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="$${FT_MLFLOW_TRACKING_URI:-sqlite:///$(FT_HOME)/mlflow.db}" \
		$(BIN)/mlflow models serve -m "models:/$(MODEL_NAME)@champion" --env-manager local \
		-h $(BIND_HOST) -p $(SERVE_PORT)

predict: $(STAMP)
	$(BIN)/ft-pipeline predict "$(TEXT)"

rollback: $(STAMP)
	$(BIN)/ft-pipeline rollback

# Benchmarks: by hand, never in the test suite. Each prints one JSON line of figures measured
# in the same run (ratios against a baseline) and appends it to bench/results/. About 25
# minutes on 2 idle cores; run nothing else meanwhile (two torch processes on 2 cores slow
# each other down 10-20x). BENCH_ARGS=--quick for a smoke run.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/train_throughput.py $(BENCH_ARGS)
	$(BIN)/python bench/eval_throughput.py $(BENCH_ARGS)
	$(BIN)/python bench/incremental.py $(BENCH_ARGS)
	$(BIN)/python bench/end_to_end.py $(BENCH_ARGS)
	$(BIN)/python bench/distributed.py $(BENCH_ARGS)

# Quality against cost: model/head contenders by training rows, and the recipe sweep that
# set the default recipe (about 25 and 20 minutes).
bench-quality: $(STAMP)
	$(BIN)/python bench/quality_vs_cost.py
	$(BIN)/python bench/recipe_sweep.py

# The recipe reference, generated from the pydantic recipe model; a test fails when the
# committed file differs from what this writes.
docs: $(STAMP)
	$(BIN)/ft-pipeline recipe-reference --out docs/recipe-reference.md

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(FT_HOME)
