"""Importing a module below the web loads no web framework, the package's __init__ included.

import-linter (make lint) checks the imports between modules; what it cannot see is that
Python runs chatbot/__init__.py before any chatbot.* module, so that file must not import
Flask at its top either (create_app imports it when called).
"""

import subprocess
import sys

WEB = ("flask", "flask_caching", "flask_compress", "flask_limiter", "werkzeug")
BELOW_THE_WEB = ("chatbot.chat.service", "chatbot.screening.engine", "chatbot.db.messages")


def test_the_domain_and_services_load_no_web_framework():
    code = (
        f"import sys\nimport {', '.join(BELOW_THE_WEB)}\n"
        f"print(','.join(m for m in {WEB!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
