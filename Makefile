# One-command set-up: every target creates and fills the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The project's machines carry these builds on disk; elsewhere pick your own
# CUDA/CPU build, e.g. `make test TORCH="torch torchvision"`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= models,test
comma := ,

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test lint docs bench clean

# One stamp per set of extras. Each target installs its own set through a
# recursive make: a target-specific EXTRAS would not rename the stamp (a
# prerequisite's name is fixed when the Makefile is read), so `make demo`
# would mark the default set as installed and a later `make test` would find
# nothing to do, without ruff or pytest.
$(VENV)/.stamp-$(subst $(comma),-,$(EXTRAS)): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

venv: $(VENV)/.stamp-$(subst $(comma),-,$(EXTRAS))

demo:
	$(MAKE) venv EXTRAS=models,demo,engines
	$(PY) -m skltransfer.demo

# The tests also run skltransfer.distributed on Dask, Ray and Spark, and the
# frozen passes on ONNX Runtime and OpenVINO.
test:
	$(MAKE) venv EXTRAS=models,test,distributed,recipes,engines
	$(PY) -m ruff check skltransfer tests benchmarks
	$(PY) -m pytest

lint:
	$(MAKE) venv EXTRAS=models,test
	$(PY) -m ruff check skltransfer tests benchmarks
	$(PY) -m ruff format --check skltransfer tests benchmarks

docs:
	$(MAKE) venv EXTRAS=models,test,docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench:
	$(MAKE) venv EXTRAS=models,test,bench
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) site .pytest_cache
