#!/usr/bin/env bash
# Run the whole service locally in the foreground under supervisord: PostgreSQL and
# FerretDB on it, Redis, two gunicorn instances, the sweeper, nginx and the active
# health checker (devtools/supervisord.conf). A process that exits is started again on
# its own; Ctrl-C stops every process and then supervisord.
# Called by `make run` after `make setup`. Ports, paths and URLs: devtools/stack_env.sh
#   STACK_PORT (8080)  nginx, the URL to open
#   STACK_APP1_PORT (8001), STACK_APP2_PORT (8002)  the gunicorn instances
#   STACK_MONGO_PORT (27027), STACK_REDIS_PORT (6389)  the embedded FerretDB and Redis
#   STACK_PG_PORT (5442)  the embedded PostgreSQL, FerretDB's backend (data in var/postgres)
#   STACK_VAR (var)  where data, sockets, pid files and nginx's files live
#   MONGO_URI / REDIS_URL  use an existing server instead of the embedded one
#   SECRET_KEY  signs tokens; unless set, generated once into $STACK_VAR/secret_key
#   PROXY_SECRET  nginx -> instances, so they trust its X-Forwarded-For; unless set,
#                 generated once into $STACK_VAR/proxy_secret
# While it runs: `make status`, `make restart` (rolling, no failed request),
# `devtools/stackctl restart app1 | signal HUP app1 | ...`.
# Stopping: Ctrl-C, TERM or HUP (the terminal closed) to this script stop every process,
# then supervisord, then this script. supervisord runs in a session of its own, so the
# terminal's signals reach this script only (supervisord's own HUP would mean "reload");
# it and every program it starts get a parent-death signal, so a SIGKILLed supervisord
# (or this script SIGKILLed) leaves nothing running either.
set -euo pipefail
cd "$(dirname "$0")/.."
source devtools/stack_env.sh

if [ -S "$STACK_SUPERVISOR_SOCKET" ] && .venv/bin/supervisorctl -s "unix://$STACK_SUPERVISOR_SOCKET" pid >/dev/null 2>&1; then
  echo "chatbot: a stack already runs from $STACK_VAR (devtools/stackctl status)" >&2
  exit 1
fi
# What an earlier run left (by STACK_VAR: pid files, environments, command lines) is
# stopped and named; a port held by anybody else is a one-line error.
.venv/bin/python devtools/stack_guard.py
mkdir -p "$STACK_VAR/redis" "$STACK_VAR/run" "$STACK_VAR/supervisor" "$NGINX_PREFIX"
# SECRET_KEY and PROXY_SECRET, unless set: random ones generated once into $STACK_VAR (0600).
source devtools/secret_key.sh
# Every instance back in rotation: the checker takes failing ones out again.
.venv/bin/python devtools/render_nginx.py --prefix "$NGINX_PREFIX" --listen "127.0.0.1:${STACK_PORT}" \
  --upstream "app1=127.0.0.1:${STACK_APP1_PORT}" --upstream "app2=127.0.0.1:${STACK_APP2_PORT}" >/dev/null

echo "chatbot: serving on http://127.0.0.1:${STACK_PORT}  (health: /health; Ctrl-C stops everything)"
echo "chatbot: MongoDB ${MONGO_URI}  Redis ${REDIS_URL}"
if [ "$STACK_EMBEDDED_MONGO" = true ]; then
  echo "chatbot: FerretDB's PostgreSQL postgres://postgres@127.0.0.1:${STACK_PG_PORT}/ferretdb (data in $STACK_VAR/postgres)"
fi
echo "chatbot: processes: devtools/stackctl status; rolling restart: make restart"
setsid setpriv --pdeathsig TERM -- .venv/bin/supervisord -c devtools/supervisord.conf &
supervisor=$!
stop() {
  trap '' INT TERM HUP
  echo "chatbot: stopping (signal $1)" >&2
  kill -TERM "$supervisor" 2>/dev/null || true
}
trap 'stop INT' INT
trap 'stop TERM' TERM
trap 'stop HUP' HUP
# wait returns early when a trapped signal arrives: wait again until supervisord is gone.
status=0
while kill -0 "$supervisor" 2>/dev/null; do
  wait "$supervisor" && status=0 || status=$?
done
exit "$status"
