# Two commands a fresh clone needs: `make demo` and `make test`. Both run `make setup` first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done

.PHONY: setup blas demo test lab lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@$(MAKE) --no-print-directory blas
	$(BIN)/workbench install-kernel
	-@git rev-parse --git-dir >/dev/null 2>&1 && $(BIN)/nbdime config-git --enable >/dev/null
	@touch $@

# Linux: mlx-cpu bundles the reference BLAS; install an optimised one that the workbench preloads.
blas:
	@if [ "$$(uname -s)" = Linux ] && ! $(BIN)/python -c 'import sys; from workbench.runtime import find_optimised_blas as f; sys.exit(f() is None)'; then \
	  echo "installing libopenblas0-pthread (optimised BLAS for MLX on Linux)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null 2>&1 || \
	    ( $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null 2>&1 ) ) \
	  || echo "warning: could not install libopenblas0-pthread; 'workbench doctor' says how"; \
	fi

demo: setup
	$(BIN)/workbench build-model --preset default
	$(BIN)/workbench build-model --preset nano --no-eval
	$(BIN)/workbench demo
	$(BIN)/workbench sweep params/default.yaml
	$(BIN)/workbench sweep params/endpoint_demo.yaml
	$(BIN)/workbench report default --endpoint endpoint_demo -o outputs/reports/default.html

test: setup lint
	$(BIN)/python -m pytest -q

lab: setup
	$(BIN)/jupyter lab notebooks/

lint: setup
	$(BIN)/ruff check workbench tests benchmarks
	$(BIN)/ruff format --check workbench tests benchmarks

clean:
	rm -rf $(VENV) outputs/runs outputs/demo
