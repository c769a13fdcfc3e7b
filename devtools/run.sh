#!/usr/bin/env bash
# Run the whole service locally in the foreground: PostgreSQL and FerretDB on it,
# Redis, two gunicorn instances and nginx, under honcho. Ctrl-C stops every process
# it started.
# Called by `make run` after `make setup`. Ports and URLs are overridable:
#   STACK_PORT (8080)  nginx, the URL to open
#   STACK_APP1_PORT (8001), STACK_APP2_PORT (8002)  the gunicorn instances
#   STACK_MONGO_PORT (27027), STACK_REDIS_PORT (6389)  the embedded FerretDB and Redis
#   STACK_PG_PORT (5442)  the embedded PostgreSQL, FerretDB's backend (data in var/postgres)
#   MONGO_URI / REDIS_URL  use an existing server instead of the embedded one
set -euo pipefail
cd "$(dirname "$0")/.."

export STACK_PORT=${STACK_PORT:-8080}
export STACK_APP1_PORT=${STACK_APP1_PORT:-8001}
export STACK_APP2_PORT=${STACK_APP2_PORT:-8002}
export STACK_MONGO_PORT=${STACK_MONGO_PORT:-27027}
export STACK_REDIS_PORT=${STACK_REDIS_PORT:-6389}
export STACK_PG_PORT=${STACK_PG_PORT:-5442}

processes=(app1 app2 sweeper nginx)
if [ -z "${MONGO_URI:-}" ]; then
  export MONGO_URI="mongodb://127.0.0.1:${STACK_MONGO_PORT}/"
  processes+=(pgsql database)
fi
if [ -z "${REDIS_URL:-}" ]; then
  export REDIS_URL="redis://127.0.0.1:${STACK_REDIS_PORT}/0"
  processes+=(cache)
fi

mkdir -p var/redis var/nginx
.venv/bin/python devtools/render_nginx.py --prefix var/nginx --listen "127.0.0.1:${STACK_PORT}" \
  --upstream "127.0.0.1:${STACK_APP1_PORT}" --upstream "127.0.0.1:${STACK_APP2_PORT}" >/dev/null

echo "chatbot: serving on http://127.0.0.1:${STACK_PORT}  (health: /health; Ctrl-C stops everything)"
echo "chatbot: MongoDB ${MONGO_URI}  Redis ${REDIS_URL}"
if [[ " ${processes[*]} " == *" pgsql "* ]]; then
  echo "chatbot: FerretDB's PostgreSQL postgres://postgres@127.0.0.1:${STACK_PG_PORT}/ferretdb (data in var/postgres)"
fi
exec .venv/bin/honcho -f Procfile start "${processes[@]}"
