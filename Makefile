# relo — the two commands of the README, plus the long-running extras.
#   make run    install into .venv and start the stack with the example blueprint
#   make test   install into .venv and run the test suite (Redis + PostgreSQL on 127.0.0.1)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck bench reliability clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/relo blueprint apply -f examples/shop/shop.yaml
	$(BIN)/relo up

# Integration tests mostly wait on real worker processes: four pytest workers (each with its
# own Redis database, see tests/conftest.py; more overload 2 cores and make timing-based tests
# flaky), work-stealing so that no worker idles while another still holds a queue of tests.
test: install
	$(BIN)/ruff check release_orchestrator workers tests benchmarks celeryconfig.py
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow" -n 4 --dist worksteal --durations=25

lint: install
	$(BIN)/ruff check release_orchestrator workers tests benchmarks celeryconfig.py

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m benchmarks.run

reliability: install
	# 3,000 examples per fuzz test take minutes: more than the per-test timeout of make test
	RELO_FUZZ_EXAMPLES=3000 $(BIN)/python -m pytest -q --timeout=1800 tests/unit/test_fuzz.py
	$(BIN)/python -m tests.reliability.report

clean:
	rm -rf $(VENV) relo.db relo.db-* .pytest_cache
