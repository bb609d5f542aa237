# Two commands on a fresh machine: `make demo` and `make test`. Each does its own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(abspath $(BIN)/python)

.PHONY: demo test test-fast test-r lint bench diagram setup system-deps lock clean

# Debian packages: Java for Spark; R, the R package's dependencies, unixODBC and the SQLite
# ODBC driver for its tests (CRAN is not reachable: every R dependency comes from Debian);
# Graphviz for `make diagram`.
DEB_PACKAGES := openjdk-17-jre-headless r-base-core r-cran-httr2 r-cran-jsonlite r-cran-rlang \
  r-cran-cli r-cran-dbi r-cran-rodbc r-cran-testthat r-cran-webfakes r-cran-withr \
  r-cran-mockery r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown r-cran-reticulate pandoc \
  r-cran-tibble r-cran-bit64 r-cran-rsqlite \
  unixodbc odbcinst libsqliteodbc graphviz

demo: setup
	$(BIN)/yws demo

# pytest on PYTEST_WORKERS processes (pytest-xdist), each test file whole on one worker so a
# module's fixtures (a served home, a trained copy) are built once; each worker has its own
# Spark session and its own one training (tests/conftest.py). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2

test: setup lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile
	bash scripts/test-r.sh

test-r: setup
	bash scripts/test-r.sh

# The inner loop: tests/unit/ only (no Spark session, no subprocess, no server; see
# tests/conftest.py). `make test` runs everything.
test-fast: setup
	$(BIN)/python -m pytest -q tests/unit

lint: setup
	$(BIN)/ruff check python tests benchmarks tools
	$(BIN)/mypy

# Tables on stdout; JSON in benchmarks/out/. bench_core takes ~15 min (1M and 10M rows).
bench: setup
	$(BIN)/python benchmarks/bench_core.py --json benchmarks/out/core.json
	$(BIN)/python benchmarks/bench_r.py --json benchmarks/out/r.json
	$(BIN)/python benchmarks/bench_sql.py
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_serve_memory.py --json benchmarks/out/serve_memory.json
	$(BIN)/python benchmarks/bench_serving.py
	$(BIN)/python benchmarks/bench_ai_query.py

# The architecture pictures in docs/, drawn from the bundle and the settings (tools/diagram.py).
diagram: setup
	$(BIN)/python -m tools.diagram

setup: system-deps $(STAMP)

# Debian packages the jobs and tests need, installed only when missing.
system-deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  if command -v java >/dev/null 2>&1; then missing=$$(echo $$missing | tr ' ' '\n' | grep -v openjdk); fi; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[local,dev]'
	touch $@

# Refresh the transitive pins after changing a direct dependency in pyproject.toml.
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV) .venv-serverless .yws .pytest_cache .mypy_cache .ruff_cache
