"""Benchmarks of the edge agent and the simulator.

They live on the server side because they start a local Mosquitto
(`vigil.servers`), and `edge_agent` must import nothing of ours.
"""

from __future__ import annotations

from pathlib import Path

from vigil.servers import Mosquitto


def open_broker(address: str, workdir: Path) -> tuple[str, int, Mosquitto | None]:
    """HOST:PORT of the broker named, or of a Mosquitto started in ``workdir`` (returned)."""
    if address:
        host, _, port = address.rpartition(":")
        return host, int(port), None
    broker = Mosquitto(workdir / "mosquitto").start()
    return broker.host, broker.port, broker
