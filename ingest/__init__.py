"""Ingest: MQTT telemetry, status and events into the stores."""


class IngestError(Exception):
    """Base of the errors ingest raises on purpose."""
