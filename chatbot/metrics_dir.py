"""Where an instance's metric files live, chosen before prometheus_client is imported.

prometheus_client decides when it is first imported whether its values go to the
multiprocess files in PROMETHEUS_MULTIPROC_DIR. gunicorn.conf.py therefore calls
`choose()` before it imports chatbot.metrics, in the master, and every worker (forked
from it) and the collector (started by it) inherit the choice. Without the directory
(tests, `flask run`) the figures are those of the one process.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"

# The directory `choose` picked by default (not the operator's): removed at shutdown.
own_dir = ""
# prometheus_client was already imported when the directory was chosen (a mistake the
# master logs: the workers would inherit single-process metrics).
late = False


def enabled() -> bool:
    """METRICS_ENABLED (default 1): 0 turns the metrics, the collector and alerts off."""
    return os.environ.get("METRICS_ENABLED", "1").strip() != "0"


def default_dir(instance_id: str, bind: list[str]) -> str:
    """A directory of this instance's own: its id and listening address."""
    where = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(bind))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", instance_id)
    return os.path.join(tempfile.gettempdir(), "chatbot-metrics", f"{name}-{where}")


def choose(instance_id: str, bind: list[str]) -> str:
    """Set PROMETHEUS_MULTIPROC_DIR unless the operator did; answer it ("" when off).

    An operator may set the variable (one directory per instance, never shared). Must
    run before prometheus_client is imported in this process.
    """
    global own_dir, late
    if not enabled():
        return ""
    path = os.environ.get(ENV_DIR)
    late = late or (not path and "prometheus_client" in sys.modules)
    if not path:
        path = own_dir = default_dir(instance_id, bind)
        os.environ[ENV_DIR] = path
    # prometheus_client writes there as soon as a metric is made, and not every process
    # that loads gunicorn.conf.py runs on_starting first (`gunicorn --check-config`).
    os.makedirs(path, exist_ok=True)
    return path
