"""The FastAPI application factory: routers, error handling, metrics and shared state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from api import (
    audit,
    auth,
    console,
    contracts,
    customers,
    devices,
    diagnosis,
    engineers,
    fhir,
    health,
    knowledge,
    maintenance,
    predictions,
    problems,
    reports,
    surveys,
    tickets,
    users,
)
from api.admission import Admission
from api.limits import BodyLimitMiddleware
from api.metrics import ApiMetrics, MetricsMiddleware
from vigil.config import Settings
from vigil.db.session import ensure_sqlite_folder, make_engine, make_session_factory
from vigil.devices.credentials import BrokerFiles, sync_broker
from vigil.diagnosis.bus import DiagnosisBus, default_client_id
from vigil.diagnosis.rules import AllowList
from vigil.telemetry import open_store
from vigil.telemetry.store import TelemetryStore

API_PREFIX = "/api/v1"

TAGS: list[dict[str, str]] = [
    {"name": "auth", "description": "Signing in: access and refresh tokens, the console's "
                                    "session cookie, API tokens."},
    {"name": "devices", "description": "Devices and their health, readings and telemetry."},
    {"name": "knowledge", "description": "Known faults and their fixes (service organisation)."},
    {"name": "customers", "description": "Customers (hospitals) and their sites."},
    {"name": "users", "description": "Users and their roles (administrators)."},
    {"name": "predictions", "description": "Failure predictions ranked by risk."},
    {"name": "tickets", "description": "The service desk's tickets."},
    {"name": "diagnosis", "description": "Remote-diagnosis sessions: commands to a device "
                                         "and its answers (service organisation)."},
    {"name": "maintenance", "description": "Preventive-maintenance and calibration plans and "
                                           "the work recorded against them."},
    {"name": "reports", "description": "The service-quality report: JSON, CSV and the "
                                       "published version."},
    {"name": "surveys", "description": "The customer's satisfaction survey by the token of its "
                                       "link (no sign-in)."},
    {"name": "contracts", "description": "Service contracts: levels and calendars "
                                         "(administrators)."},
    {"name": "engineers", "description": "Engineers, their working time and qualifications "
                                         "(administrators)."},
    {"name": "audit", "description": "The audit log (administrators)."},
    {"name": "fhir", "description": "Devices as HL7 FHIR R4 resources, for hospitals' systems."},
    {"name": "health", "description": "Liveness, readiness and metrics, for operators."},
]


def broker_files(settings: Settings) -> BrokerFiles | None:
    """The Mosquitto files this API keeps, if the settings name them."""
    mqtt = settings.mqtt
    if mqtt.password_file is None or mqtt.acl_file is None:
        return None
    return BrokerFiles(mqtt.password_file, mqtt.acl_file, mqtt.service_password_file,
                       mqtt.pid_file)


def diagnosis_bus(settings: Settings, sessions: sessionmaker[Session]) -> DiagnosisBus | None:
    """This process's MQTT link for remote diagnosis, unless the settings switch it off."""
    if not settings.api.diagnosis:
        return None
    return DiagnosisBus(settings.mqtt, sessions,
                        client_id=settings.api.diagnosis_client_id
                        or default_client_id(settings.api.port),
                        sweep_s=settings.api.diagnosis_sweep_s,
                        session_expiry_s=settings.api.diagnosis_session_expiry_s)


def api_engine(settings: Settings) -> Engine:
    """The API process's engine, its pool as large as ``api.db_pool_size`` and ``db_max_overflow``.

    In-memory SQLite has no pool to size: SQLAlchemy keeps one connection per thread.
    """
    url = make_url(settings.sql_url)
    ensure_sqlite_folder(url)
    in_memory = url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory")
    if in_memory:
        return make_engine(url)
    return make_engine(url, pool_size=settings.api.db_pool_size,
                       max_overflow=settings.api.db_max_overflow)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    telemetry: Callable[[], TelemetryStore] | None = None,
) -> FastAPI:
    """The API for ``settings``; tests pass their own engine or telemetry store.

    Requests take one of ``api.db_slots`` slots before they check out a connection, so an
    engine passed in pools at least that many (SQLAlchemy's default pool, 5 + 10, holds
    the default's 15).
    """
    if engine is None:
        engine = api_engine(settings)
    owned_engine = engine
    store_opener = telemetry or cache(lambda: open_store(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.admission.raise_thread_limit()
        if app.state.broker_files is not None:
            # The broker may have missed changes while no API ran.
            sync_broker(app.state.sessions, app.state.broker_files)
        bus: DiagnosisBus | None = app.state.diagnosis
        if bus is not None:
            bus.start()
        try:
            yield
        finally:
            if bus is not None:
                bus.stop()
        if telemetry is None:
            store_opener().close()
        owned_engine.dispose()

    app = FastAPI(
        title="Vigil",
        version="1",
        summary="Device health, service tickets and telemetry of installed medical devices.",
        openapi_tags=TAGS,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_session_factory(engine)
    app.state.admission = Admission(settings.api.db_slots, settings.api.admission_wait_s)
    app.state.telemetry = store_opener
    app.state.metrics = ApiMetrics()
    app.state.broker_files = broker_files(settings)
    app.state.allow_list = AllowList.load()
    app.state.diagnosis = diagnosis_bus(settings, app.state.sessions)
    problems.install(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, prefix=API_PREFIX)

    app.include_router(health.router)
    for module in (auth, devices, predictions, tickets, diagnosis, knowledge, maintenance,
                   reports, surveys, customers, contracts, engineers, users, audit, fhir):
        app.include_router(module.router, prefix=API_PREFIX)
    console.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 routes=app.routes, tags=TAGS)
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                problems.PROBLEM_SCHEMA)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
