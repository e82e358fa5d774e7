# Two entry points for a fresh machine: `make demo` and `make test` (each sets itself up first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stgmtl-installed

.PHONY: setup demo test test-fast test-gpu lint bench docs

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,lightning,docs,transformers,dask]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) examples/cifar100_grouping.py $(ARGS)

test: $(STAMP)
	sh scripts/install_chromium.sh
	$(PY) -m pytest $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

# GPU tests (recorder, fit_datamaps, NCCL sync, faiss on GPU); each skips with a reason where its
# hardware or library is missing. For faiss on GPU: pip install -e ".[gpu]" first (faiss-gpu-cu12
# and faiss-cpu both provide the faiss module: uninstall faiss-cpu there).
test-gpu: $(STAMP)
	$(PY) -m pytest -m gpu -v -rs $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check stgmtl tests examples benchmarks
	$(VENV)/bin/ruff format --check stgmtl tests examples benchmarks
	$(VENV)/bin/mypy stgmtl

bench: $(STAMP)
	$(PY) benchmarks/recording_overhead.py
	$(PY) benchmarks/grouping.py

# the documentation site, offline, into site/ (git-ignored); --strict: a broken link or reference fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site
