# Every target creates the virtual environment first if it is missing (or pyproject changed).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint terraform-check fault-matrix bench ci

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the reconciler end to end on the local stand-ins and show the report and Discord message.
demo: $(STAMP)
	$(VENV)/bin/crypto-signals sandbox demo

## Run the whole test suite (starts the Firestore emulator itself).
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy src functions scripts tests benchmarks

terraform-check:
	bash scripts/check_terraform.sh

fault-matrix: $(STAMP)
	$(PY) scripts/fault_matrix.py --write docs/fault-matrix.md

bench: $(STAMP)
	$(PY) benchmarks/bench_reconcile.py

ci: lint terraform-check test
