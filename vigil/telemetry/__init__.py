"""Telemetry storage: one interface, an InfluxDB and an embedded implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vigil.config import Settings
    from vigil.telemetry.store import TelemetryStore


def open_store(settings: Settings) -> TelemetryStore:
    """The telemetry store the settings choose: ``influxdb`` or the ``embedded`` file."""
    if settings.telemetry_store == "influxdb":
        from vigil.telemetry.influx import InfluxStore

        return InfluxStore.from_settings(settings.influxdb)
    from vigil.telemetry.embedded import EmbeddedStore

    return EmbeddedStore(settings.embedded_telemetry_path)
