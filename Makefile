# Two commands do all set-up: `make run` (whole pipeline on the synthetic demo cohort) and `make test`.
# Both create .venv when it is missing. torch==2.13.0 is installed first (pip, so the machine's own CPU build is
# found), so nothing pulls a CUDA build; uv then installs the lock in seconds. Bytecode is compiled once here (in
# parallel): with PYTHONDONTWRITEBYTECODE set, every process would otherwise recompile what it imports.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.breastseg-installed
UV_VERSION := 0.13.9
PIP_INDEX  = $(or $(PIP_INDEX_URL),$(shell $(PYTHON) -m pip config get global.index-url 2>/dev/null))
PIP_LINKS  = $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
DEBIAN := graphviz dcm2niix chromium chromium-driver postgresql dicom3tools
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1
export UV_LINK_MODE := copy

.PHONY: run test test-fast lint dag report ui server clean system-packages bench bench-quick

$(STAMP): pyproject.toml requirements/lock.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile torch==2.13.0
	@# torch's bytecode is compiled in the background while uv fetches and unpacks the lock (uv gets pip's index
	@# and wheel folders; where uv cannot be had or fails, pip installs the lock instead).
	@$(BIN)/python -m compileall -q -j 0 -x 'py3[1-9][0-9]_' $(VENV)/lib/python3*/site-packages/torch >/dev/null & \
	compiling=$$!; \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) || true; \
	if [ -x $(BIN)/uv ] && $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
	     $(if $(PIP_INDEX),--index-url $(PIP_INDEX)) $(foreach f,$(PIP_LINKS),--find-links $(f)) -r requirements/lock.txt; \
	then :; else $(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt \
	     || { wait $$compiling; exit 1; }; fi; \
	wait $$compiling
	@[ -x $(BIN)/uv ] && $(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e . \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -c "from importlib.metadata import version as v; assert v('torch').split('+')[0] == '2.13.0', v('torch')"
	@touch $(STAMP)

# Debian tools some tests and commands use (dot for --dag, dcm2niix for the geometry cross-check, chromium for
# the UI checks, postgresql for the shared Optuna study; the tests start their own server on 127.0.0.1).
system-packages:
	@missing=""; for p in $(DEBIAN); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: missing Debian packages:$$missing (tests that need them are skipped)"; fi; \
	fi

# Through DVC in a git checkout (`dvc repro` runs Snakemake and records dvc.lock, so `dvc status`, `dvc exp show`
# and `dvc metrics diff` see the run); plain Snakemake elsewhere.
run: $(STAMP)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then dvc repro; \
	else snakemake --profile workflow/profiles/default; fi
	@echo "done: metrics/*.json, results/summary.html; MLflow UI: make ui; to version this run: git add -A && git commit"

test: $(STAMP) system-packages
	pytest -q
	pytest -q -m slow

test-fast: $(STAMP)
	pytest -q

lint: $(STAMP)
	snakemake --lint

# Speed and quality benchmarks, ratios against references measured in the same run: benchmarks/results.{json,md}.
# QUALITY_DIR: the folder of a finished quality-profile run (configs/quality.yaml), for the Dice rows.
QUALITY_DIR ?=
bench: $(STAMP) system-packages
	$(BIN)/python benchmarks/run.py --out benchmarks/results.json $(if $(QUALITY_DIR),--quality-dir $(QUALITY_DIR))

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick --out benchmarks/results-quick.json

# The job graph: dag.svg with graphviz's dot, else a Mermaid file (never an empty or half-written file).
dag: $(STAMP)
	@if command -v dot >/dev/null 2>&1; then \
	  snakemake --quiet all --dag > .dag.dot && dot -Tsvg .dag.dot > .dag.svg && mv .dag.svg dag.svg \
	    && rm -f .dag.dot && echo "wrote dag.svg" || { rm -f .dag.dot .dag.svg; exit 1; }; \
	else \
	  snakemake --quiet all --dag mermaid-js > .dag.mmd && mv .dag.mmd dag.mmd \
	    && echo "wrote dag.mmd (Mermaid); for dag.svg install graphviz: apt-get install graphviz" \
	    || { rm -f .dag.mmd; exit 1; }; \
	fi

report: $(STAMP)
	snakemake --report report.html

ui: $(STAMP)
	mlflow ui --backend-store-uri $(BACKEND) --host $(HOST) --port $(PORT) --workers 1

# MLflow tracking server: runs point at it with MLFLOW_TRACKING_URI=http://HOST:PORT; artifacts are proxied into
# ARTIFACTS. Loopback only unless HOST says otherwise; BACKEND may be postgresql://user:password@host:5432/db.
# Server-side jobs (GenAI judges, trace roll-ups: seven extra processes) stay off, the pipeline uses none: JOBS=1.
# AUTH=1: accounts (MLflow's basic-auth app; users in AUTH_DB; first start: export MLFLOW_AUTH_ADMIN_PASSWORD=...);
# clients pass MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD. README, "A team server with accounts".
HOST      := 127.0.0.1
PORT      := 5000
BACKEND   := sqlite:///mlflow.db
ARTIFACTS := ./mlartifacts
JOBS      :=
AUTH      :=
AUTH_DB   := sqlite:///mlflow-auth.db
PERMISSION := READ
server: $(STAMP)
	breastseg server --host $(HOST) --port $(PORT) --backend $(BACKEND) --artifacts $(ARTIFACTS)$(if $(filter 1 true yes,$(JOBS)), --jobs)$(if $(filter 1 true yes,$(AUTH)), --auth --auth-db $(AUTH_DB) --default-permission $(PERMISSION))

clean:
	@# the versioned ledgers (data/splits/<cohort>/) stay: they are the cohorts' split, not a run's output
	rm -rf .snakemake data/raw/demo data/interim data/processed data/splits/*.json models results metrics plots \
	       logs mlflow.db optuna.db mlartifacts report.html dvc.lock .mlflow
