# Set-up and everyday commands; `make` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .venv-tools
PIPENV := $(TOOLS)/bin/pipenv
PIPENV_VERSION := 2026.10.3
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1

.PHONY: help install install-runtime system-tools run train score monitor test test-fast test-unit bench bench-lambda bench-score bench-spark bench-load notebooks audit uv-lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# pipenv gets a virtualenv of its own, so a system Python that refuses pip installs (Debian's
# and Ubuntu's, PEP 668) works too; stock Debian may lack python3-venv, so virtualenv (which
# brings its own pip) is the fallback.
$(PIPENV):
	@echo "Installing pipenv into $(TOOLS)/"
	@rm -rf $(TOOLS) && python3 -m venv $(TOOLS) 2>/dev/null || { rm -rf $(TOOLS) \
	    && python3 -m pip install --quiet --target $(TOOLS).seed virtualenv \
	    && PYTHONPATH=$(TOOLS).seed python3 -m virtualenv --quiet $(TOOLS) && rm -rf $(TOOLS).seed; }
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "pipenv==$(PIPENV_VERSION)"

# The runtime packages (what serving needs, as in the image) and the tools beside serving
# (Pipfile's [tools]: the training report's plots, score.py's and monitor.py's Arrow), so
# every command the README shows works after `make run`; the dev tools come on top for the
# tests. pipenv checks the lock, pip installs it with its hashes and shows its progress.
$(VENV)/.runtime: Pipfile Pipfile.lock | $(PIPENV)
	$(PIPENV) verify   # refuse a Pipfile.lock that no longer matches the Pipfile
	@[ -x $(BIN)/python ] || $(PIPENV) --python "$$(python3 -c 'import sys; print(sys.executable)')"
	$(PIPENV) requirements --hash --categories "packages tools" > $(VENV)/requirements.txt
	$(BIN)/pip install --disable-pip-version-check --require-hashes -r $(VENV)/requirements.txt
	@touch $@

# the dev tools, the Lambda adapter and runtime client (Pipfile's [lambda]) for its tests, and
# onnxruntime and onnx (Pipfile's [onnx]) for the imported ONNX graphs' tests
$(VENV)/.dev: $(VENV)/.runtime
	$(PIPENV) requirements --hash --categories "packages tools dev-packages lambda onnx" \
	    > $(VENV)/requirements-dev.txt
	$(BIN)/pip install --disable-pip-version-check --require-hashes -r $(VENV)/requirements-dev.txt
	@touch $@

# uv beside pipenv, for those who use it (docs/uv.md): pyproject.toml and uv.lock pin what
# Pipfile.lock pins; the tests check both and run docs/uv.md's commands
$(UV): | $(PIPENV)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

uv-lock: $(UV) ## after `pipenv lock`: write pyproject.toml's pins from Pipfile.lock, and uv.lock from them
	python3 scripts/uv_pins.py
	$(UV) lock

# KServe's SDK in a virtualenv of its own (its Pipfile says why), for the v2 client tests
KSERVE_VENV := .venv-kserve
KSERVE_PIPFILE := tests/clients/kserve/Pipfile
$(KSERVE_VENV)/.installed: $(KSERVE_PIPFILE) $(KSERVE_PIPFILE).lock | $(PIPENV)
	PIPENV_PIPFILE=$(KSERVE_PIPFILE) $(PIPENV) verify
	@[ -x $(KSERVE_VENV)/bin/python ] || $(TOOLS)/bin/python -m virtualenv --quiet \
	    --python "$$(python3 -c 'import sys; print(sys.executable)')" $(KSERVE_VENV)
	PIPENV_PIPFILE=$(KSERVE_PIPFILE) $(PIPENV) requirements --hash > $(KSERVE_VENV)/requirements.txt
	$(KSERVE_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes \
	    -r $(KSERVE_VENV)/requirements.txt
	@touch $@

install-runtime: $(VENV)/.runtime ## install the locked runtime packages and the tools beside serving into .venv (what the README's commands need)

install: $(VENV)/.dev $(KSERVE_VENV)/.installed $(UV) ## install the locked runtime and dev packages into .venv (and KServe's SDK into .venv-kserve, for its tests)

run: install-runtime ## serve model.bin on port 9696 (MODEL_PATH, PORT, WEB_CONCURRENCY to change)
	$(BIN)/gunicorn predict:app

train: install-runtime ## retrain model.bin from data/telco_churn.csv (ARGS="--data x.csv --target y")
	$(BIN)/python train.py $(ARGS)

score: install-runtime ## score a file with model.bin (ARGS="--input customers.csv --output scores.csv"; docs/batch.md)
	$(BIN)/python score.py $(ARGS)

monitor: install-runtime ## drift of a file against model.bin's training data (ARGS="--data new.csv --report drift-report/"; docs/monitoring.md)
	$(BIN)/python monitor.py $(ARGS)

# the system tools some tests need (nginx, chromium, wrk, Prometheus, R's modeldata...),
# installed where missing when run as root; elsewhere those tests skip with the line to run
system-tools:
	@bash .ci/system-packages

test: install system-tools ## run the whole test suite (what CI runs), with the system tools it needs
	$(BIN)/python -m pytest -q

test-fast: install ## the suite without the slow, Docker and browser tests (real gunicorn, Spark, kubectl, promtool included)
	$(BIN)/python -m pytest -q -m "not slow and not docker and not browser"

test-unit: install ## the tests that start no server and no process (starting one fails the test; fuzzing with 50 examples, not 300)
	TABSERVE_FUZZ_EXAMPLES=50 $(BIN)/python -m pytest -q -m unit

bench: install ## benchmark against reference apps with wrk, and the Open Inference Protocol over HTTP and gRPC (~4.5 min; ARGS=--alternatives adds BentoML, MLflow, MLServer, --ablation each speed mechanism off, --api-keys keys on); appends to bench/RESULTS.md
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/run.py $(ARGS)

bench-lambda: install ## the Lambda image's size, cold start and warm latency (needs Docker, ~2 min); appends to bench/RESULTS.md
	$(BIN)/python bench/lambda.py $(ARGS)

bench-score: install-runtime ## score.py on 1M and 10M generated rows: rows/s, peak memory, against a naive script, 3 runs each (~8 min); appends to bench/RESULTS.md
	$(BIN)/python bench/score.py $(ARGS)

bench-spark: install ## training on 10M generated rows: train.py against train.py --spark local[2] (the full fit on every row): wall time, peak memory, test ROC AUC (~20 min); appends to bench/RESULTS.md
	$(BIN)/python bench/spark_train.py $(ARGS)

bench-load: install ## opening a model file: load time and size, data-only bundle against the older pickle one, default model and a large forest (~1 min); appends to bench/RESULTS.md
	$(BIN)/python bench/load.py

notebooks: install ## re-execute the notebooks and save their outputs
	$(BIN)/python notebooks/execute.py --save

audit: install ## look up known vulnerabilities of the installed packages (pip-audit; needs PyPI's JSON API)
	$(BIN)/pip-audit --progress-spinner off

clean: ## remove the virtualenvs and caches
	rm -rf $(VENV) $(TOOLS) $(KSERVE_VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
