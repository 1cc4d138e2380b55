# Two commands a fresh clone needs: `make demo` and `make test`. Both run `make setup` first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done

.PHONY: setup blas git-config demo test lab lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	@# uv resolves and installs the same packages as pip, downloading and unpacking in parallel: 13 s instead of
	@# ~100 s here (the system's certificates, as pip's); pip does it where uv cannot.
	$(BIN)/python -m uv pip install --native-tls --python $(BIN)/python -q -e '.[dev]' \
	  || $(BIN)/python -m pip install -q -e '.[dev]'
	@# jsonschema (under nbformat, papermill, altair) imports rfc3987-syntax when present, which builds an Earley
	@# parser at import: 2 s of CPU in every process that reads a notebook (each sweep point, each kernel). Only
	@# the optional "iri" format check uses it, and no schema here has that format.
	$(BIN)/python -m pip uninstall -y -q rfc3987-syntax 2>/dev/null || true
	@$(MAKE) --no-print-directory blas
	$(BIN)/workbench install-kernel
	@$(MAKE) --no-print-directory git-config
	@touch $@

# Git runs the venv's tools by absolute path, so they work without the venv on PATH: nbdime's notebook diff and
# merge drivers, and nbstripout as a clean filter, so notebooks executed in place (JupyterLab autosaves outputs)
# stay unmodified in `git status` and outputs are never committed (.gitattributes names the drivers per file).
NBSTRIPOUT = $(abspath $(BIN))/nbstripout --keep-id --extra-keys "metadata.language_info metadata.papermill cell.metadata.papermill"
git-config:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config diff.jupyternotebook.command '$(abspath $(BIN))/git-nbdiffdriver diff'; \
	  git config merge.jupyternotebook.driver '$(abspath $(BIN))/git-nbmergedriver merge %O %A %B %L %P'; \
	  git config merge.jupyternotebook.name 'jupyter notebook merge driver'; \
	  git config filter.nbstripout.clean '$(NBSTRIPOUT)'; \
	  git config filter.nbstripout.smudge cat; \
	fi

# Linux: mlx-cpu bundles the reference BLAS; install an optimised one that the workbench preloads.
blas:
	@if [ "$$(uname -s)" = Linux ] && ! $(BIN)/python -c 'import sys; from workbench.runtime import find_optimised_blas as f; sys.exit(f() is None)'; then \
	  echo "installing libopenblas0-pthread (optimised BLAS for MLX on Linux)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null 2>&1 || \
	    ( $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null 2>&1 ) ) \
	  || echo "warning: could not install libopenblas0-pthread; 'workbench doctor' says how"; \
	fi

# The default model is committed (build-model checks it and prints where it is); the quickstart measures its
# held-out perplexity and task accuracy, so build-model's own quality check is not run twice.
demo: setup
	$(BIN)/workbench build-model --preset default --no-eval
	$(BIN)/workbench build-model --preset nano --no-eval
	$(BIN)/workbench demo
	$(BIN)/workbench sweep params/default.yaml
	$(BIN)/workbench sweep params/endpoint_demo.yaml
	$(BIN)/workbench report default --endpoint endpoint_demo -o outputs/reports/default.html

test: setup lint
	$(BIN)/python -m pytest -q --durations=15

# Kernels start in the notebook's folder; the workbench reads relative params and data paths from the repository
# root. 127.0.0.1 only, with Jupyter's generated token (in the URL it prints); --allow-root in containers.
# Saved notebooks carry no outputs (the tracked ones stay as committed; `git status` stays clean).
LAB_SAVE = --FileContentsManager.pre_save_hook=workbench.jupyter_kernel.strip_before_save
LAB_DIR ?= notebooks
LAB_ARGS ?=
lab: setup
	$(BIN)/jupyter lab $(LAB_DIR) --ip 127.0.0.1 $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_SAVE) $(LAB_ARGS)

lint: setup
	$(BIN)/ruff check workbench tests benchmarks
	$(BIN)/ruff format --check workbench tests benchmarks
	$(BIN)/mypy workbench

clean:
	rm -rf $(VENV) outputs/runs outputs/demo
