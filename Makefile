# mailroom: `make run` starts the dev stack, `make test` runs every check. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mailroom dev

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Three test processes on two cores: most tests wait on sockets, subprocesses and timers, not the CPU.
# A file stays in one process (module fixtures, the chaos tests' worker processes). The schemathesis run
# goes alone: under xdist its generated tests are not collected at all (2 of 25 would run, silently).
API_SCHEMA_TESTS := tests/web/test_api_schema.py
test: lint typecheck
	$(BIN)/pytest -n 3 --dist loadfile --ignore=$(API_SCHEMA_TESTS)
	$(BIN)/pytest $(API_SCHEMA_TESTS)

# Not part of `make test`: it takes minutes and measures, it does not check. Against Postfix's smtp-sink
# when installed (apt-get install postfix); extra options in BENCH_ARGS, e.g. BENCH_ARGS="--rounds 3".
# bench/enqueue.py: send_mail / send_mails against a bare INSERT+COMMIT per mail (ENQUEUE_BENCH_ARGS).
bench: $(STAMP)
	$(BIN)/python bench/delivery.py $(BENCH_ARGS)
	$(BIN)/python bench/enqueue.py $(ENQUEUE_BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
