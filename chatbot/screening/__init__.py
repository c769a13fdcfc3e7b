"""The screening domain: question bank, age rules, scoring and the conversation engine.

Pure Python: nothing here imports Flask, pymongo or redis.
"""
