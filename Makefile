# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create (or reuse) .venv and install the package with its dev tools; reinstalling happens only
# when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/landmark info --config configs/models/pfld.yaml

test: $(STAMP)
	$(BIN)/ruff check landmark tests
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check landmark tests
	$(BIN)/ruff format --check landmark tests

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
