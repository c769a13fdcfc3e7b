"""The service's version, reported by /livez, /health and the OpenAPI document."""

__version__ = "0.1.0"
