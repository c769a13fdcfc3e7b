# Entry points for people and CI. `make run` and `make test` do their own set-up.
.PHONY: setup run test lint format bench clean status restart failover whatsapp

setup:
	@bash devtools/setup.sh

run: setup
	@bash devtools/run.sh

# While `make run` runs (from another terminal): every process's state, and a rolling
# restart of the app instances, each drained from nginx first (no failed request).
# NAMES="app1" restarts only those; devtools/stackctl is supervisorctl for the stack.
status:
	-@bash devtools/stackctl status
	@bash -c 'source devtools/stack_env.sh && exec .venv/bin/python -m chatbot.ops.checker status --prefix "$$NGINX_PREFIX"'

restart:
	@bash -c 'source devtools/stack_env.sh && exec .venv/bin/python -m chatbot.ops.restart rolling $(NAMES) \
	  --prefix "$$NGINX_PREFIX" --stop "devtools/stackctl stop {name}" --start "devtools/stackctl start {name}"'

# While `make run` runs: chat as a WhatsApp number from this terminal, through the Graph
# API emulator, the webhook and the queue workers (PHONE in international form, no +).
PHONE ?= 6281200000001
whatsapp:
	@bash -c 'source devtools/stack_env.sh && exec .venv/bin/python devtools/graph_emulator.py chat $(PHONE) --emulator "http://127.0.0.1:$$STACK_GRAPH_PORT"'

# The failover suite at full length: steady GETs and chat POSTs through nginx while an
# instance is killed, restarted, reloaded (about 2.5 minutes; `make test` runs a short one);
# then WhatsApp's fault run at the issue's lengths: a queue worker SIGKILLed, Redis killed
# and started empty, Meta throttling for 30 s and failing with 5xx for 10 s, under load
# from 8 parents (about 1.5 minutes): every reply sent exactly once, in order per parent.
failover: setup
	FAILOVER_FULL=1 .venv/bin/python -m pytest -s -p no:cacheprovider tests/e2e/test_failover.py
	FAULT_SCALE=6 .venv/bin/python -m pytest -s -p no:cacheprovider tests/e2e/test_whatsapp.py -k faults

# Lint, then the whole suite against real FerretDB, Redis, gunicorn, nginx and Chromium.
test: setup lint
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/mypy

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# Open-loop benchmark through nginx and two instances, goals as PASS/MISS; writes
# docs/benchmarks.md and its plot (about 5 minutes). vegeta and matplotlib come from
# devtools/bench_setup.sh.
bench:
	@SETUP_BENCH=1 bash devtools/setup.sh
	@bash devtools/bench_setup.sh
	.venv/bin/python devtools/bench.py

clean:
	rm -rf .build .venv var .pytest_cache .ruff_cache .import_linter_cache
