# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make run    installs the server into .venv and starts it (dev mode, SQLite)
#   make test   installs the test tools into .venv and runs lint + every test
#   make lock   re-pins the test tools in constraints/test.txt (after a setup.cfg change)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
#: The pinned test and lint tools (and everything else install-test installs).
CONSTRAINTS := constraints/test.txt

.PHONY: run install install-test lock lint test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

# Only what constraints/test.txt lists is pinned: a package setup.cfg gained
# since the last `make lock` installs unpinned; a pin that contradicts
# setup.cfg fails here, and `make lock` mends it.
install-test: $(BIN)/python
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[test,bench]' || \
		{ echo "error: install with $(CONSTRAINTS) failed; if setup.cfg changed, run: make lock" >&2; exit 1; }

# A fresh resolution of the test and bench extras at today's versions (pip's
# dry run into an empty environment: nothing is installed), written as pins.
lock: $(BIN)/python
	$(BIN)/pip install -q --dry-run --ignore-installed --report $(CONSTRAINTS).json -e '.[test,bench]'
	$(BIN)/python constraints/lock.py $(CONSTRAINTS).json > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -f $(CONSTRAINTS).json

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
