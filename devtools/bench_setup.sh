#!/usr/bin/env bash
# Idempotent set-up for `make bench` on top of `make setup`: the load generator vegeta
# (built from the Go module proxy into .build/bin) and the plot's Python packages
# (requirements-bench.txt, into .venv). Each step is skipped when its result is there.
set -euo pipefail
cd "$(dirname "$0")/.."

VEGETA_VERSION=v12.13.0

# --- vegeta: an open-loop HTTP load generator ---------------------------------
if [ "$(.build/bin/vegeta -version 2>/dev/null | head -1)" != "Version: $VEGETA_VERSION" ]; then
  if ! command -v go >/dev/null; then
    echo "bench_setup: Go is needed to build vegeta $VEGETA_VERSION" >&2
    exit 1
  fi
  echo "bench_setup: building vegeta $VEGETA_VERSION into .build/bin (about 30 s the first time)"
  mkdir -p .build/bin
  # The version is stamped in, so the check above finds it and skips the next time.
  GOBIN="$PWD/.build/bin" GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
    go install -ldflags "-s -w -X main.Version=$VEGETA_VERSION" \
    "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
fi

# --- plotting packages ---------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  echo "bench_setup: .venv is missing: run \`make setup\` first" >&2
  exit 1
fi
stamp=.venv/.requirements-bench.sha
want=$(sha256sum requirements-bench.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "import matplotlib" 2>/dev/null; then
  echo "bench_setup: installing the benchmark's Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-bench.txt
  echo "$want" > "$stamp"
fi
