# One entry point for everything; CI runs the same targets.
SHELL := /bin/bash
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
RUN := $(UV) run --frozen
# Python's bytecode cache on for everything started here, as on an installed tool: a shell that sets
# PYTHONDONTWRITEBYTECODE makes every process (tests start many) compile each module it imports
unexport PYTHONDONTWRITEBYTECODE
# `make demo HOST=0.0.0.0 PORT=8799`: where the demo serves (POWERX_HOST / POWERX_PORT)
HOST ?= 127.0.0.1
PORT ?= 8717
# `make test PYTEST_ARGS="tests/unit -x"`: what pytest runs (default: the whole suite)
PYTEST_ARGS ?=
# `make test PYTEST_WORKERS=0`: how many pytest-xdist worker processes run the tests (0: in pytest's
# own process, serially). Each test file goes to one worker whole (--dist loadfile), so a module's
# fixtures are built once; a file's tests never run at the same time as each other.
PYTEST_WORKERS ?= 2

.PHONY: demo test lint bench bench-store bench-decisions bench-verify conformance clean

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# Two environments in one .venv, each sync exact: `.synced` has every dependency group (test, lint,
# bench), `.synced-runtime` the service's own dependencies only. Syncing one removes the other's
# stamp, so switching between `make demo` and `make test` always re-syncs.
.venv/.synced: $(UV) pyproject.toml uv.lock
	rm -f .venv/.synced-runtime
	$(UV) sync --frozen --all-groups
	touch $@

.venv/.synced-runtime: $(UV) pyproject.toml uv.lock
	rm -f .venv/.synced
	$(UV) sync --frozen --no-default-groups
	touch $@

## demo: the service on the example fleet (SQLite), a first scan, every report format under var/reports/;
## serves on $(HOST):$(PORT) until Ctrl-C (runtime dependencies only)
demo: .venv/.synced-runtime
	POWERX_HOST=$(HOST) POWERX_PORT=$(PORT) $(UV) run --frozen --no-default-groups powerx version demo

## test: the whole test suite (unit, property, functional) on $(PYTEST_WORKERS) worker processes; starts
## PostgreSQL, installs Chromium and promtool when missing (.ci/ensure-test-deps)
test: .venv/.synced
	bash .ci/ensure-test-deps
	$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## lint: ruff and strict mypy
lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

# `make bench-store BENCH_ARGS="--tenants 2000 --backend sqlite"`: arguments of the store, decisions
# and verify benches (default: the reference workload on both stores)
BENCH_ARGS ?=

## bench: reference-workload benchmarks (not tests; figures on stdout): `powerx version scan` per
## report format next to its json-load floor
bench: .venv/.synced
	$(RUN) python -m bench.scan_reference

## bench-store: first ingest, steady full scan and push -> delta latency through the store, each a
## whole process next to a process reading the inventory out of the store (SQLite and PostgreSQL)
bench-store: .venv/.synced
	$(RUN) python -m bench.store_reference $(BENCH_ARGS)

## bench-decisions: decisions/s through `powerx version serve`, 16 clients, next to a read floor
bench-decisions: .venv/.synced
	$(RUN) python -m bench.decisions_http --backend both $(BENCH_ARGS)

## bench-verify: `powerx audit verify` over 1,000,000 events next to a bare-driver read floor
bench-verify: .venv/.synced
	$(RUN) python -m bench.audit_verify --backend both $(BENCH_ARGS)

## conformance: DESIGN §5 executable cases
conformance: .venv/.synced
	../shared/conformance/run

clean:
	rm -rf .venv $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
