#!/usr/bin/env bash
# Run a PostgreSQL cluster of the stack's own in the foreground: the backend of the
# dev/test FerretDB. Used by `make run` (supervisord's `pgsql` program) and by the
# test harness (tests/harness.py).
#
#   devtools/postgres.sh DATA_DIR PORT [--throwaway]
#
# - DATA_DIR is the cluster's data directory (var/postgres for `make run`). The first
#   run creates it with initdb, then creates the database `ferretdb`; later runs reuse it.
# - Listens on 127.0.0.1:PORT only (no Unix socket); the superuser `postgres` is
#   trusted on loopback without a password:
#       postgres://postgres@127.0.0.1:PORT/ferretdb
#   (`psql -h 127.0.0.1 -p PORT -U postgres ferretdb` to look inside).
# - POSTGRES_MAX_CONNECTIONS (100): PostgreSQL's max_connections; more than FerretDB's
#   pool_max_conns (devtools/stack_env.sh sizes both, docs/ferretdb.md).
# - --throwaway: a cluster whose data may be lost (tests, benchmarks): no fsync at all.
# - The server is exec'd, so signals reach it directly: INT is a fast shutdown
#   (clients disconnected), TERM a "smart" one (it waits for clients to leave).
# - As root, initdb and postgres (which refuse root) run as the `postgres` system
#   user, which must be able to reach DATA_DIR (every parent directory traversable).
# - POSTGRES_PDEATHSIG (unset): a signal name (INT) the server gets when this script's
#   parent dies (make run's supervisord), so a killed supervisor leaves no postmaster.
#   Given to the exec'ing setpriv, after its --reuid: a change of user clears one set before.
# Debian's `postgresql` package (installed by devtools/setup.sh) provides the programs;
# its system cluster on 5432, if running, is not touched.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ] || { [ $# = 3 ] && [ "$3" != --throwaway ]; }; then
  echo "usage: $0 DATA_DIR PORT [--throwaway]" >&2
  exit 2
fi
dir=$(realpath -m "$1")
port=$2
throwaway=0; [ "${3:-}" = --throwaway ] && throwaway=1

# The programs of the version that made the cluster, else of the newest installed.
bin=""
if [ -f "$dir/PG_VERSION" ]; then
  bin=/usr/lib/postgresql/$(cat "$dir/PG_VERSION")/bin
  [ -x "$bin/postgres" ] || { echo "postgres.sh: $dir was made by PostgreSQL $(cat "$dir/PG_VERSION"), which is not installed" >&2; exit 1; }
else
  for candidate in /usr/lib/postgresql/*/bin; do
    [ -x "$candidate/initdb" ] || continue
    if [ -z "$bin" ] || [ "${candidate//[^0-9]/}" -gt "${bin//[^0-9]/}" ]; then bin=$candidate; fi
  done
  [ -n "$bin" ] || { echo "postgres.sh: PostgreSQL is not installed (run devtools/setup.sh)" >&2; exit 1; }
fi

mkdir -p "$dir"
as_postgres=()   # one-shot commands
exec_postgres=() # the server
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$dir"
  as_postgres=(runuser -u postgres --)
  # Not runuser for the server: runuser stays as the parent, answers a TERM or INT by
  # sending TERM to its child and SIGKILLs it 2 s later, whether it has stopped or not.
  # setpriv execs, so the server is this process and gets the signals itself.
  exec_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
  if ! runuser -u postgres -- test -w "$dir"; then
    echo "postgres.sh: the postgres user cannot reach $dir; put the data directory where every parent directory is traversable (o+x)" >&2
    exit 1
  fi
fi
chmod 700 "$dir"

if [ ! -f "$dir/PG_VERSION" ]; then
  started=$(date +%s.%N)
  sync_flag=(); [ "$throwaway" = 1 ] && sync_flag=(--no-sync)
  # C collation: bytewise string order, as MongoDB compares strings; UTF8, which FerretDB requires.
  "${as_postgres[@]}" "$bin/initdb" -D "$dir" -U postgres -E UTF8 --locale=C --auth=trust \
    "${sync_flag[@]}" --no-instructions >/dev/null
  # Loopback TCP only; no passwords on a developer machine.
  cat >"$dir/pg_hba.conf" <<'EOF'
# devtools/postgres.sh: the superuser over loopback TCP, without a password.
host all all 127.0.0.1/32 trust
EOF
  echo "postgres.sh: created the cluster in $dir ($(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $started}") s)" >&2
fi
if [ ! -f "$dir/ferretdb.created" ]; then
  # Single-user mode: no server and no socket needed. Done once, the marker says so
  # (were it interrupted before the marker, the rerun's "already exists" is harmless).
  echo "CREATE DATABASE ferretdb" \
    | "${as_postgres[@]}" "$bin/postgres" --single -D "$dir" -c unix_socket_directories= \
        -c log_min_messages=warning -c log_checkpoints=off template1 >/dev/null
  "${as_postgres[@]}" touch "$dir/ferretdb.created"
fi

settings=(
  -c listen_addresses=127.0.0.1 -c port="$port"
  -c unix_socket_directories=  # TCP only: nothing outside DATA_DIR, no clash with the system cluster
  -c max_connections="${POSTGRES_MAX_CONNECTIONS:-100}"  # above FerretDB's pool_max_conns
  -c shared_buffers=32MB       # dev data is small; Debian's default is 128MB
  -c log_checkpoints=off
  # synchronous_commit stays on (PostgreSQL's default): a commit returns once its WAL is
  # written. Off, a commit returns while its WAL is still in shared memory, and killing
  # the server (SIGKILL, the OOM killer) loses the last ~0.6 s of commits the app had
  # already answered for: measured, one accepted chat message of 14 lost in the
  # PostgreSQL SIGKILL failover run (tests/e2e/test_failover.py).
)
if [ "$throwaway" = 1 ]; then
  # Nothing worth keeping past a crash of the machine: no fsync, no torn-page protection.
  # A killed server still loses nothing: its commits were written to the kernel.
  settings+=(-c fsync=off -c full_page_writes=off)
fi
if [ -n "${POSTGRES_PDEATHSIG:-}" ]; then
  # setpriv sets it after changing the user (util-linux 2.38), so it survives --reuid.
  [ ${#exec_postgres[@]} -gt 0 ] || exec_postgres=(setpriv)
  exec_postgres+=(--pdeathsig "$POSTGRES_PDEATHSIG" --)
fi
exec "${exec_postgres[@]}" "$bin/postgres" -D "$dir" "${settings[@]}"
