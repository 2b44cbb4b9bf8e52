# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make run    installs the server into .venv and starts it (dev mode, SQLite)
#   make test   installs the test tools into .venv and runs lint + every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run install install-test lint test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'

run: install
	SIGNALING_DEV=$${SIGNALING_DEV:-1} $(BIN)/python -m signaling serve

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy signaling scheduler rtc_bridge persistence
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache signaling.sqlite3*
