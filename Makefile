# The two commands that do everything on a fresh machine:
#   make run    the dashboard at http://127.0.0.1:8000/ with the sandbox, a worker, the scheduler and demo data
#   make test   the whole suite (browser tests included when Chromium is installed)
#   make prod   the production stack (gunicorn, DEBUG off) on PostgreSQL; see docs/deploy.md
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run prod test test-fast test-slow smoke lint format check bench bench-sandbox bench-bulk bench-load soak clean help

help:
	@sed -n '1,5p' Makefile

$(STAMP): pyproject.toml
	@interp=$$(scripts/find-python) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then \
		echo "Creating $(VENV) with $$interp"; rm -rf $(VENV); "$$interp" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@scripts/run-dev

prod: $(STAMP)
	@scripts/run-prod

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything but the browser tests, for a quick loop while working.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not browser" $(PYTEST_ARGS)

# Only the long-running tests (soak, large imports) that `make test` leaves out.
test-slow: $(STAMP)
	$(PY) -m pytest --run-slow -m slow $(PYTEST_ARGS)

# The production stack end to end on a fresh PostgreSQL database (dashboard_smoke; ports 8230-8231): gunicorn,
# 2 workers, the scheduler, a faulty sandbox, a 500-item bulk create driven over HTTP (scripts/smoke.py).
smoke: $(STAMP)
	$(PY) scripts/smoke.py

# Benchmarks print numbers; they are not tests. `make bench` prints one table: every page beside its admin
# changelist and the login page, the scheduler, and the import and bulk rows. Bigger runs (docs/scaling.md):
#   make bench BENCH_ITEMS=1000000 DATABASE_URL=postgres://postgres@127.0.0.1:5432/dashboard_bench
BENCH_ITEMS ?= 100000
bench: $(STAMP)
	$(PY) scripts/bench_catalog_page.py --items $(BENCH_ITEMS) $(BENCH_PAGE_ARGS)

bench-sandbox: $(STAMP)
	$(PY) -m dashboard.sandbox.bench

# A bulk create on PostgreSQL against the sandbox with 1 and 2 worker processes (BENCH_ARGS="--items 3000"
# for the quick form). Needs PostgreSQL on 127.0.0.1:5432; creates the database dashboard_bench_ops.
bench-bulk: $(STAMP)
	$(PY) scripts/bench_bulk.py $(BENCH_ARGS)

# 100 logged-in operators polling a page of 50 items on gunicorn + PostgreSQL, with Vionlabs up and down
# (locust; database dashboard_bench; ports 8160-8162). See docs/testing-faults.md.
bench-load: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) scripts/bench_load.py $(BENCH_ARGS)

# The long fault run: 2,000 operator actions from 8 threads against a Vionlabs failing 30 % (FAULT_RUN_ACTIONS,
# FAULT_RUN_OPERATORS, FAULT_RUN_ITEMS, FAULT_RUN_SEED, FAULT_RUN_RETRY_AFTER change it).
soak: $(STAMP)
	LOG_LEVEL=ERROR $(PY) -m pytest tests/catalog/test_fault_run.py --run-slow -k soak -s $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy dashboard

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint test

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles .prometheus-multiproc test-artifacts .pytest_cache .ruff_cache
