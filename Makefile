# taf: three commands do everything on a fresh machine (Python 3.11):
#   make reproduce   -- set up .venv, then run the reproduction (papermill experiment notebooks)
#   make lab         -- set up .venv, then JupyterLab on nbs/ (the venv's python3 kernel) to read and run the notebooks
#   make test        -- set up .venv, then the whole test suite (sync/clean checks, nbdev_test, pytest)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= quick
# tests run 2 processes in parallel on 2 cores: one torch/OpenMP thread each avoids oversubscription
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: venv reproduce lab test check nbtest pytest export clean-nbs help

help:
	@echo "make reproduce [PROFILE=smoke|quick|full|paper]  # run the experiment notebooks, write figures/PROFILE/"
	@echo "make lab                                    # JupyterLab on nbs/: read and run the notebooks"
	@echo "make test                                   # whole test suite"

$(BIN)/activate:
	@command -v $(PY) >/dev/null || { echo "need $(PY) (set PY=python3.x)"; exit 1; }
	$(PY) -m venv $(VENV)

# re-install whenever requirements.txt or setup.py change
$(VENV)/.installed: requirements.txt setup.py settings.ini | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	touch $@

venv: $(VENV)/.installed

# ---- reproduction ----------------------------------------------------------------------------
# taf reproduce: the experiment notebooks of PROFILE in dependency order (papermill, checked parameters);
# results, executed notebooks and REPORT.md in figures/$(PROFILE)/
reproduce: venv
	$(BIN)/taf reproduce --profile $(PROFILE)

# ---- reading the notebooks ---------------------------------------------------------------------
# JupyterLab from the venv on nbs/; the notebooks run in the venv's `python3` kernel (installed by `make venv`).
# Jupyter refuses to run as root unless told (a container's shell): LAB_ARGS adds options, e.g. --no-browser
LAB_ARGS ?=
lab: venv
	$(BIN)/jupyter lab --notebook-dir=nbs --MappingKernelManager.default_kernel_name=python3 \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# ---- tests -----------------------------------------------------------------------------------
test: venv check nbtest pytest
	@echo "== all tests passed"

# library in sync with notebooks, notebooks clean (no outputs, kernelspec, parameters tags)
check: venv
	$(BIN)/python .ci/check_repo.py

nbtest: venv
	@set +e; out=$$($(TEST_ENV) $(BIN)/nbdev_test --n_workers 2 --timing --skip_folder_re '^(experiments|[_.].*)$$' 2>&1); rc=$$?; set -e; \
	 echo "$$out"; \
	 if echo "$$out" | grep -q "No files were eligible"; then echo "ERROR: nbdev_test found no notebooks to test"; exit 1; fi; \
	 exit $$rc

pytest: venv
	$(TEST_ENV) $(BIN)/python -m pytest -q tests/ -n 2 --dist loadfile

# regenerate taf/ from the notebooks, then strip outputs from the notebooks
export: venv
	$(BIN)/nbdev_export
clean-nbs: venv
	$(BIN)/jupyter nbconvert --clear-output --inplace nbs/*.ipynb nbs/experiments/*.ipynb
	$(BIN)/nbdev_clean
