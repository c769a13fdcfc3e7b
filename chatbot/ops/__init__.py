"""Operating the stack: nginx's upstream list, the active health checker, rolling restarts.

Nothing here runs inside the app's workers: these are the tools beside it (the checker
process, `python -m chatbot.ops.restart`); none of them touches the database.
"""
