"""Settings: one typed object read from ``VIGIL_*`` variables and an optional TOML file.

The defaults are the embedded mode: SQLite, the embedded telemetry store and a
broker on this machine, so nothing needs installing to start. The file is named
by ``VIGIL_CONFIG`` (default ``vigil.toml`` in the working folder, if present);
environment variables win over it. Nested values use ``__``:
``VIGIL_INFLUXDB__URL=http://influx:8086``. Passwords and tokens are
``SecretStr``: they print as ``**********``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Re-exported: printing the settings' URLs is what it is mostly for.
from vigil.net import redact_url as redact_url


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "vigil"


class MqttSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive: int = Field(30, ge=5, le=3600)
    # Mosquitto's files, which the API rewrites when device credentials change (empty:
    # the broker is managed elsewhere), the services' own password entries, and the
    # broker's pid file, to signal it to reload them.
    password_file: Path | None = None
    acl_file: Path | None = None
    service_password_file: Path | None = None
    pid_file: Path | None = None


class InfluxSettings(BaseModel):
    """InfluxDB reached through its 1.x-compatible HTTP API (InfluxDB 1.x, 2.x, 3.x)."""

    url: str = "http://127.0.0.1:8086"
    database: str = "vigil"
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0)
    batch_size: int = Field(5000, ge=1, le=100_000)
    gzip: bool = True
    retries: int = Field(5, ge=0, le=20)


class IngestSettings(BaseModel):
    """The ingest service: MQTT session, batching, limits and its HTTP endpoint.

    Workers split the devices into ``partitions``, worker ``partition`` keeping
    one share (see ``ingest/partitions.py``). ``client_id`` must be stable
    across restarts (the broker resumes the session by it) and distinct per
    worker; by default it names the partition. ``shared_group`` is for brokers
    that restore shared subscriptions after a restart (Mosquitto 2.0 does not);
    it replaces partitions. ``receive_maximum`` bounds the unacknowledged
    messages the broker sends, and so ingest's memory.
    """

    partitions: int = Field(1, ge=1, le=1024)
    partition: int = Field(0, ge=0)
    shared_group: str = ""
    client_id: str | None = None
    batch_size: int = Field(5000, ge=1)
    batch_interval_s: float = Field(0.5, gt=0)
    max_buffered_samples: int = Field(50_000, ge=1000)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    receive_maximum: int = Field(20_000, ge=10, le=65535)
    max_inbox_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    max_clock_skew_s: float = Field(300.0, ge=0)
    # Sequence numbers remembered per device below its highest, to drop repeats unwritten.
    dedup_span: int = Field(4096, ge=1, le=1 << 20)
    registry_refresh_s: float = Field(30.0, gt=0)
    last_seen_interval_s: float = Field(5.0, gt=0)
    max_backoff_s: float = Field(15.0, gt=0)
    # Dead letters kept, the newest; a broken or hostile device cannot fill the database.
    max_dead_letters: int = Field(100_000, ge=1)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535)

    @model_validator(mode="after")
    def _one_partition_each(self) -> IngestSettings:
        if self.partition >= self.partitions:
            raise ValueError(f"ingest.partition must be below ingest.partitions "
                             f"({self.partitions}), got {self.partition}")
        if self.shared_group and self.partitions > 1:
            raise ValueError("ingest.shared_group and ingest.partitions > 1 exclude each other: "
                             "workers either share a subscription or split the devices")
        return self


class ScoringSettings(BaseModel):
    """Streaming scoring: the fixed step each device model's metrics are resampled to.

    The detectors count samples and were tuned on 5-minute data, so the step is
    what gives their memory its duration: 500 samples of 5 minutes are about
    42 hours whatever the device's own sampling rate. ``settle_s`` is how long
    after a step ends it is scored, so samples still in transit arrive first.
    """

    default_step_s: int = Field(300, ge=1)
    step_s: dict[str, int] = Field(default_factory=dict)
    settle_s: int = Field(120, ge=0)
    max_steps_per_pass: int = Field(2016, ge=1)
    # A stream raises no alarm (its scores are still written) before it has scored this many
    # steps: two days at 5 minutes. A fresh baseline, a new device or one just repaired, has
    # not seen its daily cycle twice; the evaluation fleet of `vigil bench fleet` filed 88
    # tickets in its first week with the detectors' own warm-up of 150 steps only.
    alarm_after_steps: int = Field(576, ge=0)
    # Devices whose detectors a worker keeps decoded between passes, about 1.5 MB each
    # (``analytics.jobs.detector.DecodedStates``): decoding is a third of a pass's CPU. Off by
    # default; worth it where a worker's devices fit in the memory it can spare.
    decoded_states_devices: int = Field(0, ge=0)
    measurement: str = "telemetry"
    scores_measurement: str = "scores"

    def step_for(self, model: str) -> int:
        return self.step_s.get(model, self.default_step_s)


class TicketRuleSettings(BaseModel):
    """When anomaly alarms become a ticket: ``min_alarms`` on one metric within ``window_s``,
    more after an engineer cancelled the same device's ticket as a false alarm. When failure
    predictions do: ``prediction_passes`` consecutive prediction passes of a device (within
    ``prediction_lookback_days``) at ``prediction_probability`` or above."""

    min_alarms: int = Field(3, ge=1)
    window_s: int = Field(24 * 3600, ge=60)
    # After a ticket of the same device and signature was cancelled as a false alarm within
    # ``damping_days``, ``min_alarms`` and ``prediction_passes`` are multiplied by
    # ``damping_factor``.
    damping_days: float = Field(30.0, ge=0)
    damping_factor: int = Field(2, ge=1)
    prediction_probability: float = Field(0.5, gt=0, le=1)
    prediction_passes: int = Field(2, ge=1)
    prediction_lookback_days: float = Field(7.0, gt=0)


class PredictionSettings(BaseModel):
    """Failure prediction: the horizon of its probability, the history it learns from, and how
    rows are cut from each device's readings (see ``analytics.prediction.lives``)."""

    horizon_days: float = Field(7.0, gt=0)
    # Remaining life is learned up to this cap; beyond it the readings cannot tell.
    cap_days: float = Field(30.0, gt=0)
    coverage: float = Field(0.8, gt=0, lt=1)
    # A device model needs this many failures in the training data for a band of its own.
    min_failures: int = Field(3, ge=1)
    train_days: float = Field(180.0, gt=0)
    baseline_days: float = Field(3.0, gt=0)
    baseline_lag_days: float = Field(30.0, gt=0)
    # Windows of 1, 2 and 3 days: cross-validated Brier 0.0235, 0.0241, 0.0241 and AUC 0.691,
    # 0.710, 0.703 on `vigil bench prediction`'s training fleet; within noise, the shortest
    # reacts soonest.
    window_days: float = Field(1.0, gt=0)
    # The size of the noise is read over a longer window than levels and relations: 3 days
    # against 1 raised the predictable failures alarmed >= 24 h ahead from 0.70 to 0.90 on
    # `vigil bench prediction` (seeds 1/2; see ``analytics.prediction.lives.RowSettings``).
    noise_window_days: float = Field(3.0, gt=0)
    row_every_days: float = Field(1.0, gt=0)
    # Predictions older than this are removed by the retention job (each device's newest is
    # kept): a row per device every 6 h is 7 million rows a year for 5,000 devices.
    keep_days: float = Field(90.0, gt=0)

    @property
    def reading_days(self) -> float:
        """How far back the readings behind one prediction reach: its longest window."""
        return max(self.window_days, self.noise_window_days)


class JobsSettings(BaseModel):
    """`vigil jobs`: which jobs run how often, the leases that share work, the metrics port.

    A job's interval is how often it is due; a worker polls at most every
    ``poll_s`` seconds. The service desk's watchdog and notification delivery
    run at the intervals of the [desk] section. ``lease_ttl_s`` is how long a
    dead worker's devices stay claimed before another worker takes them over.
    The jobs named in ``intervals_s`` are the analytics jobs that run: setting it
    replaces the whole table, and a job left out does not run.
    """

    intervals_s: dict[str, float] = Field(
        default_factory=lambda: {"scoring": 60.0, "ticket_rules": 60.0, "retrain": 86400.0,
                                 "failure_prediction": 21600.0}
    )
    poll_s: float = Field(10.0, gt=0)
    worker_id: str | None = None
    lease_ttl_s: float = Field(120.0, ge=1)
    claim_batch: int = Field(20, ge=1)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9109, ge=0, le=65535)
    # History the retraining job learns each device model's healthy behaviour from.
    retrain_days: float = Field(30.0, gt=0)
    scoring: ScoringSettings = ScoringSettings()
    ticket_rules: TicketRuleSettings = TicketRuleSettings()
    prediction: PredictionSettings = PredictionSettings()


class DeskSettings(BaseModel):
    """The service desk: its rules file, the watchdog, and where escalations are sent.

    ``rules_file`` empty means the rules shipped with Vigil (``vigil/tickets/rules.toml``):
    priorities, categories and escalation chains. Every escalation step is posted to
    each of ``webhook_urls`` (signed with ``webhook_secret``) and e-mailed to the
    people it reaches when ``smtp_host`` is set.
    """

    rules_file: Path | None = None
    reopen_window_days: float = Field(14.0, ge=0)
    at_risk_fraction: float = Field(0.75, gt=0, lt=1)
    intake_interval_s: float = Field(10.0, gt=0)
    watchdog_interval_s: float = Field(60.0, gt=0)
    delivery_interval_s: float = Field(15.0, gt=0)
    site_group_window_minutes: float = Field(360.0, gt=0)
    site_group_min_devices: int = Field(3, ge=2)
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_secret: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_sender: str = "vigil@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # Service records are kept this many years (at least 3: a shorter setting is refused).
    retention_years: int = 3
    retention_interval_s: float = Field(24 * 3600.0, gt=0)
    maintenance_interval_s: float = Field(3600.0, gt=0)
    # Satisfaction surveys: tickets closed in the last ``survey_window_days`` get one, whose
    # link works for ``survey_valid_days``; e-mailed when ``smtp_host`` is set.
    survey_interval_s: float = Field(300.0, gt=0)
    survey_window_days: float = Field(7.0, gt=0)
    survey_valid_days: float = Field(30.0, gt=0)
    # The console's address as customers reach it, for the links in e-mails; empty means
    # the API's own ``http://host:port``.
    public_url: str | None = None

    @field_validator("retention_years")
    @classmethod
    def _at_least_three_years(cls, years: int) -> int:
        if years < 3:
            raise ValueError(f"service records are kept at least 3 years; {years} is refused")
        return years

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, url: str | None) -> str | None:
        if url and not url.startswith(("https://", "http://")):
            raise ValueError(f"public_url is an http(s) address, not {url!r}")
        return url.rstrip("/") if url else None


# The diagnosis bus's threads, one storing results and one sweeping expiries, each hold one
# pooled connection at a time, outside the requests' admission.
DIAGNOSIS_CONNECTIONS = 2


class ApiSettings(BaseModel):
    """The HTTP API, and its MQTT link for remote diagnosis.

    ``diagnosis_client_id`` must be stable across restarts and distinct per API
    process (the broker keeps results for it meanwhile); by default it is
    derived from the host name and ``port``. The broker keeps a stopped
    process's share of the results for ``diagnosis_session_expiry_s``. Without ``diagnosis`` the API
    sends no commands and records no results (an API run without a broker).

    ``db_pool_size`` and ``db_max_overflow`` size the API process's pool of database
    connections, and so how many requests use the database at once; the others wait
    for one of them up to ``admission_wait_s`` seconds, then are answered 503
    (``api/admission.py``).
    """

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    diagnosis: bool = True
    diagnosis_client_id: str | None = None
    diagnosis_sweep_s: float = Field(1.0, gt=0)
    # How long the broker keeps a stopped API process's results (see api/README.md).
    diagnosis_session_expiry_s: int = Field(120, ge=0, le=7 * 24 * 3600)
    db_pool_size: int = Field(5, ge=1, le=1000)
    db_max_overflow: int = Field(10, ge=0, le=1000)
    admission_wait_s: float = Field(5.0, gt=0, le=300)

    @property
    def db_slots(self) -> int:
        """Requests in the database at once: one per connection the pool may open, less
        those the diagnosis bus's threads (results and sweeps) may hold."""
        background = DIAGNOSIS_CONNECTIONS if self.diagnosis else 0
        return max(1, self.db_pool_size + self.db_max_overflow - background)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: SecretStr | None = None
    telemetry_store: Literal["embedded", "influxdb"] = "embedded"
    mqtt: MqttSettings = MqttSettings()
    influxdb: InfluxSettings = InfluxSettings()
    ingest: IngestSettings = IngestSettings()
    api: ApiSettings = ApiSettings()
    desk: DeskSettings = DeskSettings()
    jobs: JobsSettings = JobsSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def sql_url(self) -> str:
        """The SQL database URL, with the embedded SQLite file as default."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'vigil.db'}"

    @property
    def embedded_telemetry_path(self) -> Path:
        return self.data_dir / "telemetry.db"


def config_file() -> Path | None:
    named = os.environ.get("VIGIL_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"VIGIL_CONFIG names {path}, which is not a file")
        return path
    default = Path("vigil.toml")
    return default if default.is_file() else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
