#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system packages (Redis, nginx, PostgreSQL,
# Chromium), the virtualenv and the FerretDB binary. Each step is skipped when its
# result is already there.
# Called by `make setup` (and so by `make run` and `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# --- system packages ---------------------------------------------------------
# command -> Debian package providing it
declare -A wanted=([redis-server]=redis-server [nginx]=nginx [npm]=npm)
if [ "${SETUP_BROWSER:-1}" = 1 ]; then wanted[chromium]=chromium; fi
if [ "${SETUP_BENCH:-0}" = 1 ]; then wanted[wrk]=wrk; fi
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${wanted[$cmd]}")
done
# PostgreSQL, the dev/test FerretDB's backend: Debian keeps its programs off PATH.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get"
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these packages with your system's package manager: ${missing[*]}" >&2
    exit 1
  fi
fi
# Debian starts the packaged services on install (postgresql: a system cluster on
# 5432); the stack runs its own copies on other ports (devtools/postgres.sh for
# PostgreSQL), so the system ones are left as they are.

# --- Python virtualenv -------------------------------------------------------
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

# --- FerretDB (dev/test MongoDB-compatible server) ---------------------------
# Built once from the Go module proxy into .build/, rebuilt only when the wrapper changes.
fstamp=.build/ferretdb.sha
fwant=$(cat devtools/ferretdb/go.mod devtools/ferretdb/go.sum devtools/ferretdb/main.go | sha256sum | cut -d' ' -f1)
if [ ! -x .build/ferretdb ] || [ "$(cat "$fstamp" 2>/dev/null)" != "$fwant" ]; then
  if ! command -v go >/dev/null; then
    echo "setup: Go (1.24 or newer) is needed to build the dev database FerretDB; install it, or set MONGO_URI to a MongoDB server" >&2
    exit 1
  fi
  echo "setup: building FerretDB v1.24.2 into .build/ (a few minutes the first time)"
  mkdir -p .build
  # -buildvcs=false: no VCS stamping (it fails in some checkouts and adds nothing here).
  (cd devtools/ferretdb && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o ../../.build/ferretdb .)
  echo "$fwant" > "$fstamp"
fi

# --- the operator dashboard's charting library -------------------------------
# uPlot, pinned in devtools/dashboard/package-lock.json, from the npm registry; the files
# the page needs are copied into chatbot/web/dashboard/vendor/ (git-ignored) and served
# by the app, never from a CDN. Redone only when the lock file changes.
vendor=chatbot/web/dashboard/vendor
vstamp=.build/dashboard.sha
vwant=$(sha256sum devtools/dashboard/package-lock.json | cut -d' ' -f1)
if [ ! -f "$vendor/uPlot.iife.min.js" ] || [ "$(cat "$vstamp" 2>/dev/null)" != "$vwant" ]; then
  echo "setup: installing the dashboard's charting library (npm ci)"
  npm ci --prefix devtools/dashboard --no-audit --no-fund --loglevel=error >/dev/null
  mkdir -p "$vendor" .build
  dist=devtools/dashboard/node_modules/uplot
  cp "$dist/dist/uPlot.iife.min.js" "$dist/dist/uPlot.min.css" "$vendor/"
  cp "$dist/LICENSE" "$vendor/uPlot.LICENSE"
  echo "$vwant" > "$vstamp"
fi
