# Everything runs from a project-local virtualenv created on first use, so a fresh
# machine needs only python3 (3.10+) and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS := dev,flask,django,starlette,collector
STAMP := $(VENV)/.installed-$(shell echo $(EXTRAS) | tr , -)

.PHONY: install lint test test-fast demo bench clean

install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "moesif-agent needs Python 3.10+; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

lint: install
	$(BIN)/ruff check moesif_agent tests integrations benchmarks examples
	$(BIN)/ruff format --check moesif_agent tests integrations benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -m "not slow"

test-fast: install
	$(BIN)/pytest -m "not slow" -x -q tests

demo: install
	$(BIN)/moesif-agent demo

bench: install
	$(BIN)/python -m benchmarks
	$(BIN)/pytest -m slow -q -p no:cacheprovider integrations/faults

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .moesif
