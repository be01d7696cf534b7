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

$(VENV)/.stamp-$(subst $(comma),-,$(EXTRAS)): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

venv: $(VENV)/.stamp-$(subst $(comma),-,$(EXTRAS))

demo: EXTRAS := models,demo
demo: venv
	$(PY) -m skltransfer.demo

# The tests also run skltransfer.distributed on Dask, Ray and Spark.
test: EXTRAS := models,test,distributed,recipes
test: venv
	$(PY) -m ruff check skltransfer tests benchmarks
	$(PY) -m pytest

lint: venv
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
