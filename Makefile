# The two Quickstart commands are `make demo` and `make test`; both create .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-all test-random bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	# torchattacks is the tests' reference for attacks; its pinned requests~=2.25 would downgrade other packages,
	# and its attack code needs only torch, so it goes in without its dependencies.
	$(BIN)/python -m pip install -q --no-deps "torchattacks>=3.5"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/optik demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

test-random: $(STAMP)  # the fast suite in a random order: tests must share no state
	$(BIN)/python -m pytest -q --random-order

bench: $(STAMP)
	$(BIN)/python benchmarks/train_overhead.py
	$(BIN)/python benchmarks/default_training.py

clean:
	rm -rf $(VENV) runs .pytest_cache
