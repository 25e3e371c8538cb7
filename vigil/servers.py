"""Local Mosquitto, InfluxDB and PostgreSQL for tests, benchmarks and `vigil up`.

Each server runs from Debian's package binaries as a child process, on a free
loopback port, with its data in a folder of its own, so several can run side
by side and none touches the machine's system-wide services. Missing packages
are installed with apt-get when running as root.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from vigil import VigilError

LOOPBACK = "127.0.0.1"


class ServerUnavailable(VigilError, RuntimeError):
    """A server could not be installed or started; the message says why."""


class ServerNotInstalled(ServerUnavailable):
    """The server's program is not on this machine and could not be installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def find_binary(candidates: list[str]) -> str | None:
    for candidate in candidates:
        path = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if path:
            return path
    return None


def ensure_package(package: str, binaries: list[str]) -> str:
    """Path of the server binary, installing its Debian package if needed."""
    found = find_binary(binaries)
    if found:
        return found
    if os.geteuid() != 0:
        raise ServerNotInstalled(
            f"{binaries[0]} is not installed; run `apt-get install {package}` as root "
            "(or scripts/setup)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerNotInstalled(
                f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-500:]}")
    found = find_binary(binaries)
    if not found:
        raise ServerNotInstalled(f"{package} installed but {binaries[0]} not found")
    return found


class LocalServer(ABC):
    """A server process on loopback with its data under ``workdir``."""

    name: ClassVar[str]
    package: ClassVar[str]
    binaries: ClassVar[list[str]]

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    @abstractmethod
    def _command(self, binary: str) -> list[str]:
        """The command line that runs the server in the foreground."""

    def _prepare(self, binary: str) -> None:  # noqa: B027 (a hook; most servers need none)
        """Setup before each start (config files; data folders the first time)."""

    def _after_start(self) -> None:  # noqa: B027 (a hook; most servers need none)
        """Work once the port answers (users, databases)."""

    def _preexec_user(self) -> str | None:
        """System user to run as when started by root, if the server refuses root."""
        return None

    @property
    def host(self) -> str:
        """Where the server listens: the IPv4 loopback unless a server says otherwise."""
        return LOOPBACK

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> Self:
        binary = ensure_package(self.package, self.binaries)
        self._prepare(binary)
        cmd = self._command(binary)
        user = self._preexec_user() if os.geteuid() == 0 else None
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(
                    f"{self.name} exited with code {self.process.returncode} at start; "
                    f"last log lines:\n{self.log_tail()}"
                )
            if port_open(self.port, self.host) and self._ready():
                self._after_start()
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerUnavailable(f"{self.name} did not answer on port {self.port} within "
                                f"{timeout:.0f} s; last log lines:\n{self.log_tail()}")

    def _ready(self) -> bool:
        return True

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut would."""
        if self.process is None:
            return
        self._signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class Mosquitto(LocalServer):
    name = "mosquitto"
    package = "mosquitto"
    binaries = ["mosquitto", "/usr/sbin/mosquitto"]

    def __init__(self, workdir: Path, port: int | None = None,
                 extra_config: list[str] | None = None, host: str = LOOPBACK,
                 allow_anonymous: bool = True, head_config: list[str] | None = None) -> None:
        super().__init__(workdir, port)
        self.extra_config = extra_config or []
        # Before the first listener: options Mosquitto wants ahead of any security setting
        # (per_listener_settings).
        self.head_config = head_config or []
        # Tests and benchmarks connect without credentials; `vigil up` does not allow it.
        self.allow_anonymous = allow_anonymous
        self.config_path = self.workdir / "mosquitto.conf"
        self._host = host

    @property
    def host(self) -> str:
        return self._host

    def _prepare(self, binary: str) -> None:
        lines = [
            *self.head_config,
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            # Keep everything queued for a disconnected persistent session:
            # ingest may be down for a while and must lose nothing.
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        self.config_path.write_text("\n".join(lines + self.extra_config) + "\n")

    def _command(self, binary: str) -> list[str]:
        return [binary, "-c", str(self.config_path)]


class InfluxDB(LocalServer):
    """InfluxDB 1.x from Debian with authentication on and one admin user."""

    name = "influxdb"
    package = "influxdb"
    binaries = ["influxd", "/usr/bin/influxd"]
    username = "vigil-admin"
    password = "test-password-not-secret"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.rpc_port = free_port()
        self.config_path = self.workdir / "influxdb.conf"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _prepare(self, binary: str) -> None:
        d = self.workdir
        self.config_path.write_text(f"""\
reporting-disabled = true
bind-address = "{LOOPBACK}:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
  # Move written data from the in-memory cache to TSM files after 5 s without
  # writes (Debian's default: 10 min), so a benchmark can query data as a
  # long-running server holds it within seconds of its last write.
  cache-snapshot-write-cold-duration = "5s"
[coordinator]
  log-queries-after = "0s"
[http]
  enabled = true
  bind-address = "{LOOPBACK}:{self.port}"
  auth-enabled = true
  log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
[[graphite]]
  enabled = false
[[udp]]
  enabled = false
""")

    def _command(self, binary: str) -> list[str]:
        return [binary, "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                return response.status == 204
        except (OSError, urllib.error.URLError):
            return False

    def _after_start(self) -> None:
        # The first user may be created without credentials; later starts find it.
        marker = self.workdir / ".admin-created"
        if not marker.exists():
            self.query(f"CREATE USER \"{self.username}\" WITH PASSWORD '{self.password}' "
                       "WITH ALL PRIVILEGES", auth=False)
            marker.touch()

    def query(self, q: str, *, db: str | None = None, auth: bool = True) -> dict:
        """Run an InfluxQL statement as the admin (test and bench setup only)."""
        params = {"q": q}
        if db:
            params["db"] = db
        request = urllib.request.Request(f"{self.url}/query",
                                         data=urllib.parse.urlencode(params).encode())
        if auth:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        errors = [r["error"] for r in body.get("results", []) if "error" in r]
        if errors:
            raise ServerUnavailable(f"InfluxDB refused {q!r}: {errors[0]}")
        return body

    def create_database(self, name: str) -> str:
        self.query(f'CREATE DATABASE "{name}"')
        return name


class PostgreSQL(LocalServer):
    """PostgreSQL from Debian, trust authentication on loopback, fsync off (tests only)."""

    name = "postgresql"
    package = "postgresql"
    binaries = ["/usr/lib/postgresql/15/bin/postgres", "postgres"]
    user = "vigil"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = "vigil") -> str:
        return f"postgresql+psycopg://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def _preexec_user(self) -> str | None:
        return "postgres"

    def _prepare(self, binary: str) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        initdb = str(Path(binary).with_name("initdb"))
        cmd = [initdb, "-D", str(self.data_dir), "-U", self.user, "-A", "trust",
               "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8"]
        if os.geteuid() == 0:
            self.workdir.chmod(0o755)
            # The postgres user needs to pass every folder above its own, not only the
            # nearest ones: a readable folder may sit inside a private one (a test's).
            for parent in self.workdir.parents:
                mode = parent.stat().st_mode
                if parent != Path("/") and mode & 0o005 != 0o005:
                    parent.chmod(mode | 0o005)
            shutil.chown(self.workdir, "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerUnavailable(f"initdb failed: {result.stderr.strip()[-800:]}")

    def _command(self, binary: str) -> list[str]:
        return [binary, "-D", str(self.data_dir), "-p", str(self.port),
                "-c", f"listen_addresses={LOOPBACK}",
                "-c", f"unix_socket_directories={self.workdir}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200"]

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown: SIGINT to the postmaster, which disconnects its clients and ends cleanly.

        SIGTERM to the process group asks for a smart shutdown, which waits for
        every client, and makes runuser kill the postmaster mid-way; the next
        start then finds its lock file and refuses (a restart of a server with
        connected services failed that way).
        """
        if self.running:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            assert self.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        super().stop(timeout)

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(host=LOOPBACK, port=self.port, user=self.user,
                                 dbname="postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _after_start(self) -> None:
        self.create_database("vigil")

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(host=LOOPBACK, port=self.port, user=self.user,
                             dbname="postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name
