#!/usr/bin/env bash
# Run one embedded dependency of the local stack (`pgsql`: PostgreSQL, FerretDB's
# backend; `mongo`: FerretDB; `redis`: Redis) and keep it running, as a service
# manager would (systemd's Restart=always): when it exits it is started again after
# RESPAWN_DELAY_S (2 s). Without this, honcho would stop the whole stack when the
# database exits, and an outage could not be watched from the app's side (/health
# goes 503, then back to 200).
# The server's name is deliberately not on this script's command line, so
# `pkill -f ferretdb` stops the server, not this loop (for PostgreSQL, whose system
# cluster may run too: `pkill -INT -f 'postgres -D .*var/postgres'`). TERM/INT
# (Ctrl-C in `make run`) stop the server and the loop for good.
# FerretDB connects to PostgreSQL lazily, on the first command, so the two can start
# in any order; while PostgreSQL is down FerretDB answers every command with an error.
set -u
cd "$(dirname "$0")/.."
stop_signal=TERM
case "${1:-}" in
  pgsql) command=(devtools/postgres.sh var/postgres "${STACK_PG_PORT}")
         stop_signal=INT ;;  # PostgreSQL's fast shutdown; TERM would wait for FerretDB to disconnect
  mongo) command=(.build/ferretdb -listen "127.0.0.1:${STACK_MONGO_PORT}" -log-level error
                  -postgresql-url "postgres://postgres@127.0.0.1:${STACK_PG_PORT}/ferretdb") ;;
  redis) command=(redis-server --bind 127.0.0.1 --port "${STACK_REDIS_PORT}" --dir var/redis
                  --save 60 1 --appendonly no --daemonize no --logfile "") ;;
  *) echo "usage: $0 pgsql|mongo|redis" >&2; exit 2 ;;
esac
delay=${RESPAWN_DELAY_S:-2}
child=0
stopping=0
stop() {
  stopping=1
  if [ "$child" -ne 0 ]; then kill -"$stop_signal" "$child" 2>/dev/null; wait "$child"; fi
  exit 0
}
trap stop TERM INT
while true; do
  "${command[@]}" &
  child=$!
  wait "$child"
  status=$?
  [ "$stopping" = 1 ] && exit 0
  echo "dependency: $1 exited ($status); starting it again in ${delay}s" >&2
  sleep "$delay" &
  wait $!
done
