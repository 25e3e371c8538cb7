"""Under more concurrent requests than database connections, every request is answered promptly.

Before admission control, 120 clients on the health list stalled the server:
worker threads waited for pooled connections while the requests holding
connections waited for threads, until the pool's 30 s checkout timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.admission import SPARE_THREADS, Admission, Overloaded
from api.app import create_app
from tests.api.conftest import PASSWORD, World
from tests.live_app import served
from vigil.config import ApiSettings, Settings

CLIENTS = 120
REQUESTS_EACH = 2
DEADLINE_S = 15.0
HEALTH_LIST = "/api/v1/devices?limit=100&sort=last_seen&order=desc"


def _signed_in(base: str, username: str) -> dict[str, str]:
    answer = httpx.post(f"{base}/api/v1/auth/token",
                        json={"username": username, "password": PASSWORD}, timeout=30)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def _crowd(base: str, headers: dict[str, str]) -> Counter[str]:
    """What ``CLIENTS`` clients got, each sending ``REQUESTS_EACH`` requests one after another."""
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=DEADLINE_S) as client:

        async def one_client() -> None:
            for _ in range(REQUESTS_EACH):
                try:
                    answer = await client.get(HEALTH_LIST)
                except httpx.TimeoutException:
                    outcomes["timeout"] += 1
                    continue
                if answer.status_code == 503:
                    body = answer.json()
                    overloaded = (body["type"].endswith("/overloaded")
                                  and answer.headers.get("retry-after", "").isdigit())
                    outcomes["overloaded" if overloaded else "503 other"] += 1
                else:
                    outcomes[str(answer.status_code)] += 1

        tasks = [asyncio.ensure_future(one_client()) for _ in range(CLIENTS)]
        done, pending = await asyncio.wait(tasks, timeout=DEADLINE_S)
        for task in pending:
            task.cancel()
        outcomes["unfinished client"] += len(pending)
        for task in done:
            task.result()
    return outcomes


def test_a_crowd_larger_than_the_pool_is_answered_within_the_deadline(
    app: FastAPI, world: World
) -> None:
    with served(app) as base:
        headers = _signed_in(base, "admin")
        started = time.monotonic()
        outcomes = asyncio.run(_crowd(base, headers))
        elapsed = time.monotonic() - started
    total = CLIENTS * REQUESTS_EACH
    assert outcomes["timeout"] == 0 and outcomes["unfinished client"] == 0, (outcomes, elapsed)
    assert set(outcomes) <= {"200", "overloaded", "timeout", "unfinished client"}, outcomes
    assert outcomes["200"] + outcomes["overloaded"] == total, outcomes
    assert outcomes["200"] > total // 2, outcomes
    assert elapsed < DEADLINE_S, (outcomes, elapsed)


def _one_slot(app: FastAPI, wait_s: float = 0.2) -> Admission:
    admission = Admission(1, wait_s)
    app.state.admission = admission
    return admission


def test_a_request_that_finds_no_slot_in_time_is_refused_with_retry_after(
    app: FastAPI, client: TestClient, headers: Callable[[str], dict[str, str]]
) -> None:
    admin = headers("admin")
    admission = _one_slot(app)
    portal = client.portal  # the event loop serving the client's requests
    assert portal is not None
    portal.call(admission.acquire)
    try:
        started = time.monotonic()
        refused = client.get(HEALTH_LIST, headers=admin)
        waited = time.monotonic() - started
        page = client.get("/console/fleet")
        busy, alive = client.get("/readyz"), client.get("/healthz")
    finally:
        portal.call(admission.release)
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    body = refused.json()
    assert body["type"] == "https://vigil.dev/problems/overloaded"
    assert body["status"] == 503 and body["detail"]
    assert waited >= 0.2
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "1"
    assert "Busy" in page.text
    assert busy.status_code == 503 and busy.json()["type"].endswith("/overloaded")
    assert alive.status_code == 200  # alive needs no database
    assert client.get(HEALTH_LIST, headers=admin).status_code == 200


def test_a_failing_request_gives_its_slot_back(
    app: FastAPI, client: TestClient, headers: Callable[[str], dict[str, str]]
) -> None:
    admin = headers("admin")
    _one_slot(app)
    assert client.get("/api/v1/devices/nothing-here", headers=admin).status_code == 404
    assert client.get("/api/v1/devices", headers={"Authorization": "Bearer nonsense"}
                      ).status_code == 401
    assert client.post("/api/v1/tickets", headers=admin, json={}).status_code == 422
    assert client.get(HEALTH_LIST, headers=admin).status_code == 200


def test_a_stream_takes_a_slot_per_read_not_for_its_life(app: FastAPI, world: World) -> None:
    _one_slot(app, wait_s=1.0)
    events = f"/api/v1/diagnosis/sessions/{world.diagnosis_session_id}/events?wait_s=3"

    async def scenario(base: str, engineer: dict[str, str]) -> list[int]:
        async with httpx.AsyncClient(base_url=base, headers=engineer, timeout=10) as client:
            async with client.stream("GET", events) as stream:
                assert stream.status_code == 200
                answers = []
                for _ in range(5):
                    answers.append((await client.get(HEALTH_LIST)).status_code)
                    await asyncio.sleep(0.2)
                return answers

    with served(app) as base:
        assert asyncio.run(scenario(base, _signed_in(base, "engineer"))) == [200] * 5


def test_the_slots_follow_the_pool_and_the_threads_outnumber_them(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api=ApiSettings(diagnosis=False, db_pool_size=30,
                                                           db_max_overflow=20))
    app = create_app(settings)
    assert app.state.engine.pool.size() == 30
    assert app.state.admission.slots == 50

    async def threads() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    with TestClient(app) as client:
        assert client.portal is not None
        assert client.portal.call(threads) >= 50 + SPARE_THREADS


def test_a_slot_comes_back_once_whether_its_holder_fails_or_its_waiter_goes_away() -> None:
    admission = Admission(1, 0.1)

    async def scenario() -> None:
        await admission.acquire()
        async with anyio.create_task_group() as group:
            group.start_soon(admission.acquire)
            await anyio.sleep(0.02)
            group.cancel_scope.cancel()
        with pytest.raises(Overloaded):
            await admission.acquire()
        admission.release()
        with pytest.raises(RuntimeError):
            async with admission.slot():
                raise RuntimeError("the route failed")
        async with admission.slot():
            with pytest.raises(Overloaded):
                await admission.acquire()
        with anyio.fail_after(0.05):
            await admission.acquire()
        admission.release()
        with pytest.raises(ValueError):
            admission.release()

    anyio.run(scenario)
