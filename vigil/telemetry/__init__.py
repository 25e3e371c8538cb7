"""Telemetry storage: one interface, an InfluxDB and an embedded implementation."""
