# Every target installs what it needs into .venv from the repo's own files (pyproject.toml + requirements.lock).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo ui test test-celery test-fast lint format lock bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Bytecode is compiled at install, so the first DAG parse and first task of a fresh install do not pay for it. The
# project's own modules too: where PYTHONDONTWRITEBYTECODE is set (as on the CI machine) every process compiled them
# again, each task and each command (0.4 CPU-s for all of include/). A module edited later is compiled in memory as
# usual: its .pyc no longer matches the source's time.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q include dags plugins
	@touch $@

install: $(STAMP) ## create .venv with the locked dependencies and the project (editable)

demo: $(STAMP) ## generate data, run the DAG on an embedded PostgreSQL, print the business answers
	$(BIN)/greenery demo

ui: $(STAMP) ## Airflow UI + scheduler on the embedded PostgreSQL, no Docker (http://localhost:8080, Ctrl-C stops)
	$(BIN)/greenery ui

# Three pytest-xdist workers on the 2-core machines: with two, the cores sat idle 10-11% of the run (the tests
# wait on Airflow subprocesses, servers and PostgreSQL); a third fills that and adds work of its own (its own
# imports, PostgreSQL and Airflow home): 2026-12-01, 9 whole runs, medians 383 s on two, 352 s on three; a fourth
# slows every test: 656 s against 563 s on three, 2026-12-04 (benchmarks/RESULTS.md).
# A test file per worker at a time (loadfile: module fixtures such as a shared DAG run are set up once).
# The files run longest first (tests/conftest.py: LONGEST_FIRST), not in xdist's most-tests-first order.
TEST_WORKERS ?= 3
# Plugins are named, not auto-loaded: pytest rewrites the asserts of every module of every installed plugin's
# package (anyio's, imported by httpx, included), in each worker, on every run when bytecode is not written.
# And the tests' bytecode is written (PYTHONDONTWRITEBYTECODE emptied, as `install` compiles the project's): pytest
# keeps a test module with its asserts rewritten only where it may, and where the variable is set (as on the CI
# machine) each worker rewrote every test module on every run, 1.2-1.5 of the 2-3 CPU-s its collection took.
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest --disable-plugin-autoload -p xdist.plugin -p pytest_timeout
# The 25 slowest tests are listed at the end: where the suite's time goes, in every CI log (issue #15).
test: $(STAMP) ## all tests: fast tier + PostgreSQL + Airflow + Celery workers (starts its own PostgreSQL and Redis)
	$(PYTEST) -p _hypothesis_pytestplugin -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

test-celery: $(STAMP) ## only the Celery test: Redis, scheduler, api-server and two workers, one killed (~1.5 min)
	$(PYTEST) tests/test_celery_workers.py

# The fast tier on three workers, as the whole suite: its tests wait more than they compute now (2026-12-07: 15-17
# CPU-s in 15-16 s of two workers' wall, cores idle half the time; the stop tests wait on their children, the
# view's on a timeout), and the longest unit is the files that import Airflow. Alternating runs of the same code:
# three workers 12.53, 12.71, 12.90 s; two 15.34, 14.71, 15.83 s (benchmarks/RESULTS.md).
FAST_WORKERS ?= 3
# Files whose every test it deselects are not even imported
# (tests/collect_by_marks.py), and Hypothesis' plugin is not loaded: its import alone took 1.7 s, for no test here.
# The files that need Airflow go to one worker together (tests/conftest.py: NEEDS_AIRFLOW).
test-fast: $(STAMP) ## the fast tier only (no database, no DAG runs, no Airflow subprocess or browser)
	$(PYTEST) -n $(FAST_WORKERS) --dist loadfile --airflow-files-together -m "not db and not integration and not stack"

# sqlfluff on every core (--processes 0): one process took 19.8 s of CI's time, two 11.9 s (2026-12-03).
lint: $(STAMP) ## ruff (with Airflow AIR rules) and sqlfluff (postgres)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint --processes 0 include/sql

format: $(STAMP) ## apply ruff formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header -o requirements.lock

# real = the real Greenery data (GREENERY_REAL_DATA, else ../shared/greenery), in the default scales when present
# (named and absent, the benchmark fails); BENCH_CONTENDERS=all adds Cosmos (dag.test and scheduled: minutes more).
comma := ,
BENCH_SCALES ?= $(if $(wildcard $(or $(GREENERY_REAL_DATA),../shared/greenery)/orders.csv),real$(comma))1,100
BENCH_CONTENDERS ?= floor,dbt,pipeline,pipeline_scheduled
bench: $(STAMP) ## pipeline (dag.test and scheduler) vs bare SQL vs dbt build [vs Cosmos: BENCH_CONTENDERS=all]
	$(BIN)/python benchmarks/bench.py --scales $(BENCH_SCALES) --contenders $(BENCH_CONTENDERS)

clean: ## remove the venv and local state (.greenery: embedded PostgreSQL, Airflow home, data)
	rm -rf $(VENV) .greenery
