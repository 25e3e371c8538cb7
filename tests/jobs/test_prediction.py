"""Failure prediction on a simulated fleet: trained from failure codes and repairs, run as a job.

The fleet is the simulator's realistic one (degradation in noise and relations, device-to-device
variation, glitches, site episodes), its readings in a real InfluxDB, its failures as the
device codes and repair tickets the platform would hold. Two devices are set to fail a few
days after the test's now, with their degradation under way.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import registry
from analytics.jobs.metrics import JobMetrics
from analytics.jobs.prediction import NAME, Candidate, register_predictor, train_predictor
from analytics.jobs.runner import Worker
from analytics.jobs.service import fleet_tasks
from edge_agent.simulator.physics import FAILURE_CODES, FAULT_DAYS, FAULT_TYPES, Fault
from edge_agent.simulator.plain_rule import device_samples
from edge_agent.simulator.scenario import DeviceSpec, plan_scenario
from tests.jobs.conftest import T0, FakeClock
from vigil.config import JobsSettings, PredictionSettings, ScoringSettings, Settings
from vigil.db.models import Customer, Device, Site, Ticket
from vigil.db.session import transaction
from vigil.devices.models import DeviceEvent, Prediction
from vigil.telemetry.store import Point, TelemetryStore
from vigil.tickets.models import TicketEvent
from vigil.tickets.priority import TicketRules

DAY = timedelta(days=1)
DAYS = 90
SEED = 21
MODELS = ("infusion_pump", "patient_monitor")
STEP_S = 1800
START = T0 - DAYS * DAY
HEADING_IN = (3 * DAY, 5 * DAY)  # the two devices set to fail this long after now


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def at(ms_: int) -> datetime:
    return datetime.fromtimestamp(ms_ / 1000, UTC)


@functools.cache
def fleet() -> tuple[DeviceSpec, ...]:
    """The planned fleet; the first two devices without a fault get one failing after now."""
    specs = list(plan_scenario(36, seed=SEED, start_ms=ms(START), end_ms=ms(T0),
                               fault_fraction=0.5, models=MODELS).specs)
    healthy = [i for i, s in enumerate(specs) if not s.faults]
    for i, ahead in zip(healthy[:2], HEADING_IN, strict=True):
        spec = specs[i]
        kind = FAULT_TYPES[spec.model][0]
        failure = T0 + ahead
        onset = failure - FAULT_DAYS[kind] * DAY
        specs[i] = replace(spec, faults=(Fault(spec.device_id, spec.model, kind, ms(onset),
                                               ms(failure)),))
    return tuple(specs)


@functools.cache
def samples(device: str) -> tuple[tuple[int, dict[str, float]], ...]:
    spec = next(s for s in fleet() if s.device_id == device)
    return tuple(device_samples(spec, SEED, ms(START), ms(T0), STEP_S * 1000))


def load(factory: sessionmaker[Session], store: TelemetryStore) -> None:
    """Devices and readings; each failure before now as its device's failure code, each repair
    as a closed ticket that went through ``repaired``."""
    with transaction(factory) as session:
        sites: dict[str, Site] = {}
        customer = Customer(name="General Hospital")
        session.add(customer)
        for spec in fleet():
            if spec.site.name not in sites:
                sites[spec.site.name] = Site(name=spec.site.name, customer=customer)
                session.add(sites[spec.site.name])
            site = sites[spec.site.name]
            session.add(Device(id=spec.device_id, serial=f"S-{spec.device_id}",
                               model=spec.model, site=site))
        session.flush()
        for spec in fleet():
            for n, fault in enumerate(f for f in spec.faults if at(f.failure_ms) < T0):
                code = FAILURE_CODES[fault.fault_type]
                session.add(DeviceEvent(device_id=spec.device_id, seq=n + 1,
                                        ts=at(fault.failure_ms), code=code, severity="critical"))
                if fault.repaired_ms is None or at(fault.repaired_ms) >= T0:
                    continue
                ticket = Ticket(device_id=spec.device_id, priority="P1", category="mechanical",
                                source="device_event", signature=f"event:{code}", title=code,
                                first_seen_at=at(fault.failure_ms),
                                created_at=at(fault.failure_ms),
                                restored_at=at(fault.repaired_ms), state="closed")
                session.add(ticket)
                session.flush()
                session.add(TicketEvent(ticket_id=ticket.id, actor="eng1", kind="transition",
                                        from_state="dispatched", to_state="repaired",
                                        at=at(fault.repaired_ms)))
    for spec in fleet():
        store.write([Point(spec.device_id, t, values, model=spec.model, site=spec.site.name)
                     for t, values in samples(spec.device_id)])


def settings() -> Settings:
    scoring = ScoringSettings(step_s={m: STEP_S for m in MODELS})
    return Settings(jobs=JobsSettings(intervals_s={"failure_prediction": 6 * 3600.0},
                                      scoring=scoring, prediction=PredictionSettings()))


@pytest.fixture(params=["sqlite", "postgresql"])
def sql(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    from tests.jobs.conftest import migrated
    from vigil.db.session import make_session_factory

    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    engine = migrated(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def influx(request: pytest.FixtureRequest) -> Iterator[TelemetryStore]:
    from tests.telemetry.conftest import influx_store

    with influx_store(request.getfixturevalue("influxdb"),
                      request.getfixturevalue("influx_database")) as store:
        yield store


def predictions(factory: sessionmaker[Session]) -> list[Prediction]:
    with factory() as session:
        return list(session.scalars(select(Prediction).order_by(Prediction.device_id,
                                                                 Prediction.made_at)))


def test_devices_heading_to_failure_get_the_highest_probabilities_once_per_pass(
    sql: sessionmaker[Session], influx: TelemetryStore
) -> None:
    factory = sql
    load(factory, influx)
    config = settings()
    with factory() as session:
        candidate = train_predictor(session, store=influx, now=T0, settings=config.jobs)
    assert isinstance(candidate, Candidate), candidate
    figures = candidate.trained.metrics
    # Learned from what happened: the failure codes before now, across both models, the
    # devices that never failed kept as censored rows.
    failed_before = {(s.device_id, f.failure_ms) for s in fleet() for f in s.faults
                     if START + 4 * DAY < at(f.failure_ms) < T0}
    assert figures["failures"] == len(failed_before) >= 4
    assert figures["devices"] == len(fleet())
    with transaction(factory) as session:
        outcome = register_predictor(session, candidate=candidate, now=T0)
    assert (outcome.version, outcome.promoted) == (1, True)
    with factory() as session:
        row = registry.promoted(session, name=NAME)
        assert row is not None and row.data_end == T0 and row.higher_is_better is False
        assert row.metrics["cv_brier"] == row.score

    clock = FakeClock(T0 + timedelta(minutes=1))
    rules = TicketRules.load()

    def worker(owner: str) -> Worker:
        return Worker(factory=factory, store=influx, settings=config.jobs,
                      fleet_tasks=fleet_tasks(config, influx, rules, factory),
                      metrics=JobMetrics(), clock=clock, owner=owner)

    first = worker("w1").run("failure_prediction")
    assert first.failures == 0 and first.units == 1
    rows = predictions(factory)
    heading = {s.device_id for s in fleet()
               if any(T0 < at(f.failure_ms) <= T0 + 7 * DAY and f.predictable
                      and at(f.onset_ms) < T0 - 7 * DAY for f in s.faults)}
    healthy = {s.device_id for s in fleet() if not s.faults}
    assert len(heading) >= 2 and len(healthy) >= 10
    by_device = {p.device_id: p for p in rows}
    assert heading | healthy <= set(by_device)
    worst_healthy = sorted(by_device[d].probability for d in healthy)
    # Every device heading to failure is above the healthy devices' median and their mean.
    median = worst_healthy[len(worst_healthy) // 2]
    assert all(by_device[d].probability > median for d in heading)
    mean_heading = sum(by_device[d].probability for d in heading) / len(heading)
    assert mean_heading > 2 * sum(worst_healthy) / len(worst_healthy)
    for p in rows:
        assert p.model_version == f"{NAME} v1" and p.horizon_days == 7.0
        assert p.rul_lower_days is not None and p.rul_upper_days is not None
        assert p.rul_days is not None and p.rul_lower_days <= p.rul_days <= p.rul_upper_days
        assert p.rul_upper_days <= 30.0
        assert all(isinstance(v, float) and v < 0 for v in p.drivers.values())
        assert p.basis["calibration"] in {"own", "pooled"}
    for d in heading:
        assert by_device[d].drivers and by_device[d].fault_type is not None
    assert_the_spans_read_assess_as_the_whole_month(factory, influx, config.jobs,
                                                    now=clock())

    # Once per pass: a second poll, and a restarted worker, find the job not due yet.
    clock.advance(timedelta(minutes=5))
    assert worker("w1").run("failure_prediction").units == 0
    assert worker("w2-restarted").run("failure_prediction").units == 0
    assert len(predictions(factory)) == len(rows)
    # The next interval adds one row per device, none twice.
    clock.advance(timedelta(hours=6))
    assert worker("w2-restarted").run("failure_prediction").units == 1
    with factory() as session:
        per_device = dict(session.execute(select(Prediction.device_id, func.count())
                                          .group_by(Prediction.device_id)).all())
    assert set(per_device.values()) == {2} and len(per_device) == len(rows)


def test_a_retrained_predictor_is_promoted_only_if_at_least_as_good(
    factory: sessionmaker[Session]
) -> None:
    from analytics.jobs.prediction import KIND
    from analytics.prediction.failure import fit_predictor
    from tests.analytics.test_failure_prediction import synthetic_rows

    def candidate(rows) -> Candidate:  # type: ignore[no-untyped-def]
        predictor, figures = fit_predictor(rows)
        return Candidate(registry.Trained(
            name=NAME, kind=KIND, params=predictor.to_params(), score=figures["cv_brier"],
            higher_is_better=False, metrics=figures, data_start=T0 - 60 * DAY, data_end=T0),
            rows)

    rows = synthetic_rows({"pump": 6, "monitor": 6})
    # The same devices with their readings shuffled between rows: nothing left to learn.
    shuffled = rows.copy()
    features = [c for c in rows.columns if "__" in c]
    shuffled[features] = rows[features].sample(frac=1.0, random_state=0).to_numpy()
    with transaction(factory) as session:
        assert register_predictor(session, candidate=candidate(rows), now=T0).promoted
        worse = register_predictor(session, candidate=candidate(shuffled), now=T0)
        assert (worse.version, worse.promoted) == (2, False)
        again = register_predictor(session, candidate=candidate(rows), now=T0)
        assert (again.version, again.promoted) == (3, True)
    with factory() as session:
        row = registry.promoted(session, name=NAME)
        assert row is not None and row.version == 3
        assert registry.load(row).assess(rows.head(3))[0].horizon_days == 7.0


def test_old_predictions_are_purged_but_each_devices_newest_stays(
        factory: sessionmaker[Session]) -> None:
    from analytics.jobs.prediction import purge_predictions
    from tests.jobs.conftest import add_fleet

    add_fleet(factory, 2)
    keep = timedelta(days=90)
    with transaction(factory) as session:
        for days_ago in (200, 100, 10):  # dev-000: two old, one recent
            session.add(Prediction(device_id="dev-000", made_at=T0 - timedelta(days=days_ago),
                                   horizon_days=7, probability=0.1, model_version="v1"))
        # dev-001 has not been assessed for long: its only prediction stays.
        session.add(Prediction(device_id="dev-001", made_at=T0 - timedelta(days=300),
                               horizon_days=7, probability=0.2, model_version="v1"))
    with transaction(factory) as session:
        assert purge_predictions(session, now=T0, keep=keep) == 2
    with factory() as session:
        left = session.execute(select(Prediction.device_id, Prediction.made_at)
                               .order_by(Prediction.device_id)).all()
    assert [(d, T0 - m) for d, m in left] == [("dev-000", timedelta(days=10)),
                                              ("dev-001", timedelta(days=300))]


class Spans:
    """The store, noting how long a span each query asks for."""

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store
        self.asked: list[timedelta] = []

    def query(self, device: str, start: datetime, end: datetime, **kw: Any) -> Any:
        self.asked.append(end - start)
        return self.store.query(device, start, end, **kw)


def assert_the_spans_read_assess_as_the_whole_month(
        factory: sessionmaker[Session], store: TelemetryStore, settings: JobsSettings, *,
        now: datetime) -> None:
    """An assessment reads the baseline's days and the recent window, not the month between:
    every device's assessment is the one the whole month gives, repaired devices included."""
    from analytics.jobs.prediction import (
        BEFORE,
        assess_device,
        assess_readings,
        assessed_at,
        failures,
        read_steps,
        repairs,
    )

    with factory() as session:
        row = registry.promoted(session, name=NAME)
        assert row is not None
        predictor = registry.load(row)
        devices = list(session.scalars(select(Device).order_by(Device.id)))
        ids = [d.id for d in devices]
        lag = timedelta(days=settings.prediction.baseline_lag_days)
        failed = failures(session, device_ids=ids, start=now - lag - BEFORE, end=now)
        fixed = repairs(session, device_ids=ids)
    repaired_within = 0
    read_days: list[float] = []
    for device in devices:
        when = assessed_at(device, now=now, settings=settings)
        month = read_steps(store, device, start=when - lag, end=when, scoring=settings.scoring)
        whole = assess_readings(month, device, predictor=predictor, at=when, settings=settings,
                                failed=failed, fixed=fixed.get(device.id, []))
        noting = Spans(store)
        spans = assess_device(noting, device, predictor=predictor,  # type: ignore[arg-type]
                              now=now, settings=settings, failed=failed,
                              fixed=fixed.get(device.id, []))
        assert spans == whole, device.id
        read_days.append(sum(noting.asked, timedelta()) / DAY)
        repaired_within += any(when - lag < r < when for r in fixed.get(device.id, []))
    assert repaired_within >= 1  # a life that starts at a repair inside the month is covered
    # Most devices are read for the baseline's 3 days and the last 3, not the month's 30.
    assert sorted(read_days)[len(read_days) // 2] < 7
