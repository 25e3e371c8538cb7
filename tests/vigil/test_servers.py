"""The test servers themselves answer and can be crashed and restarted."""

from __future__ import annotations

import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import psycopg
import pytest

from vigil.servers import Mosquitto, PostgreSQL, port_open


def test_mosquitto_survives_kill_and_restart(tmp_path) -> None:
    server = Mosquitto(tmp_path).start()
    try:
        port = server.port
        server.kill()
        assert not port_open(port)
        server.start()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect(server.host, server.port)
        client.disconnect()
    finally:
        server.stop()


def test_influxdb_requires_credentials(influxdb) -> None:
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(f"{influxdb.url}/query?q=SHOW+DATABASES", timeout=5)
    assert excinfo.value.code == 401
    assert "databases" in str(influxdb.query("SHOW DATABASES"))


def test_postgresql_answers(postgresql: PostgreSQL) -> None:
    with psycopg.connect(postgresql.url().replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
