# The commands the README names. Each creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FT_HOME ?= $(CURDIR)/.ft_home
RECIPE ?= recipes/tweet_sentiment.yaml
UI_PORT ?= 3000
PYTEST_ARGS ?=

export FT_HOME
export FT_RECIPE := $(abspath $(RECIPE))
export DAGSTER_HOME := $(FT_HOME)/dagster
export HF_HUB_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: install run test ui lint format status clean

$(STAMP): pyproject.toml requirements-bundled.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel, not a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps -r requirements-bundled.txt
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ft-pipeline run

status: $(STAMP)
	$(BIN)/ft-pipeline status

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(FT_HOME)
