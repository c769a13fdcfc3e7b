#!/usr/bin/env bash
# The local stack's one-shot start step (supervisord's `init` program): once the database
# answers, create the indexes (`flask chatbot init-db`), then start the instances, the
# sweeper and the WhatsApp queue workers. Index creation runs here only, once per start, before anything serves: made
# by every gunicorn master, collector and sweep at once while the first requests came,
# it wedged FerretDB (chatbot/db/indexes.py, docs/ferretdb.md).
#
# init-db waits up to STACK_INIT_WAIT_S (60) for the database and exits 1 saying why when
# it did not answer; supervisord then runs this again (autorestart=unexpected), so a
# database that comes up late (or is fixed by hand) still gets the instances started,
# with one clear line per minute meanwhile. The instances are not started without the
# indexes: nginx answers 503 (no instance) until then.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/flask --app wsgi chatbot init-db --wait "${STACK_INIT_WAIT_S:-60}"
# The WhatsApp queue workers too, when the channel is on (WHATSAPP_ENABLED, the default here).
programs=(app1 app2 sweeper)
[ "${WHATSAPP_ENABLED:-0}" = 1 ] && programs+=("whatsapp:*")
exec .venv/bin/supervisorctl -c devtools/supervisord.conf start "${programs[@]}"
