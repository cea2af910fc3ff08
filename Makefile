# `make run` and `make test` are the two commands a fresh clone needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint unit

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,ray,kubernetes,sim]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/computegrid up

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy
	$(PY) scripts/check_core_imports.py

test: lint
	$(VENV)/bin/pytest
