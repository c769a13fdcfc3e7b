# Sourced by devtools/run.sh and devtools/stackctl: the local stack's ports, paths and
# URLs, each overridable from the environment (docs/configuration.md, the local stack).
# The working directory must be the repository's root.
export STACK_ROOT=${STACK_ROOT:-$PWD}
export STACK_VAR=${STACK_VAR:-$PWD/var}
export STACK_PORT=${STACK_PORT:-8080}
export STACK_APP1_PORT=${STACK_APP1_PORT:-8001}
export STACK_APP2_PORT=${STACK_APP2_PORT:-8002}
export STACK_MONGO_PORT=${STACK_MONGO_PORT:-27027}
export STACK_REDIS_PORT=${STACK_REDIS_PORT:-6389}
export STACK_PG_PORT=${STACK_PG_PORT:-5442}
export SWEEP_INTERVAL_S=${SWEEP_INTERVAL_S:-300}
# The WhatsApp channel, on for the local stack, against the Graph API emulator
# (devtools/graph_emulator.py on STACK_GRAPH_PORT); WHATSAPP_WORKERS queue worker processes.
export STACK_GRAPH_PORT=${STACK_GRAPH_PORT:-8090}
export WHATSAPP_ENABLED=${WHATSAPP_ENABLED:-1}
export WHATSAPP_API_BASE_URL=${WHATSAPP_API_BASE_URL:-http://127.0.0.1:${STACK_GRAPH_PORT}}
export WHATSAPP_WORKERS=${WHATSAPP_WORKERS:-2}
# FerretDB's PostgreSQL pool and PostgreSQL's connections, sized from what the stack runs
# so that the pool is never exhausted (docs/ferretdb.md, "The pool arithmetic"; an
# exhausted pool wedges FerretDB v1.24.2). Threads that may talk to the database at once:
# 2 instances x WEB_CONCURRENCY workers x GUNICORN_THREADS, plus the sweeper, the two
# collectors, init and the watchdog (5), plus WHATSAPP_WORKERS queue workers x (their
# WHATSAPP_WORKER_THREADS and the requeuer). Each may hold 2 PostgreSQL connections (its
# command, and a cursor not closed yet); 10 more for people and tests (psql, a client).
# tests/harness.py's database_pool() is the same sum.
stack_workers=${WEB_CONCURRENCY:-$(nproc)}
stack_threads=$(( 2 * stack_workers * ${GUNICORN_THREADS:-16} + 5 \
  + WHATSAPP_WORKERS * (${WHATSAPP_WORKER_THREADS:-8} + 1) ))
export FERRETDB_POOL_MAX_CONNS=${FERRETDB_POOL_MAX_CONNS:-$(( 2 * stack_threads + 10 ))}
# PostgreSQL: the pool, and 10 more (its 3 reserved superuser slots, a psql).
export POSTGRES_MAX_CONNECTIONS=${POSTGRES_MAX_CONNECTIONS:-$(( FERRETDB_POOL_MAX_CONNS + 10 ))}
unset stack_workers stack_threads
# The embedded PostgreSQL + FerretDB and Redis run unless MONGO_URI / REDIS_URL name
# servers of your own (supervisord's autostart of those programs).
if [ -z "${MONGO_URI:-}" ]; then
  export MONGO_URI="mongodb://127.0.0.1:${STACK_MONGO_PORT}/" STACK_EMBEDDED_MONGO=true
else
  export STACK_EMBEDDED_MONGO=${STACK_EMBEDDED_MONGO:-false}
fi
if [ -z "${REDIS_URL:-}" ]; then
  export REDIS_URL="redis://127.0.0.1:${STACK_REDIS_PORT}/0" STACK_EMBEDDED_REDIS=true
else
  export STACK_EMBEDDED_REDIS=${STACK_EMBEDDED_REDIS:-false}
fi
export NGINX_PREFIX=${NGINX_PREFIX:-$STACK_VAR/nginx}
export STACK_SUPERVISOR_SOCKET=${STACK_SUPERVISOR_SOCKET:-$STACK_VAR/supervisor/supervisor.sock}
# The emulator runs with the channel on (supervisord's autostart takes true/false).
if [ "$WHATSAPP_ENABLED" = 1 ]; then export STACK_GRAPH_AUTOSTART=true; else export STACK_GRAPH_AUTOSTART=false; fi
