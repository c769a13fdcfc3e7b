# Entry points for people and CI. `make run` and `make test` do their own set-up.
.PHONY: setup run test lint format bench clean

setup:
	@bash devtools/setup.sh

run: setup
	@bash devtools/run.sh

# Lint, then the whole suite against real FerretDB, Redis, gunicorn, nginx and Chromium.
test: setup lint
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

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
	rm -rf .build .venv var .pytest_cache .ruff_cache
