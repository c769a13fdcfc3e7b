"""The chat service: identity, message handling and persistence around the engine."""
