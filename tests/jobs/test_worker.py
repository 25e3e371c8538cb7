"""The worker's passes, their schedule across restarts, and the service's metrics endpoint."""

from __future__ import annotations

from datetime import timedelta

import requests
from sqlalchemy import select

from analytics.jobs.metrics import JobMetrics
from analytics.jobs.runner import Worker
from analytics.jobs.service import JobsService
from tests.jobs.conftest import T0, FakeClock, add_fleet, readings
from vigil.config import JobsSettings
from vigil.scoring.models import JobLease, StreamState

SETTINGS = JobsSettings(intervals_s={"scoring": 60.0, "report": 3600.0}, claim_batch=2)


def worker(factory, store, clock, runs: list, owner: str = "w1") -> Worker:
    def report(session, now):
        runs.append(now)
        return {"ran": True}

    return Worker(factory=factory, store=store, settings=SETTINGS, fleet_tasks={"report": report},
                  metrics=JobMetrics(), clock=clock, owner=owner)


def test_a_scoring_pass_scores_every_device_once_then_waits_for_the_interval(
    factory, embedded
) -> None:
    devices = add_fleet(factory, 5)
    for device in devices:
        embedded.write(readings(device, T0 - timedelta(days=1), T0))
    clock = FakeClock()
    w = worker(factory, embedded, clock, [])
    first = w.run("scoring")
    assert (first.units, first.failures) == (5, 0)
    assert first.detail["steps"] == 5 * (288 - 1)
    metric = w.metrics.registry.get_sample_value
    # The newest reading, at T0 - 1 min, is 4 minutes past the watermark (T0 - 5 min).
    assert metric("vigil_job_lag_seconds", {"job": "scoring"}) == 240
    assert w.run("scoring").units == 0  # nothing is due before the interval
    clock.advance(timedelta(minutes=3))  # the step ending at T0 has settled for a minute
    again = w.run("scoring")
    assert again.units == 5 and again.detail["steps"] == 5
    with factory() as session:
        leases = session.scalars(select(JobLease).where(JobLease.job == "scoring")).all()
        assert {lease.owner for lease in leases} == {None}
        assert all(lease.runs == 2 for lease in leases)
    assert metric("vigil_job_units_total", {"job": "scoring"}) == 10
    assert metric("vigil_scoring_steps_total") == 5 * 288
    assert metric("vigil_job_lag_seconds", {"job": "scoring"}) == 0


def test_a_restarted_worker_neither_repeats_nor_skips_a_fleet_job(factory, embedded) -> None:
    add_fleet(factory, 1)
    clock, runs = FakeClock(), []
    assert worker(factory, embedded, clock, runs).run("report").units == 1
    clock.advance(timedelta(minutes=30))
    restarted = worker(factory, embedded, clock, runs, owner="w1-restarted")
    assert restarted.run("report").units == 0  # ran half an hour ago: not due
    clock.advance(timedelta(hours=2))  # the worker was down when it fell due
    assert restarted.run("report").units == 1
    assert runs == [T0, T0 + timedelta(hours=2, minutes=30)]


def test_a_failing_device_is_counted_and_the_others_are_scored(factory, embedded) -> None:
    add_fleet(factory, 3)
    for device in ("dev-000", "dev-001", "dev-002"):
        embedded.write(readings(device, T0 - timedelta(hours=6), T0))

    class Flaky:
        def __getattr__(self, name):
            return getattr(embedded, name)

        def query(self, device, *args, **kwargs):
            if device == "dev-001":
                raise OSError("disk on fire")
            return embedded.query(device, *args, **kwargs)

    w = worker(factory, Flaky(), FakeClock(), [])
    report = w.run("scoring")
    assert (report.units, report.failures) == (2, 1)
    assert w.metrics.registry.get_sample_value("vigil_job_failures_total", {"job": "scoring"}) == 1
    with factory() as session:
        scored = set(session.scalars(select(StreamState.device_id).where(
            StreamState.watermark_ms.is_not(None))))
    assert scored == {"dev-000", "dev-002"}


def test_the_service_schedules_passes_and_serves_metrics(factory, embedded) -> None:
    add_fleet(factory, 2)
    for device in ("dev-000", "dev-001"):
        embedded.write(readings(device, T0 - timedelta(hours=6), T0))
    settings = JobsSettings(intervals_s={"scoring": 60.0}, poll_s=0.2)
    w = Worker(factory=factory, store=embedded, settings=settings, metrics=JobMetrics(),
               clock=FakeClock())
    service = JobsService(w, metrics_host="127.0.0.1", metrics_port=0)
    service.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = requests.get(f"http://127.0.0.1:{service.port}/metrics", timeout=5).text
            if 'vigil_job_duration_seconds_count{job="scoring"} 1.0' in text:
                break
            time.sleep(0.1)
        assert 'vigil_job_units_total{job="scoring"} 2.0' in text
        assert 'vigil_job_duration_seconds_count{job="scoring"} 1.0' in text
        assert "vigil_job_lag_seconds" in text
    finally:
        service.stop()
    assert not service.scheduler.running


def test_the_service_runs_the_desks_watchdog_once_per_interval_for_the_fleet(tmp_path) -> None:
    from analytics.jobs.service import open_service
    from tests.jobs.conftest import migrated
    from vigil.config import Settings

    settings = Settings(data_dir=tmp_path)
    migrated(settings.sql_url).dispose()
    service = open_service(settings, metrics_port=0)
    assert set(service.jobs) == {"scoring", "ticket_rules", "retrain", "failure_prediction",
                                 "watchdog", "intake", "maintenance", "surveys", "retention",
                                 "delivery"}
    first = service.worker.run("watchdog")
    assert first.units == 1 and first.detail["tickets"] == 0
    other = open_service(settings, metrics_port=0)  # a second worker, or this one restarted
    assert other.worker.run("watchdog").units == 0  # not due again for a minute
    service.worker.store.close()
    other.worker.store.close()


def test_a_two_phase_job_prepares_outside_the_write_transaction(factory, embedded) -> None:
    """On SQLite a held write transaction would make the write in ``prepare`` wait 30 s and fail."""
    from analytics.jobs.runner import TwoPhaseTask
    from vigil.db.session import transaction

    add_fleet(factory, 1)

    def prepare(now):
        with transaction(factory) as session:  # another writer, while the job runs
            session.execute(JobLease.__table__.insert().values(
                job="other", key="x", due_at=now, runs=0))
        return 42

    def apply(session, now, prepared):
        return {"prepared": prepared}

    clock = FakeClock()
    w = Worker(factory=factory, store=embedded,
               settings=JobsSettings(intervals_s={"slow": 60.0}),
               fleet_tasks={"slow": TwoPhaseTask(prepare, apply, lease=timedelta(hours=1))},
               metrics=JobMetrics(), clock=clock)
    report = w.run("slow")
    assert (report.units, report.failures, report.detail) == (1, 0, {"prepared": 42})
    assert report.seconds < 10
    # A slow preparation keeps its claim for the task's lease, not the default two minutes.
    clock.advance(timedelta(minutes=30))
    slow = TwoPhaseTask(lambda now: clock.advance(timedelta(minutes=20)), apply,
                        lease=timedelta(hours=1))
    w.fleet_tasks["slow"] = slow
    assert w.run("slow").units == 1
