"""API throughput and latency under concurrent clients, on a seeded fleet.

Seeds a fresh database (SQLite in a temporary folder, or ``--database-url``)
with customers, sites, devices and tickets, and an embedded telemetry store
with the latest readings of every device and a day of one device's readings at
1 Hz. Serves the API with uvicorn in its own process (one worker, as on a small
machine) and drives it with concurrent clients for a fixed time per endpoint:
the device-health list (100 devices a page), one device's page, the open-ticket
queue, a one-day telemetry range (at 1-minute resolution, what a chart asks
for), and the bare ``/healthz`` of the same app, against which each is compared.
The health list is then measured once more at half its rate, sent on a schedule:
its latency under a load the server keeps up with, rather than the queue 50
clients sending as fast as they can build.

The clients share the machine with the server, so the rates are for both
together; the server's own CPU time a request (from /proc) is printed beside
them, and depends much less on how much of the machine the clients and other
work take. Last, each endpoint is timed in this process through the app
itself, one request at a time with no HTTP: wall and CPU time a request.
Readable figures first, then one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PAGE = 100
TARGET_P99_MS = 50.0
TARGET_RATIO = 0.30


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=5000, help="devices (default 5000)")
    parser.add_argument("--tickets", type=int, default=50_000, help="tickets (default 50000)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measuring time per endpoint (default 10)")
    parser.add_argument("--database-url", help="an empty database to seed (default: SQLite in a "
                                               "temporary folder)")
    parser.add_argument("--paced-share", type=float, default=0.5,
                        help="the health list is also measured at this share of its "
                             "closed-loop rate, sent on a schedule (default 0.5)")
    parser.add_argument("--in-process", type=int, default=300,
                        help="requests timed in process for each endpoint (default 300)")


def seed(url: str, data_dir: Path, devices: int, tickets: int) -> tuple[str, str]:
    """The fleet, the tickets and the telemetry; returns an API token and the busiest device."""
    from sqlalchemy import insert, select

    from vigil.auth.service import create_api_token
    from vigil.db import migrations
    from vigil.db.enums import FINAL_TICKET_STATES, RoleName, TicketState
    from vigil.db.models import Customer, Device, Prediction, Role, Site, Ticket, User
    from vigil.db.session import make_engine, make_session_factory, transaction
    from vigil.telemetry.embedded import EmbeddedStore
    from vigil.telemetry.store import Point

    engine = make_engine(url)
    migrations.upgrade(engine)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    rng = random.Random(7)
    ids = [f"dev-{n:05d}" for n in range(devices)]
    with transaction(factory) as session:
        customers = max(1, devices // 100)
        session.execute(insert(Customer), [{"name": f"Hospital {c}", "created_at": now}
                                           for c in range(customers)])
        customer_ids = list(session.scalars(select(Customer.id).order_by(Customer.id)))
        session.execute(insert(Site), [{"name": f"Site {c}-{s}", "customer_id": cid,
                                        "timezone": "UTC", "created_at": now}
                                       for c, cid in enumerate(customer_ids) for s in range(2)])
        site_ids = list(session.scalars(select(Site.id).order_by(Site.id)))
        session.execute(insert(Device), [{
            "id": device_id, "serial": f"SN-{n:05d}", "model": f"M-{n % 7}",
            "site_id": site_ids[n % len(site_ids)], "online": n % 5 != 0, "state": "online",
            "last_seen": now - timedelta(seconds=rng.randint(0, 3600)), "status_detail": {},
            "created_at": now} for n, device_id in enumerate(ids)])
        session.execute(insert(Prediction), [{
            "device_id": device_id, "made_at": now, "horizon_days": 30.0,
            "probability": rng.random(), "model_version": "bench", "drivers": {}}
            for device_id in ids[::3]])
        final = sorted(s.value for s in FINAL_TICKET_STATES)
        open_states = [s.value for s in TicketState if s.value not in final]
        rows = []
        for n in range(tickets):
            device_id = ids[n % devices]
            state = open_states[n % len(open_states)] if n % 10 == 0 else final[n % len(final)]
            rows.append({
                "scope": "device", "device_id": device_id,
                "site_id": site_ids[(n % devices) % len(site_ids)], "priority": f"P{n % 3 + 1}",
                "category": "mechanical", "state": state, "source": "analytics",
                "signature": f"bench:{n}", "title": f"Ticket {n}", "description": "",
                "evidence": {}, "evidence_count": 1, "reopen_count": 0,
                "created_at": now - timedelta(minutes=tickets - n), "updated_at": now})
        for start in range(0, len(rows), 5000):
            session.execute(insert(Ticket), rows[start:start + 5000])
        admin = User(username="bench-admin", display_name="Bench", password_hash=None,
                     roles=[session.scalar(select(Role).where(Role.name == RoleName.ADMIN))])
        session.add(admin)
        session.flush()
        _, token = create_api_token(session, user_id=admin.id, name="bench",
                                    scopes=["read", "write"])
    engine.dispose()
    store = EmbeddedStore(data_dir / "telemetry.db", synchronous="NORMAL")
    try:
        latest = int(now.timestamp() * 1000)
        store.write(Point(device=d, ts=latest, metrics={"temp_c": 21.0, "flow": 3.0})
                    for d in ids)
        busy = ids[1]
        day = int((now - timedelta(days=1)).timestamp() * 1000)
        for start in range(0, 86_400, 10_000):
            store.write(Point(device=busy, ts=day + s * 1000,
                              metrics={"temp_c": 20 + (s % 600) / 100, "flow": s % 50 / 10})
                        for s in range(start, min(start + 10_000, 86_400)))
    finally:
        store.close()
    return token, busy


def serve(url: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIGIL_DATA_DIR": str(data_dir), "VIGIL_DATABASE_URL": url,
           "VIGIL_TELEMETRY_STORE": "embedded", "VIGIL_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.cli:build", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def drive(base: str, path: str, headers: dict[str, str], clients: int,
                seconds: float) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=30.0) as client:
        await client.get(path)  # warm up: connections, caches, lazy imports
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    answer = await client.get(path)
                except httpx.TransportError:
                    # A connection the server closed (keep-alive race): counted, not fatal.
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return _figures(latencies, errors, elapsed)


async def drive_paced(base: str, path: str, headers: dict[str, str], clients: int,
                      seconds: float, rate: float) -> dict[str, float]:
    """Requests sent on a fixed schedule of ``rate`` per second, shared by ``clients``.

    The closed loop of ``drive`` measures the queue its own clients build: with 50
    of them, latency is 50 over the rate whatever the server's work. Here each
    latency runs from the request's scheduled time, so a server falling behind
    still shows (no coordinated omission), but the clients only offer the load.
    """
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    total = max(1, int(rate * seconds))
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=30.0) as client:
        await client.get(path)
        began = time.perf_counter()
        slots = iter(range(total))

        async def worker() -> None:
            nonlocal errors
            for slot in slots:
                due = began + slot / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                try:
                    answer = await client.get(path)
                except httpx.TransportError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - due)
                if answer.status_code != 200:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return _figures(latencies, errors, elapsed)


def _figures(latencies: list[float], errors: int, elapsed: float) -> dict[str, float]:
    latencies = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "requests": float(len(latencies)),
        "errors": float(errors),
    }


def cpu_seconds(pid: int) -> float | None:
    """The CPU time (user and system) process ``pid`` has used, where /proc tells it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(url: str, data_dir: Path, headers: dict[str, str], paths: dict[str, str],
               count: int) -> dict[str, dict[str, float]]:
    """Each path's median and 90th-percentile wall time, and mean CPU time, a request."""
    import httpx
    from pydantic import SecretStr

    from api.app import create_app
    from vigil.config import ApiSettings, Settings

    settings = Settings(data_dir=data_dir, database_url=SecretStr(url),
                        telemetry_store="embedded", api=ApiSettings(diagnosis=False))
    app = create_app(settings)

    async def measure() -> dict[str, dict[str, float]]:
        found: dict[str, dict[str, float]] = {}
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench",
                headers=headers) as client:
            for name, path in paths.items():
                for _ in range(20):
                    await client.get(path)
                walls = []
                cpu = time.process_time()
                for _ in range(count):
                    started = time.perf_counter()
                    answer = await client.get(path)
                    walls.append(time.perf_counter() - started)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{path} answered {answer.status_code} in process")
                cpu = time.process_time() - cpu
                walls.sort()
                found[name] = {"median_ms": statistics.median(walls) * 1000,
                               "p90_ms": walls[int(count * 0.9)] * 1000,
                               "cpu_ms": cpu / count * 1000}
        return found

    return asyncio.run(measure())


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"the API exited at start: {stderr[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not answer within a minute")


def run(args: argparse.Namespace) -> int:
    from vigil.servers import free_port

    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-api-"))
    url = args.database_url or f"sqlite:///{workdir / 'vigil.db'}"
    process = None
    try:
        started = time.perf_counter()
        token, busy = seed(url, workdir, args.devices, args.tickets)
        print(f"seeded {args.devices} devices, {args.tickets} tickets and a day of telemetry "
              f"in {time.perf_counter() - started:.1f} s ({url.split(':', 1)[0]})")
        port = free_port()
        process = serve(url, workdir, port)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process)
        headers = {"Authorization": f"Bearer {token}"}
        end = datetime.now(UTC).replace(microsecond=0)
        day = (f"/api/v1/devices/{busy}/telemetry?start={(end - timedelta(days=1)).isoformat()}"
               f"&end={end.isoformat()}&resolution_s=60").replace("+00:00", "Z")
        endpoints = {
            "bare": "/healthz",
            "health_list": f"/api/v1/devices?limit={PAGE}&sort=last_seen&order=desc",
            "device_page": f"/api/v1/devices/{busy}",
            "ticket_queue": "/api/v1/tickets?open_only=true&limit=50",
            "telemetry_day": day,
        }
        results: dict[str, dict[str, float]] = {}
        for name, path in endpoints.items():
            before = cpu_seconds(process.pid)
            results[name] = asyncio.run(drive(base, path, headers, args.clients, args.seconds))
            after = cpu_seconds(process.pid)
            if before is not None and after is not None:
                results[name]["server_cpu_ms"] = (
                    (after - before) / max(1.0, results[name]["requests"]) * 1000)
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"the API died during {name}: {stderr[-2000:]}")
            r = results[name]
            cpu = (f", server CPU {r['server_cpu_ms']:.2f} ms a request"
                   if "server_cpu_ms" in r else "")
            print(f"{name:14s} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                  f"p99 {r['p99_ms']:7.1f} ms  ({int(r['requests'])} requests, "
                  f"{int(r['errors'])} failed or not 200{cpu})")
        bare = results["bare"]["rps"]
        load = os.getloadavg()[0]
        figures: dict[str, Any] = {"bare_rps": round(bare, 1), "clients": args.clients,
                                   "devices": args.devices, "tickets": args.tickets,
                                   "load_average_1m": round(load, 2)}
        for name in ("bare", "health_list", "device_page", "ticket_queue", "telemetry_day"):
            if "server_cpu_ms" in results[name]:
                figures[f"{name}_server_cpu_ms"] = round(results[name]["server_cpu_ms"], 2)
        for name in ("health_list", "device_page", "ticket_queue", "telemetry_day"):
            r = results[name]
            figures[f"{name}_rps"] = round(r["rps"], 1)
            figures[f"{name}_p50_ms"] = round(r["p50_ms"], 1)
            figures[f"{name}_p99_ms"] = round(r["p99_ms"], 1)
            figures[f"{name}_ratio_to_bare"] = round(r["rps"] / bare, 3)
            figures[f"{name}_errors"] = int(r["errors"])
            print(f"{name:14s} {r['rps'] / bare:6.3f} of the bare endpoint's rate")
        paced_rate = max(1.0, args.paced_share * results["health_list"]["rps"])
        paced = asyncio.run(drive_paced(base, endpoints["health_list"], headers, args.clients,
                                        args.seconds, paced_rate))
        figures.update(health_list_paced_offered_rps=round(paced_rate, 1),
                       health_list_paced_p50_ms=round(paced["p50_ms"], 1),
                       health_list_paced_p99_ms=round(paced["p99_ms"], 1))
        print(f"health_list at {paced_rate:.1f} req/s offered ({args.paced_share:.0%} of its "
              f"closed-loop rate) by {args.clients} clients: p50 {paced['p50_ms']:.1f} ms, "
              f"p99 {paced['p99_ms']:.1f} ms ({int(paced['errors'])} failed or not 200)")
        timed = in_process(url, workdir, headers, {
            "bare": endpoints["bare"], "auth_me": "/api/v1/auth/me",
            "health_list": endpoints["health_list"]}, args.in_process)
        for name, t in timed.items():
            figures[f"in_process_{name}_ms"] = round(t["median_ms"], 2)
            figures[f"in_process_{name}_cpu_ms"] = round(t["cpu_ms"], 2)
            print(f"in process, one at a time: {name:12s} median {t['median_ms']:6.2f} ms, "
                  f"p90 {t['p90_ms']:6.2f} ms, CPU {t['cpu_ms']:6.2f} ms a request")
        print(f"targets: health list p99 under {TARGET_P99_MS:.0f} ms "
              f"({'met' if figures['health_list_p99_ms'] < TARGET_P99_MS else 'NOT met'}), "
              f"at least {TARGET_RATIO:.0%} of the bare rate "
              f"({'met' if figures['health_list_ratio_to_bare'] >= TARGET_RATIO else 'NOT met'})")
        print(f"load average over the last minute: {load:.2f} on {os.cpu_count()} cores "
              "(other work on the machine lowers every figure)")
        print(json.dumps(figures))
        return 0
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
