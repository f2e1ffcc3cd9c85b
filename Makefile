# Set-up and everyday commands; `make` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PIPENV_VERSION := 2026.10.3
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1

.PHONY: help install run train test test-fast bench notebooks audit clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/gunicorn: Pipfile Pipfile.lock
	python3 -m pip install --quiet "pipenv==$(PIPENV_VERSION)"
	python3 -m pipenv install --dev --deploy   # --deploy: refuse a Pipfile.lock that is out of date
	@touch $@

install: $(BIN)/gunicorn ## install the locked dependencies into .venv (pipenv)

run: install ## serve model.bin on port 9696 (MODEL_PATH, PORT, WEB_CONCURRENCY to change)
	$(BIN)/gunicorn predict:app

train: install ## retrain model.bin from data/telco_churn.csv (ARGS="--data x.csv --target y")
	$(BIN)/python train.py $(ARGS)

test: install ## run the whole test suite (what CI runs)
	$(BIN)/python -m pytest -q

test-fast: install ## the suite without the slow, Docker and browser tests (about a minute)
	$(BIN)/python -m pytest -q -m "not slow and not docker and not browser"

bench: install ## benchmark against reference apps with wrk (~2.5 min; ARGS=--alternatives adds BentoML, MLflow, MLServer, --ablation each speed mechanism off); appends to bench/RESULTS.md
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/run.py $(ARGS)

notebooks: install ## re-execute the notebooks and save their outputs
	$(BIN)/python notebooks/execute.py --save

audit: install ## look up known vulnerabilities of the installed packages (pip-audit; needs PyPI's JSON API)
	$(BIN)/pip-audit --progress-spinner off

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
