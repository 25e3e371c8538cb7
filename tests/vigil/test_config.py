"""Settings come from VIGIL_* variables over a TOML file, and never show secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vigil.config import Settings, redact_url


def test_defaults_are_the_embedded_mode(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    assert settings.telemetry_store == "embedded"
    assert settings.sql_url == f"sqlite:///{tmp_path / 'data' / 'vigil.db'}"


def test_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('telemetry_store = "influxdb"\n[mqtt]\nport = 2000\nhost = "broker"\n'
                    '[influxdb]\nurl = "http://influx:8086"\npassword = "from-file"\n')
    monkeypatch.setenv("VIGIL_CONFIG", str(path))
    monkeypatch.setenv("VIGIL_MQTT__PORT", "2001")
    settings = Settings()
    assert (settings.mqtt.host, settings.mqtt.port) == ("broker", 2001)
    assert settings.telemetry_store == "influxdb"
    assert settings.influxdb.password.get_secret_value() == "from-file"


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    monkeypatch.setenv("VIGIL_INFLUXDB__TOKEN", "tok-123-secret")
    monkeypatch.setenv("VIGIL_MQTT__PASSWORD", "mqtt-secret")
    monkeypatch.setenv("VIGIL_DATABASE_URL", "postgresql+psycopg://vigil:db-secret@db/vigil")
    settings = Settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("tok-123-secret", "mqtt-secret", "db-secret"):
        assert secret not in shown
    assert redact_url(settings.sql_url) == "postgresql+psycopg://vigil:***@db/vigil"


def test_bad_values_are_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    monkeypatch.setenv("VIGIL_MQTT__PORT", "70000")
    with pytest.raises(ValidationError, match="mqtt.port"):
        Settings()


@pytest.mark.parametrize(("name", "value"), [("DB_POOL_SIZE", "0"), ("DB_MAX_OVERFLOW", "-1"),
                                           ("ADMISSION_WAIT_S", "0"), ("ADMISSION_WAIT_S", "soon")])
def test_the_api_pool_and_its_admission_are_checked(monkeypatch: pytest.MonkeyPatch, name: str,
                                                     value: str) -> None:
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    monkeypatch.setenv(f"VIGIL_API__{name}", value)
    with pytest.raises(ValidationError, match=f"api.{name.lower()}"):
        Settings()


def test_the_api_admits_a_request_per_pooled_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    monkeypatch.setenv("VIGIL_API__DB_POOL_SIZE", "8")
    monkeypatch.setenv("VIGIL_API__DB_MAX_OVERFLOW", "4")
    assert Settings().api.db_slots == 10  # the diagnosis bus's two threads keep one each
    monkeypatch.setenv("VIGIL_API__DIAGNOSIS", "false")
    assert Settings().api.db_slots == 12


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match="not a file"):
        Settings()
