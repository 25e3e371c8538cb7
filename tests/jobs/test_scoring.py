"""Streaming scoring against the real telemetry stores: watermark, state, replay, repair."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import detector as adapter
from analytics.jobs.scoring import score_device
from tests.jobs.conftest import STEP, T0, add_fleet, migrated, readings
from vigil.config import ScoringSettings
from vigil.db.models import Device, Ticket, TicketEvent
from vigil.db.session import make_session_factory, transaction
from vigil.scoring.models import AnomalyAlarm, StreamState
from vigil.telemetry.embedded import EmbeddedStore
from vigil.telemetry.store import TelemetryStore

SETTINGS = ScoringSettings()
DAY = timedelta(days=1)


@pytest.fixture(params=["embedded", "influxdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TelemetryStore]:
    if request.param == "embedded":
        impl: TelemetryStore = EmbeddedStore(tmp_path / "telemetry.db")
    else:
        from tests.telemetry.conftest import influx_store

        impl = influx_store(request.getfixturevalue("influxdb"),
                            request.getfixturevalue("influx_database"))
    with impl:
        yield impl


def run(factory: sessionmaker[Session], store: TelemetryStore, now, settings=SETTINGS,
        device="dev-000", decoded: adapter.DecodedStates | None = None):
    with transaction(factory) as session:
        return score_device(session, store=store, device=session.get(Device, device),
                            settings=settings, now=now, decoded=decoded)


def scores(store: TelemetryStore, device: str = "dev-000"):
    return store.query(device, T0 - 30 * DAY, T0 + 30 * DAY, measurement="scores")


def test_scores_complete_steps_and_saves_state_with_the_watermark(factory, store) -> None:
    add_fleet(factory, 1)
    store.write(readings("dev-000", T0 - 3 * DAY, T0))
    result = run(factory, store, T0)
    # The step that ended 2 minutes before now may still fill: the last scored ends at T0 - 5 min.
    assert result.steps == 3 * 288 - 1
    assert result.watermark_ms == int((T0 - STEP).timestamp() * 1000)
    with factory() as session:
        state = session.get(StreamState, "dev-000")
        assert state is not None and state.watermark_ms == result.watermark_ms
        assert state.scored_steps == result.steps and state.version >= 1
        detectors, dropped = adapter.decode_states(state.states)
    assert sorted(detectors) == ["flow", "temp"] and dropped == []
    written = scores(store)
    assert len(written) == result.steps
    assert set(written.columns) == {"flow", "temp"}
    assert ((written >= 0) & (written <= 1)).all().all()


def test_replayed_and_late_data_is_never_scored_twice(factory, store) -> None:
    add_fleet(factory, 1)
    points = readings("dev-000", T0 - 2 * DAY, T0)
    store.write(points)
    first = run(factory, store, T0)
    with factory() as session:
        saved = session.get(StreamState, "dev-000").states
    store.write(points)  # the outbox replays everything
    # A late sample with another value, for a step already scored.
    store.write(readings("dev-000", T0 - DAY, T0 - DAY + STEP, seed=9))
    again = run(factory, store, T0 + timedelta(minutes=1))
    assert again.steps == 0 and again.alarms == 0
    with factory() as session:
        state = session.get(StreamState, "dev-000")
        assert state.scored_steps == first.steps
        assert adapter.decode_states(state.states)[0]["flow"].get_state() == \
            adapter.decode_states(saved)[0]["flow"].get_state()
    assert len(scores(store)) == first.steps


def test_telemetry_delivered_late_after_an_outage_is_scored(factory, embedded) -> None:
    add_fleet(factory, 1)
    embedded.write(readings("dev-000", T0 - 3 * DAY, T0 - 2 * DAY))
    before = run(factory, embedded, T0 - DAY)  # the device is silent for a day
    assert before.watermark_ms == int((T0 - 2 * DAY).timestamp() * 1000)
    embedded.write(readings("dev-000", T0 - 2 * DAY, T0))  # its outbox catches up
    after = run(factory, embedded, T0)
    assert after.steps == 2 * 288 - 1
    assert len(scores(embedded)) == 3 * 288 - 1


def test_scoring_in_many_passes_gives_the_scores_of_one_pass(factory, embedded, tmp_path) -> None:
    """State saved and restored between passes changes nothing: the detectors resume exactly."""
    add_fleet(factory, 1)
    embedded.write(readings("dev-000", T0 - 4 * DAY, T0, spike_at=T0 - DAY))
    small = ScoringSettings(max_steps_per_pass=100)
    passes = 0
    while True:
        passes += 1
        if not run(factory, embedded, T0, settings=small).more:
            break
    assert passes == 12  # 1151 steps, 100 a pass

    other = make_session_factory(migrated(f"sqlite:///{tmp_path / 'other.db'}"))
    add_fleet(other, 1)
    with EmbeddedStore(tmp_path / "other-telemetry.db") as fresh:
        fresh.write(readings("dev-000", T0 - 4 * DAY, T0, spike_at=T0 - DAY))
        assert run(other, fresh, T0).more is False
        one_pass = scores(fresh)
    many_passes = scores(embedded)
    assert len(many_passes) == len(one_pass) == 4 * 288 - 1
    assert (many_passes.to_numpy() == one_pass.to_numpy()).all()


def test_detectors_kept_decoded_between_passes_give_the_scores_and_states_of_saved_ones(
        factory, embedded, tmp_path) -> None:
    add_fleet(factory, 1)
    embedded.write(readings("dev-000", T0 - 4 * DAY, T0, spike_at=T0 - DAY))
    small = ScoringSettings(max_steps_per_pass=100)
    decoded = adapter.DecodedStates(capacity=10)
    while run(factory, embedded, T0, settings=small, decoded=decoded).more:
        assert len(decoded) == 1

    other = make_session_factory(migrated(f"sqlite:///{tmp_path / 'other.db'}"))
    add_fleet(other, 1)
    with EmbeddedStore(tmp_path / "other-telemetry.db") as plain:
        plain.write(readings("dev-000", T0 - 4 * DAY, T0, spike_at=T0 - DAY))
        while run(other, plain, T0, settings=small).more:
            pass
        assert (scores(embedded).to_numpy() == scores(plain).to_numpy()).all()
    with factory() as a, other() as b:
        assert a.get(StreamState, "dev-000").states == b.get(StreamState, "dev-000").states


def test_kept_detectors_whose_save_rolled_back_are_not_used(factory, embedded) -> None:
    """The saved blob, not the device, finds kept detectors: a pass whose transaction failed
    after the save leaves the database's states, which are decoded again."""
    add_fleet(factory, 1)
    embedded.write(readings("dev-000", T0 - 3 * DAY, T0))
    decoded = adapter.DecodedStates(capacity=10)
    run(factory, embedded, T0 - 2 * DAY, decoded=decoded)
    with factory() as session:
        saved = session.get(StreamState, "dev-000").states
    with pytest.raises(RuntimeError), transaction(factory) as session:
        score_device(session, store=embedded, device=session.get(Device, "dev-000"),
                     settings=SETTINGS, now=T0 - DAY, decoded=decoded)
        raise RuntimeError("the commit fails")
    with factory() as session:
        assert session.get(StreamState, "dev-000").states == saved  # rolled back
    kept, dropped = decoded.take("dev-000", saved)
    # Decoded afresh from the saved blob: the kept detectors had scored the lost day.
    assert dropped == [] and kept["flow"].get_state() == adapter.decode_states(saved)[0][
        "flow"].get_state()
    assert len(decoded) == 0


def test_kept_detectors_are_bounded_and_taken_once() -> None:
    decoded = adapter.DecodedStates(capacity=2)
    detectors = {"flow": adapter.new_detector()}
    blob = adapter.encode_states(detectors)
    for device in ("a", "b", "c"):
        decoded.keep(device, blob, detectors)
    assert len(decoded) == 2  # "a", scored longest ago, dropped
    assert decoded.take("b", blob)[0] is detectors
    assert decoded.take("b", blob)[0] is not detectors  # taken: decoded from the blob now
    assert decoded.take("a", blob)[0] is not detectors
    off = adapter.DecodedStates(capacity=0)
    off.keep("a", blob, detectors)
    assert len(off) == 0


def test_a_spike_raises_an_alarm_at_its_step(factory, embedded) -> None:
    add_fleet(factory, 1)
    spike = T0 - DAY
    embedded.write(readings("dev-000", T0 - 4 * DAY, T0, spike_at=spike))
    result = run(factory, embedded, T0)
    with factory() as session:
        alarms = session.scalars(select(AnomalyAlarm)).all()
    assert result.alarms == len(alarms) >= 1
    assert any(a.metric == "flow" and a.ts == spike and a.value > 200 for a in alarms)
    assert all(a.score >= adapter.DEFAULT_ALARM_SCORE for a in alarms)


def test_a_fresh_stream_is_scored_but_raises_no_alarm_in_its_probation(
        factory, embedded) -> None:
    add_fleet(factory, 2)
    spike = T0 - 3 * DAY  # one day into the stream: 288 steps of its 576-step probation
    for device in ("dev-000", "dev-001"):
        embedded.write(readings(device, T0 - 4 * DAY, T0 - 2 * DAY, spike_at=spike))
    patient = run(factory, embedded, T0 - 2 * DAY, device="dev-000")
    eager = run(factory, embedded, T0 - 2 * DAY,
                settings=SETTINGS.model_copy(update={"alarm_after_steps": 0}), device="dev-001")
    assert patient.steps == eager.steps and patient.alarms == 0 < eager.alarms
    at_spike = scores(embedded, "dev-000").loc[spike, "flow"]
    assert at_spike >= adapter.DEFAULT_ALARM_SCORE  # scored as strange, only not alarmed
    # Past the probation the same stream alarms as usual, in later passes too.
    embedded.write(readings("dev-000", T0 - 2 * DAY, T0, spike_at=T0 - DAY))
    assert run(factory, embedded, T0, device="dev-000").alarms >= 1


def test_a_repair_starts_a_fresh_baseline(factory, embedded) -> None:
    add_fleet(factory, 1)
    embedded.write(readings("dev-000", T0 - 3 * DAY, T0))
    run(factory, embedded, T0 - DAY)
    with transaction(factory) as session:
        ticket = Ticket(device_id="dev-000", priority="P2", category="mechanical",
                        source="analytics", signature="anomaly:flow", title="flow",
                        state="repaired")
        session.add(ticket)
        session.flush()
        session.add(TicketEvent(ticket_id=ticket.id, actor="eng1", kind="transition",
                                from_state="dispatched", to_state="repaired", at=T0 - DAY))
    result = run(factory, embedded, T0)
    assert result.reset is True
    with factory() as session:
        state = session.get(StreamState, "dev-000")
        assert state.baseline_from == T0 - DAY
        flow = adapter.decode_states(state.states)[0]["flow"]
    # Fresh detectors saw only the day's steps after the repair, not the 575 before it too.
    assert flow.get_state()["learned"]["seen"] == result.steps == 288
    # Closing the same ticket later is the same repair: no second reset.
    with transaction(factory) as session:
        session.add(TicketEvent(ticket_id=1, actor="eng1", kind="transition",
                                from_state="verified", to_state="closed", at=T0))
    assert run(factory, embedded, T0 + DAY).reset is False


def test_a_device_without_telemetry_keeps_no_watermark(factory, embedded) -> None:
    add_fleet(factory, 2)
    embedded.write(readings("dev-001", T0 - DAY, T0))
    result = run(factory, embedded, T0)
    assert result.steps == 0 and result.watermark_ms is None
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(AnomalyAlarm)) == 0


def test_a_state_the_detector_code_refuses_starts_that_stream_afresh(factory, embedded) -> None:
    add_fleet(factory, 1)
    embedded.write(readings("dev-000", T0 - 2 * DAY, T0))
    run(factory, embedded, T0 - DAY)
    with transaction(factory) as session:
        state = session.get(StreamState, "dev-000")
        detectors, _ = adapter.decode_states(state.states)
        saved = {m: d.get_state() for m, d in detectors.items()}
        saved["flow"]["detector"] = "os.system"  # not a detector: must never be imported
        document = {"format": adapter.STATES_FORMAT, "streams": saved}
        state.states = zlib.compress(json.dumps(document).encode())
    result = run(factory, embedded, T0)
    assert result.dropped_states == ["flow"]
    with factory() as session:
        kept, dropped = adapter.decode_states(session.get(StreamState, "dev-000").states)
    assert dropped == [] and kept["flow"].get_state()["learned"]["seen"] == result.steps
    assert kept["temp"].get_state()["learned"]["seen"] == 288 + result.steps - 1
    assert adapter.decode_states(b"not zlib") == ({}, ["*"])


def test_a_new_step_for_the_device_model_restarts_its_detectors_on_whole_steps(
    factory, embedded
) -> None:
    add_fleet(factory, 1)
    embedded.write(readings("dev-000", T0 - 2 * DAY, T0))
    first = run(factory, embedded, T0 - DAY)  # watermark T0 - 1 day - 5 min
    ten_minutes = ScoringSettings(step_s={"infusion_pump": 600})
    result = run(factory, embedded, T0, settings=ten_minutes)
    assert first.steps == 287 and result.reset is True
    # The watermark moves up to a whole 10-minute step; a day of 10-minute steps follows.
    assert result.watermark_ms == int((T0 - timedelta(minutes=10)).timestamp() * 1000)
    assert result.steps == 144 - 1
    with factory() as session:
        state = session.get(StreamState, "dev-000")
        assert state.step_s == 600
        flow = adapter.decode_states(state.states)[0]["flow"]
    assert flow.get_state()["learned"]["seen"] == result.steps


def test_only_lists_of_floats_are_packed_and_every_value_comes_back_as_it_was() -> None:
    state = {"floats": [0.5] * 10, "ints": list(range(10)), "mixed": [1.0] * 9 + [2],
             "short": [1.5, 2.5], "bools": [True] * 10}
    packed = adapter._pack(state)
    assert set(packed["floats"]) == {adapter.PACKED}
    assert packed["ints"] == state["ints"] and packed["mixed"] == state["mixed"]
    back = adapter._unpack(json.loads(json.dumps(packed)))
    assert back == state
    assert [type(v) for v in back["mixed"]] == [float] * 9 + [int]
