# mailroom: `make run` starts the dev stack, `make test` runs every check. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench reliability clean editor

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The template editor's code editor (CodeMirror 6): web-editor/ bundled by esbuild into one static file. npm ci
# runs once per package-lock.json (its stamp); the bundle is rebuilt when its sources change. Without npm the
# editor page keeps its plain textareas, and the browser tests of the editor fail in CI (CI=true).
EDITOR_DIR := web-editor
EDITOR_STAMP := $(EDITOR_DIR)/node_modules/.mailroom-installed
EDITOR_JS := src/mailroom/web/static/editor.js

$(EDITOR_STAMP): $(EDITOR_DIR)/package.json $(EDITOR_DIR)/package-lock.json
	cd $(EDITOR_DIR) && npm ci --no-audit --no-fund
	touch $(EDITOR_STAMP)

ifneq ($(shell command -v npm 2>/dev/null),)
$(EDITOR_JS): $(EDITOR_STAMP) $(wildcard $(EDITOR_DIR)/src/*.js)
	cd $(EDITOR_DIR) && npm run --silent build
else
$(EDITOR_JS):
	@echo "npm not found: $(EDITOR_JS) is not built, the template editor stays a plain textarea"
endif

editor: $(EDITOR_JS)

run: $(STAMP) editor
	$(BIN)/mailroom dev

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Three test processes on two cores: most tests wait on sockets, subprocesses and timers, not the CPU.
# A file stays in one process (module fixtures, the chaos tests' worker processes). The schemathesis run
# goes alone: under xdist its generated tests are not collected at all (2 of 25 would run, silently).
API_SCHEMA_TESTS := tests/web/test_api_schema.py
test: lint typecheck editor
	$(BIN)/pytest -n 3 --dist loadfile --ignore=$(API_SCHEMA_TESTS)
	$(BIN)/pytest $(API_SCHEMA_TESTS)

# Not part of `make test`: it takes minutes and measures, it does not check. bench/run.py runs every part
# (delivery, enqueue, latency, worker memory, scale-out, the peer django-post_office, log search) and writes
# bench/results/latest.md and latest.json; extra options in BENCH_ARGS, e.g. BENCH_ARGS="--only delivery".
# The SMTP sink is Postfix's smtp-sink, installed here with apt when missing (postfix itself configured as
# "No configuration": nothing listens on port 25); the peer comes from the bench extra.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix \
		|| echo "could not install postfix: bench/run.py falls back to the Python sink and says so"; \
	fi
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Not part of `make test`: the fault and chaos suites with their figures, written to docs/reliability.md
# (about 15 minutes: the rate limit is held over six minutes of mail). RELIABILITY_ARGS="--quick" for less.
reliability: $(STAMP)
	$(BIN)/python bench/reliability.py $(RELIABILITY_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(EDITOR_DIR)/node_modules $(EDITOR_JS)
