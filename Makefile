# Two entry points: `make demo` and `make test`. Both build .venv from scratch when needed.
# torch is installed first and pinned, so the project's `torch>=2.6` is already satisfied by
# the CPU build and pip never pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/skiplab reproduce --scale quick --executor local --out skiplab-runs/report
	@echo "report: $(abspath skiplab-runs/report/index.html)"

LINT_PATHS := src tests $(wildcard bench examples)

lint: $(STAMP)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/ruff check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) skiplab-runs .pytest_cache .mypy_cache .ruff_cache
