"""Vigil: what the services share (configuration, domain model, stores, command line)."""


class VigilError(Exception):
    """Base of the errors the shared package raises on purpose."""
