# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: chaos demo test lint typecheck bench bench-quick bench-scaling clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/pel demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# pel against its peers on the workloads of WORKLOADS.md; table + benchmarks/results/latest.json.
# Extra options: make bench BENCH_ARGS="--systems pel,ray --workloads W1,W7 --repeats 5"
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

bench-quick: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run --quick $(BENCH_ARGS)

# How pel's coordinator costs grow with n (time/task, memory/pending task, bounded map);
# table + benchmarks/results/scaling.json. Smoke run: make bench-scaling SCALING_ARGS=--quick
bench-scaling: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.scaling $(SCALING_ARGS)

# The W7 graph 20 times while a random worker is SIGKILLed every 100 ms; exits 1 on any failure.
chaos: $(VENV)/.installed
	$(BIN)/python -m benchmarks.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
