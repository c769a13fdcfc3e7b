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
