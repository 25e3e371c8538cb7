"""The telemetry store on InfluxDB, through its 1.x-compatible HTTP API only.

Writes are line protocol POSTed to ``/write`` with ``precision=ns``; reads are
InfluxQL from ``/query`` with ``epoch=ms``. InfluxDB 1.x serves both natively,
2.x through its DBRP mapping and 3.x through its v1 compatibility API, so one
client path reaches every generation a customer may run.

Line protocol comes from the QuestDB client's ``Buffer``: QuestDB ingests the
InfluxDB line protocol, and its client serialises it in compiled code, 2 to 4 µs
a line where influxdb-client's fastest serialiser (its DataFrame one) takes
about 16 µs in Python, which was the write path's limit. Only its first
protocol version is used, the plain-text InfluxDB line protocol; all values are
written as floats, names are already restricted to what both servers accept.

Batches are posted by a small thread pool, because serialising and posting then
overlap while InfluxDB works on another core. Bodies are gzip-compressed for a
remote server; to one on this machine they go plain, since compressing there
only spends CPU on both ends of the same machine (a third of the write rate in
``vigil bench store``). Writes are idempotent (a point is identified by series
and time), so a failed POST is simply sent again: on connection errors, 5xx and
429 (honouring ``Retry-After``) with exponential backoff. Query results come
back as CSV (``Accept: application/csv``), which pandas parses in C; JSON is
understood too.
Error messages name the server and the user but never the password or token.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import requests
from questdb.ingress import Buffer, TimestampNanos
from requests.adapters import HTTPAdapter

from vigil.net import is_loopback_url, redact_url
from vigil.telemetry import influxql
from vigil.telemetry.batch import (
    check_device,
    check_metrics,
    latest_frame,
    result_frame,
    validate_batch,
)
from vigil.telemetry.store import (
    DEFAULT_MEASUREMENT,
    Aggregate,
    Point,
    StoreUnavailable,
    TelemetryError,
    TelemetryStore,
    WriteRefused,
    validate_interval,
    validate_measurement,
    validate_range,
)

if TYPE_CHECKING:
    from vigil.config import InfluxSettings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 60.0
QUERY_CHUNK_ROWS = 10_000
# Raw (not downsampled) queries over at least this range are split into parallel parts.
SPLIT_MIN_RANGE_MS = 6 * 3600 * 1000
MAX_GET_STATEMENT = 4000


class InfluxStore(TelemetryStore):
    """Telemetry in an InfluxDB database (1.x, 2.x with DBRP mapping, 3.x).

    ``gzip_body``: True or False forces compression of write bodies on or off;
    None compresses unless the server is on this machine.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        retention_policy: str | None = None,
        timeout_s: float = 10.0,
        batch_size: int = 5000,
        gzip_body: bool | None = None,
        retries: int = 5,
        backoff_s: float = 0.5,
        concurrency: int = 2,
        read_parts: int = 2,
        create_database: bool = True,
    ) -> None:
        if not database:
            raise TelemetryError("InfluxDB database name is empty")
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy or None
        self.username = username
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.gzip_body = not is_loopback_url(self.url) if gzip_body is None else gzip_body
        self.retries = retries
        self.backoff_s = backoff_s
        self.create_database = create_database
        self._secrets = [s for s in (password, token) if s]
        self._where = f"InfluxDB at {redact_url(self.url, keep_user=False)}"
        self._session = requests.Session()
        self._session.trust_env = False
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(4, concurrency + 2),
                              max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        if token:
            self._session.headers["Authorization"] = f"Token {token}"
        elif username is not None:
            self._session.auth = (username, password or "")
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency),
                                        thread_name_prefix="influx-write")
        self._concurrency = max(1, concurrency)
        self.read_parts = max(1, read_parts)
        self._read_pool = ThreadPoolExecutor(max_workers=self.read_parts,
                                             thread_name_prefix="influx-read")
        self._database_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: InfluxSettings) -> InfluxStore:
        return cls(
            settings.url,
            settings.database,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            token=settings.token.get_secret_value() if settings.token else None,
            retention_policy=settings.retention_policy,
            timeout_s=settings.timeout_s,
            batch_size=settings.batch_size,
            gzip_body=None if settings.gzip else False,
            retries=settings.retries,
        )

    # -- writing -----------------------------------------------------------

    def write(self, points: Iterable[Point]) -> int:
        """Store the points; on StoreUnavailable part may be stored, and rewriting is harmless."""
        batch = validate_batch(points)
        if not batch:
            return 0
        pending: list[Future[None]] = []
        try:
            for start in range(0, len(batch), self.batch_size):
                body = self.serialise(batch[start:start + self.batch_size])
                while len(pending) >= self._concurrency * 2:
                    pending.pop(0).result()
                pending.append(self._pool.submit(self.post_lines, body))
            for future in pending:
                future.result()
        finally:
            for future in pending:
                future.cancel()
        return len(batch)

    @staticmethod
    def serialise(points: Sequence[Point]) -> bytes:
        """Line protocol for the points, one line each, timestamps in nanoseconds."""
        buffer = Buffer(protocol_version=1, init_buf_size=256 * len(points) + 1024)
        for p in points:
            tags = {"device": p.device}
            if p.model:
                tags["model"] = p.model
            if p.site:
                tags["site"] = p.site
            if p.extra_tags:
                tags.update((k, v) for k, v in p.extra_tags.items() if v)
            metrics = p.metrics
            for value in metrics.values():
                if type(value) is not float:
                    # An int would be written as an integer field, and InfluxDB
                    # refuses a field whose type changes between writes.
                    metrics = {name: float(v) for name, v in metrics.items()}
                    break
            buffer.row(p.measurement, symbols=tags, columns=metrics,
                       at=TimestampNanos(p.ts * 1_000_000))
        return bytes(buffer)

    def post_lines(self, body: bytes) -> None:
        """POST line protocol as it is (one request, with retries): for ``write`` and benchmarks."""
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_body:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        response = self._request("POST", "/write", params=params, data=body, headers=headers)
        if response.status_code == 404 and "database not found" in response.text:
            self._ensure_database()
            response = self._request("POST", "/write", params=params, data=body, headers=headers)
        if response.status_code != 204:
            raise self._refused("write", response)

    # -- reading -----------------------------------------------------------

    def query(
        self,
        device: str,
        start: datetime | int,
        end: datetime | int,
        *,
        metrics: Sequence[str] | None = None,
        interval: timedelta | None = None,
        aggregate: Aggregate = "mean",
        measurement: str = DEFAULT_MEASUREMENT,
    ) -> pd.DataFrame:
        check_device(device)
        start_ms, end_ms = validate_range(start, end)
        interval_ms = validate_interval(interval, aggregate)
        validate_measurement(measurement)
        names = check_metrics(metrics)
        edges = [start_ms, end_ms]
        if interval_ms is None and end_ms - start_ms >= SPLIT_MIN_RANGE_MS:
            # InfluxDB answers one query on one core: long raw ranges go as parts in parallel.
            span = end_ms - start_ms
            edges = [start_ms + span * k // self.read_parts for k in range(self.read_parts + 1)]
        statements = [influxql.select_range(measurement, device, a, b, names, interval_ms,
                                            aggregate, self.retention_policy)
                      for a, b in zip(edges, edges[1:], strict=False)]
        times, columns = _concatenate(list(self._read_pool.map(self._select_csv, statements)))
        if interval_ms is not None and not names:
            prefix = f"{aggregate}_"
            columns = {k[len(prefix):] if k.startswith(prefix) else k: v
                       for k, v in columns.items()}
        if times is None:
            return result_frame(np.empty(0, dtype="int64"), {}, names)
        return result_frame(times, columns, names)

    def latest(
        self, devices: Sequence[str] | None = None, *, measurement: str = DEFAULT_MEASUREMENT
    ) -> pd.DataFrame:
        validate_measurement(measurement)
        if devices is not None:
            devices = [check_device(d) for d in devices]
            if not devices:
                return latest_frame({})
        results = self._query_json(
            influxql.select_latest(measurement, devices, self.retention_policy))
        values: dict[str, dict[str, float]] = {}
        for series in results[0].get("series", []):
            device = series.get("tags", {}).get("device", "")
            row = series["values"][0]
            values[device] = {
                col[len("last_"):]: val for col, val in zip(series["columns"], row, strict=False)
                if col.startswith("last_") and val is not None
            }
        rows: dict[str, tuple[int, dict[str, float]]] = {}
        for series in results[1].get("series", []):
            device = series.get("tags", {}).get("device", "")
            if device in values:
                rows[device] = (int(series["values"][0][0]), values[device])
        return latest_frame(rows)

    def devices(self, *, measurement: str = DEFAULT_MEASUREMENT) -> list[str]:
        validate_measurement(measurement)
        results = self._query_json(influxql.show_devices(measurement))
        found = {row[1] for series in results[0].get("series", []) for row in series["values"]}
        return sorted(found)

    def metrics(
        self, device: str | None = None, *, measurement: str = DEFAULT_MEASUREMENT
    ) -> list[str]:
        validate_measurement(measurement)
        if device is not None:
            frame = self.latest([device], measurement=measurement)
            if frame.empty:
                return []
            row = frame.iloc[0].drop("time")
            return sorted(str(name) for name in row.index[row.notna()])
        results = self._query_json(influxql.show_fields(measurement))
        return sorted({row[0] for series in results[0].get("series", [])
                       for row in series["values"]})

    def ping(self) -> None:
        response = self._request("GET", "/ping")
        if response.status_code not in (200, 204):
            raise self._refused("ping", response)
        self._ensure_database()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)
        self._session.close()

    # -- HTTP --------------------------------------------------------------

    def _select_csv(self, statement: str) -> tuple[Any, dict[str, Any]]:
        """Times and columns of a one-series SELECT; (None, {}) when nothing matched."""
        response = self._query(statement, accept="application/csv", chunked=True)
        content_type = response.headers.get("Content-Type", "")
        if "json" in content_type:
            return self._json_columns(response)
        content = response.content
        if not content.strip():
            return None, {}
        # A chunked answer whose columns change repeats the header: read each block.
        blocks = [content] if content.count(b"\nname,tags,") == 0 else [
            b"name,tags," + block if i else block
            for i, block in enumerate(content.split(b"\nname,tags,"))
        ]
        frames = [pd.read_csv(io.BytesIO(block), engine="c",
                              usecols=lambda c: c not in ("name", "tags")) for block in blocks]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        if list(frame.columns) == ["error"]:
            raise StoreUnavailable(
                f"{self._where} refused a query: {self._scrub(frame['error'].iloc[0])}")
        times = frame.pop("time").to_numpy(dtype="int64")
        return times, {str(c): frame[c].to_numpy() for c in frame.columns}

    def _json_columns(self, response: requests.Response) -> tuple[Any, dict[str, Any]]:
        """A server that answers JSON instead of CSV: chunked, that is one document per line."""
        rows: list[list[Any]] = []
        columns: list[str] = []
        for line in response.content.splitlines():
            if not line.strip():
                continue
            try:
                body = json.loads(line)
            except ValueError as exc:
                raise StoreUnavailable(f"{self._where} answered a query with invalid JSON") from exc
            for result in body.get("results", []) or [body]:
                if "error" in result:
                    raise StoreUnavailable(f"{self._where} refused a query: "
                                           f"{self._scrub(result['error'])}")
                for series in result.get("series", []):
                    if columns and series["columns"] != columns:
                        raise StoreUnavailable(f"{self._where} answered with changing columns")
                    columns = series["columns"]
                    rows.extend(series["values"])
        if not rows:
            return None, {}
        times = np.array([row[0] for row in rows], dtype="int64")
        data = {col: np.array([np.nan if row[i] is None else row[i] for row in rows],
                              dtype="float64")
                for i, col in enumerate(columns) if col != "time"}
        return times, data

    def _query_json(self, statement: str) -> list[dict[str, Any]]:
        return self._results(self._query(statement), statement)

    def _query(self, statement: str, *, accept: str = "application/json", chunked: bool = False,
               method: str = "GET", database: bool = True) -> requests.Response:
        params = {"q": statement, "epoch": "ms"}
        if chunked:
            params.update(chunked="true", chunk_size=str(QUERY_CHUNK_ROWS))
        # InfluxDB compresses answers on its query path: for a day of 1 Hz data that
        # costs more than the query itself, so ask for plain bytes.
        headers = {"Accept": accept, "Accept-Encoding": "identity"}
        if database:
            params["db"] = self.database
            if self.retention_policy:
                params["rp"] = self.retention_policy
        # A long statement (latest() of many devices) goes in the body, not the URL.
        if method == "POST" or len(statement) > MAX_GET_STATEMENT:
            response = self._request("POST", "/query", data=params, headers=headers)
        else:
            response = self._request("GET", "/query", params=params, headers=headers)
        if response.status_code != 200:
            raise self._refused("query", response)
        return response

    def _results(self, response: requests.Response, statement: str) -> list[dict[str, Any]]:
        try:
            body = response.json()
        except ValueError as exc:
            raise StoreUnavailable(f"{self._where} answered a query with invalid JSON") from exc
        if "error" in body:
            raise StoreUnavailable(f"{self._where} refused a query: {self._scrub(body['error'])}")
        results = body.get("results", [])
        for result in results:
            if "error" in result:
                raise StoreUnavailable(
                    f"{self._where} refused a query: {self._scrub(result['error'])}")
        return results

    def _ensure_database(self) -> None:
        """Check that the credentials can read the database; create it if missing and allowed.

        ``SHOW RETENTION POLICIES`` is what tells a missing database from an empty
        one on InfluxDB 1.x; a server that does not know the statement is asked
        for its measurements instead.
        """
        error = self._statement_error("SHOW RETENTION POLICIES")
        if error is None:
            return
        if "database not found" not in error:
            fallback = self._statement_error("SHOW MEASUREMENTS LIMIT 1")
            if fallback is None:
                return
            raise StoreUnavailable(f"{self._where} refused to read database "
                                   f"{self.database!r}: {self._scrub(fallback)}")
        if not self.create_database:
            raise StoreUnavailable(f"{self._where} has no database {self.database!r}")
        with self._database_lock:
            create = f"CREATE DATABASE {influxql.quote_ident(self.database)}"
            try:
                result = self._query(create, method="POST", database=False)
            except StoreUnavailable as exc:
                raise StoreUnavailable(f"{self._where} has no database {self.database!r} and this "
                                       f"user may not create it: {exc}") from None
            errors = [r["error"] for r in result.json().get("results", []) if "error" in r]
            if errors:
                raise StoreUnavailable(f"{self._where} has no database {self.database!r} and "
                                       f"could not create it: {self._scrub(errors[0])}")

    def _statement_error(self, statement: str) -> str | None:
        body = self._query(statement).json()
        errors = [r["error"] for r in body.get("results", []) if "error" in r]
        if "error" in body:
            errors.insert(0, body["error"])
        return str(errors[0]) if errors else None

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One HTTP request, repeated with backoff on connection errors, 5xx and 429."""
        attempts = self.retries + 1
        last_problem = ""
        for attempt in range(attempts):
            delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** attempt)
            try:
                response = self._session.request(method, self.url + path,
                                                  timeout=self.timeout_s, **kwargs)
            except requests.RequestException as exc:
                last_problem = _describe(exc)
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                last_problem = f"HTTP {response.status_code} {response.reason}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    delay = retry_after
                response.close()
            if attempt + 1 < attempts:
                time.sleep(delay)
        raise StoreUnavailable(
            f"{self._where} could not be reached after {attempts} tries: "
            f"{self._scrub(last_problem)}"
        )

    def _refused(self, what: str, response: requests.Response) -> StoreUnavailable:
        detail = response.headers.get("X-Influxdb-Error", "")
        if not detail:
            try:
                detail = response.json().get("error", "")
            except ValueError:
                detail = response.text[:300]
        who = f"user {self.username!r}" if self.username else "the token"
        if response.status_code == 401:
            return StoreUnavailable(f"{self._where} refused the credentials of {who} for {what} "
                                    f"(HTTP 401): {self._scrub(detail)}")
        if response.status_code == 403:
            return StoreUnavailable(f"{self._where}: {who} is not allowed to {what} in database "
                                    f"{self.database!r} (HTTP 403): {self._scrub(detail)}")
        if response.status_code == 400 and what == "write":
            return WriteRefused(f"{self._where} rejected a write: {self._scrub(detail)}")
        return StoreUnavailable(f"{self._where} answered {what} with HTTP {response.status_code}: "
                                f"{self._scrub(detail)}")

    def _scrub(self, text: object) -> str:
        message = str(text)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


def _concatenate(parts: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    """One (times, columns) from consecutive parts; a metric absent from a part is NaN there."""
    found = [(times, columns) for times, columns in parts if times is not None]
    if len(found) <= 1:
        return found[0] if found else (None, {})
    names = sorted({name for _, columns in found for name in columns})
    times = np.concatenate([t for t, _ in found])
    columns = {name: np.concatenate([c[name] if name in c else np.full(len(t), np.nan)
                                     for t, c in found]) for name in names}
    return times, columns


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return min(MAX_RETRY_AFTER_S, max(0.0, when.timestamp() - time.time()))


def _describe(exc: Exception) -> str:
    """A short reason for a connection failure, without URLs or headers."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        for marker in ("Connection refused", "Name or service not known", "No route to host",
                       "Connection reset", "RemoteDisconnected", "Connection aborted"):
            if marker in text:
                return f"connection failed ({marker})"
        return "connection failed"
    return type(exc).__name__

