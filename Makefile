# Everything runs from a project-local virtualenv created on first use, so a fresh
# machine needs only python3 (3.10+) and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make demo` installs only what the demo runs (the [demo] extra), so a first `make demo` is
# quick; `make test` and the other targets add the development tools.
DEMO_STAMP := $(VENV)/.installed-demo
EXTRAS := dev,flask,django,starlette,collector,demo
STAMP := $(VENV)/.installed-$(shell echo $(EXTRAS) | tr , -)

.PHONY: install lint test test-fast test-matrix demo bench clean

install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "moesif-agent needs Python 3.10+; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	@# editable installs of a pyproject.toml project need pip 21.3+ (no download when present)
	$(BIN)/python -m pip install --quiet 'pip>=21.3'

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	@touch $@

lint: install
	$(BIN)/ruff check moesif_agent tests integrations benchmarks examples scripts
	$(BIN)/ruff format --check moesif_agent tests integrations benchmarks examples scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -m "not slow"

test-fast: install
	$(BIN)/pytest -m "not slow" -x -q tests

# The in-process suites (tests/) under Python 3.10 and 3.13, each with the lowest framework
# versions pyproject.toml declares and with the newest: about 13 minutes on 2 cores (2-6 per
# run; the venvs in .matrix/ are reused while pyproject.toml is unchanged), so not part of
# `make test`. MATRIX_ARGS=--head tests the last commit instead of the working tree.
MATRIX_ARGS ?=
test-matrix: install
	$(BIN)/python scripts/test_matrix.py $(MATRIX_ARGS)

demo: $(DEMO_STAMP)
	$(BIN)/moesif-agent demo

bench: install
	$(BIN)/python -m benchmarks
	$(BIN)/pytest -m slow -q -p no:cacheprovider integrations/faults

clean:
	rm -rf $(VENV) .matrix .pytest_cache .mypy_cache .ruff_cache .moesif
