"""URL redaction, the loopback test and the MQTT client every service builds alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config import MqttSettings
from vigil.net import is_loopback_host, is_loopback_url, mqtt_client, redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("http://admin:s3cret@influx.example:8086/x?u=a&p=b", "http://admin:***@influx.example:8086/x"),
    ("https://influx.example", "https://influx.example"),
    ("postgresql+psycopg://vigil:p@ss@db/vigil", "postgresql+psycopg://vigil:***@db/vigil"),
    ("postgresql://vigil@db/vigil?password=x", "postgresql://vigil@db/vigil"),
    ("sqlite:////var/lib/vigil/vigil.db", "sqlite:////var/lib/vigil/vigil.db"),
    ("http://h:notaport/x", "http://***"),
])
def test_redacted_urls_show_no_secret(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redaction_can_leave_the_user_out() -> None:
    url = "http://admin:s3cret@influx.example:8086/x?u=a&p=b"
    assert redact_url(url, keep_user=False) == "http://influx.example:8086/x"


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1",
                                  "[::1]", " localhost "])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["", "broker.example", "10.0.0.1", "::", "0.0.0.0",
                                  "localhost.example", "128.0.0.1"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_loopback_urls() -> None:
    assert is_loopback_url("http://127.0.0.1:8086") and is_loopback_url("http://localhost:8086")
    assert is_loopback_url("http://[::1]:8086")
    assert not is_loopback_url("https://influx.example:8086")


def test_tls_is_on_with_a_client_certificate_alone(tmp_path: Path) -> None:
    """A missing file shows that TLS was set up: paho loads the files at once."""
    mqtt_client(MqttSettings(), "t1")  # no TLS, no files read
    with pytest.raises((FileNotFoundError, OSError)):
        mqtt_client(MqttSettings(tls_cert=tmp_path / "absent.pem"), "t2")
    with pytest.raises((FileNotFoundError, OSError)):
        mqtt_client(MqttSettings(tls_ca=tmp_path / "absent.pem"), "t3")
