"""InfluxStore against the real InfluxDB: authentication, database creation, retries and faults.

Faults are real: a port nobody listens on, an InfluxDB that is stopped and
started again, and a small proxy in front of the real server that answers
429/503 for a while, as a loaded InfluxDB or a gateway would.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest

from tests.telemetry.conftest import influx_store
from vigil.servers import InfluxDB, free_port
from vigil.telemetry.influx import InfluxStore
from vigil.telemetry.store import Point, StoreUnavailable

pytestmark = pytest.mark.servers

T0 = 1_700_000_000_000
PASSWORD = "pa55-w0rd-never-printed"


def points(n: int, device: str = "pump-1") -> list[Point]:
    return [Point(device, T0 + i * 1000, {"temp": float(i)}, site="ward 3") for i in range(n)]


def count(server: InfluxDB, database: str) -> int:
    body = server.query('SELECT count("temp") FROM "telemetry"', db=database)
    series = body["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


class FaultyProxy:
    """Forwards to InfluxDB, answering the first ``failures`` requests with ``status``."""

    def __init__(self, upstream: str, failures: int = 0, status: int = 429,
                 retry_after: str | None = "1") -> None:
        self.failures = failures
        self.status = status
        self.retry_after = retry_after
        self.requests: list[tuple[str, str, str | None]] = []
        self.times: list[float] = []
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path, self.headers.get("Authorization")))
                proxy.times.append(time.monotonic())
                if proxy.failures > 0:
                    proxy.failures -= 1
                    self.send_response(proxy.status)
                    if proxy.retry_after is not None:
                        self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection",
                                           "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def own_influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """An InfluxDB of this module's own, which tests may stop and start."""
    from tests.conftest import start_or_skip

    server = InfluxDB(tmp_path_factory.mktemp("influxdb-faults"))
    start_or_skip(server)
    yield server
    server.stop()


def test_basic_auth_reads_and_writes(influxdb: InfluxDB, influx_database: str) -> None:
    with influx_store(influxdb, influx_database) as store:
        store.ping()
        assert store.write(points(10)) == 10
    assert count(influxdb, influx_database) == 10


def test_a_wrong_password_is_a_clear_error_without_the_password(influxdb: InfluxDB,
                                                                influx_database: str) -> None:
    with influx_store(influxdb, influx_database, password=PASSWORD) as store:
        for call in (store.ping, lambda: store.write(points(3)), store.devices,
                     lambda: store.query("pump-1", T0, T0 + 1000)):
            with pytest.raises(StoreUnavailable,
                               match="refused the credentials of user 'vigil-admin'") as err:
                call()
            assert PASSWORD not in str(err.value)
    assert count(influxdb, influx_database) == 0


def test_a_token_is_sent_as_such_and_never_printed(
    influxdb: InfluxDB, influx_database: str
) -> None:
    token = "tok-" + uuid.uuid4().hex
    with FaultyProxy(influxdb.url) as proxy, InfluxStore(proxy.url, influx_database, token=token,
                                                       retries=0) as store:
        with pytest.raises(StoreUnavailable, match="refused the credentials of the token") as err:
            store.write(points(1))
        assert token not in str(err.value)
    assert proxy.requests[0][2] == f"Token {token}"


def test_a_dead_port_raises_store_unavailable_after_the_retries(tmp_path: Path) -> None:
    url = f"http://admin:{PASSWORD}@127.0.0.1:{free_port()}"
    store = InfluxStore(url, "vigil", username="admin", password=PASSWORD, retries=3, backoff_s=0.1)
    started = time.monotonic()
    with store, pytest.raises(StoreUnavailable) as err:
        store.write(points(5))
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert "could not be reached after 4 tries" in message and "connection failed" in message
    assert PASSWORD not in message and "admin:" not in message
    assert 0.1 + 0.2 + 0.4 <= elapsed < 30
    with pytest.raises(StoreUnavailable, match="could not be reached"):
        InfluxStore(url, "vigil", retries=0).query("pump-1", T0, T0 + 1000)


def test_a_write_survives_influxdb_stopping_and_starting_again(own_influxdb: InfluxDB) -> None:
    database = own_influxdb.create_database("restarts")
    store = influx_store(own_influxdb, database, retries=8, backoff_s=0.25, timeout_s=5.0)
    with store:
        store.write(points(10))
        own_influxdb.stop()
        restarter = threading.Timer(2.0, own_influxdb.start)
        restarter.start()
        try:
            started = time.monotonic()
            assert store.write(points(100, "pump-2")) == 100
            assert time.monotonic() - started >= 1.0
        finally:
            restarter.join()
        assert len(store.query("pump-2", T0, T0 + 1_000_000)) == 100
        assert len(store.query("pump-1", T0, T0 + 1_000_000)) == 10


@pytest.mark.parametrize(("status", "retry_after"), [(429, "1"), (503, None), (502, "0")])
def test_throttling_and_gateway_errors_are_retried(influxdb: InfluxDB, influx_database: str,
                                                   status: int, retry_after: str | None) -> None:
    with FaultyProxy(influxdb.url, failures=2, status=status, retry_after=retry_after) as proxy:
        with influx_store(influxdb, influx_database, retries=3, backoff_s=0.1) as store:
            store.url = proxy.url
            assert store.write(points(20)) == 20
    writes = [t for (_method, path, _), t in zip(proxy.requests, proxy.times, strict=True)
              if path.startswith("/write")]
    assert len(writes) == 3
    if retry_after == "1":
        assert writes[1] - writes[0] >= 0.9 and writes[2] - writes[1] >= 0.9
    assert count(influxdb, influx_database) == 20


def test_throttling_past_the_last_try_is_reported(influxdb: InfluxDB, influx_database: str) -> None:
    with FaultyProxy(influxdb.url, failures=10, status=429, retry_after="0") as proxy:
        with influx_store(influxdb, influx_database, retries=2, backoff_s=0.05) as store:
            store.url = proxy.url
            with pytest.raises(StoreUnavailable, match="after 3 tries: HTTP 429"):
                store.write(points(5))
    assert len(proxy.requests) == 3
    assert count(influxdb, influx_database) == 0


def test_refusals_are_not_retried(influxdb: InfluxDB, influx_database: str) -> None:
    with FaultyProxy(influxdb.url) as proxy:
        with influx_store(influxdb, influx_database, password="wrong", retries=5) as store:
            store.url = proxy.url
            with pytest.raises(StoreUnavailable, match="credentials"):
                store.write(points(5))
    assert len(proxy.requests) == 1


def test_a_missing_database_is_created_when_allowed(influxdb: InfluxDB) -> None:
    name = f"created_{uuid.uuid4().hex[:8]}"
    try:
        with influx_store(influxdb, name) as store:
            store.write(points(3))
            assert store.devices() == ["pump-1"]
        with influx_store(influxdb, name + "_ping") as store:
            store.ping()
        assert name + "_ping" in str(influxdb.query("SHOW DATABASES"))
    finally:
        influxdb.query(f'DROP DATABASE "{name}"')
        influxdb.query(f'DROP DATABASE "{name}_ping"')


def test_a_user_without_rights_gets_clear_errors(influxdb: InfluxDB, influx_database: str) -> None:
    user = f"reader_{uuid.uuid4().hex[:8]}"
    influxdb.query(f"CREATE USER \"{user}\" WITH PASSWORD '{PASSWORD}'")
    try:
        missing = f"missing_{uuid.uuid4().hex[:8]}"
        with influx_store(influxdb, missing, username=user, password=PASSWORD) as store:
            with pytest.raises(StoreUnavailable,
                               match=f"user '{user}' is not allowed to query") as err:
                store.ping()
            assert PASSWORD not in str(err.value)
            with pytest.raises(StoreUnavailable, match=f"user '{user}' is not allowed"):
                store.write(points(2))
        with influx_store(influxdb, influx_database, username=user, password=PASSWORD) as store:
            with pytest.raises(StoreUnavailable, match="not allowed to query"):
                store.ping()
            influxdb.query(f'GRANT READ ON "{influx_database}" TO "{user}"')
            store.ping()
            with pytest.raises(StoreUnavailable, match="not allowed to write"):
                store.write(points(2))
    finally:
        influxdb.query(f'DROP USER "{user}"')
    assert count(influxdb, influx_database) == 0


@pytest.mark.parametrize("gzip_body", [True, False])
def test_large_writes_go_out_in_concurrent_batches(influxdb: InfluxDB, influx_database: str,
                                                   gzip_body: bool) -> None:
    batch = [Point(f"pump-{i % 37}", T0 + i * 10, {"temp": float(i), "load": i / 3})
             for i in range(23_456)]
    with influx_store(influxdb, influx_database, batch_size=1000, concurrency=3,
                      gzip_body=gzip_body) as store:
        assert store.write(batch) == len(batch)
        assert len(store.devices()) == 37
        frame = store.query("pump-5", T0, T0 + 1_000_000)
    assert count(influxdb, influx_database) == len(batch)
    assert frame["temp"].tolist() == [float(i) for i in range(5, 23_456, 37)]


def test_json_answers_are_read_when_csv_is_not_offered(
    influxdb: InfluxDB, influx_database: str
) -> None:
    """Servers that ignore ``Accept: application/csv`` answer chunked JSON; the store reads it."""
    with influx_store(influxdb, influx_database) as store:
        store.write(points(25_000))
        expected = store.query("pump-1", T0, T0 + 100_000_000)
        original = store._query

        def json_only(statement: str, **kwargs: object) -> object:
            kwargs["accept"] = "application/json"
            return original(statement, **kwargs)  # type: ignore[arg-type]

        store._query = json_only  # type: ignore[method-assign]
        answered = store.query("pump-1", T0, T0 + 100_000_000)
        assert store.query("pump-1", T0 - 10_000, T0).empty
    assert len(answered) == 25_000
    pd.testing.assert_frame_equal(answered, expected)


def test_long_raw_range_read_in_parallel_parts_equals_one_read(
    influxdb: InfluxDB, influx_database: str
) -> None:
    """A metric that appears only late and a gap at a part's edge come out as in one query."""
    hour = 3_600_000
    early = [Point("pump-1", T0 + i * 60_000, {"temp": float(i)}) for i in range(0, 360, 7)]
    late = [Point("pump-1", T0 + 9 * hour + i * 60_000, {"temp": -float(i), "flow": float(i)})
            for i in range(0, 180, 5)]
    with influx_store(influxdb, influx_database) as store:
        store.write(early + late)
    end = T0 + 12 * hour
    with influx_store(influxdb, influx_database, read_parts=1) as one, \
            influx_store(influxdb, influx_database, read_parts=3) as three:
        whole = one.query("pump-1", T0, end)
        parts = three.query("pump-1", T0, end)
        chosen = three.query("pump-1", T0, end, metrics=["flow", "temp"])
    assert len(whole) == len(early) + len(late)
    assert list(whole.columns) == ["flow", "temp"]
    pd.testing.assert_frame_equal(parts, whole)
    pd.testing.assert_frame_equal(chosen, whole[["flow", "temp"]])
    assert whole["flow"].isna().sum() == len(early)
