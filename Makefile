# One entry point for everything; CI runs the same targets.
SHELL := /bin/bash
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
RUN := $(UV) run --frozen
HOST ?= 127.0.0.1
PORT ?= 8717

.PHONY: demo scan test lint bench conformance clean

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-groups
	touch $@

## demo: scan the bundled example data (table on screen, every report format under var/reports/)
demo: .venv/.synced
	$(RUN) powerx version demo

## test: the whole test suite (unit, property, functional); installs promtool when missing
test: .venv/.synced
	@command -v promtool >/dev/null || bash .ci/install-promtool
	$(RUN) pytest

## lint: ruff and strict mypy
lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

## bench: reference-workload benchmarks (not tests; figures on stdout)
bench: .venv/.synced
	$(RUN) python -m bench.scan_reference

## conformance: DESIGN §5 executable cases
conformance: .venv/.synced
	../shared/conformance/run

clean:
	rm -rf .venv $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
