"""Simulator physics, fleet plans and labels; a small fleet through a real broker."""

from __future__ import annotations

import ast
import json
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from edge_agent import protocol
from edge_agent.simulator.fleet import Fleet
from edge_agent.simulator.physics import MODELS, DeviceSim, Fault, Site, usage
from edge_agent.simulator.scenario import plan_fleet, read_labels, write_labels
from edge_agent.transport import BrokerSettings
from tests.edge_agent.conftest import REPO, Recorder, wait_for
from vigil.servers import Mosquitto

DAY_MS = 86_400_000
START = 1_760_000_000_000
ENV = {"ambient_temp_c", "humidity_pct", "supply_voltage_v"}
EXPECTED = {
    "infusion_pump": {"motor_current_ma", "occlusion_pressure_mmhg", "battery_voltage_v",
                      "battery_temp_c", "volume_error_pct"},
    "ventilator": {"turbine_speed_rpm", "turbine_temp_c", "o2_cell_mv", "airway_pressure_cmh2o"},
    "ct": {"tube_temp_c", "anode_rotation_hz", "arcs_per_hour", "gantry_vibration_mm_s"},
    "mri": {"helium_level_pct", "cold_head_temp_k", "compressor_current_a",
            "magnet_pressure_psi"},
    "patient_monitor": {"battery_voltage_v", "internal_temp_c"},
}


def series(sim: DeviceSim, metric: str, start: int, days: float, step_s: int = 600) -> list[float]:
    return [sim.sample(t)[metric] for t in range(start, start + int(days * DAY_MS), step_s * 1000)]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_reports_its_metrics_and_the_environment(model: str) -> None:
    sim = DeviceSim("d-1", model, Site("s"), seed=1)
    metrics = sim.sample(START)
    assert EXPECTED[model] | ENV <= set(metrics)
    for name, value in metrics.items():
        protocol.validate_metric_name(name)
        assert isinstance(value, float | int)


def test_same_seed_same_readings_other_seed_other_readings() -> None:
    a = DeviceSim("ct-1", "ct", Site("s"), seed=5)
    b = DeviceSim("ct-1", "ct", Site("s"), seed=5)
    c = DeviceSim("ct-1", "ct", Site("s"), seed=6)
    times = range(START, START + 3_600_000, 60_000)
    ra = [a.sample(t) for t in times]
    assert ra == [b.sample(t) for t in times]
    assert ra != [c.sample(t) for t in times]


def test_usage_follows_the_working_day() -> None:
    site = Site("s", utc_offset_h=0)
    midnight = 1_760_054_400_000 - 1_760_054_400_000 % DAY_MS  # a UTC midnight
    assert usage(midnight + 13 * 3_600_000, site, "ct") > 5 * usage(midnight + 3 * 3_600_000,
                                                                       site, "ct")
    assert usage(midnight + 3 * 3_600_000, site, "ventilator") > 0.5  # intensive care runs at night


@pytest.mark.parametrize("model,fault,metric,direction", [
    ("mri", "cold_head_decline", "cold_head_temp_k", 1),
    ("mri", "cold_head_decline", "magnet_pressure_psi", 1),
    ("ventilator", "turbine_bearing_wear", "turbine_temp_c", 1),
    ("ventilator", "o2_cell_drift", "o2_cell_mv", -1),
    ("ct", "tube_ageing", "arcs_per_hour", 1),
    ("ct", "anode_bearing_wear", "gantry_vibration_mm_s", 1),
    ("infusion_pump", "battery_ageing", "battery_temp_c", 1),
    ("infusion_pump", "power_problem", "supply_voltage_v", -1),
])
def test_degradation_moves_its_signal_towards_failure(model: str, fault: str, metric: str,
                                                      direction: int) -> None:
    onset, failure = START + 10 * DAY_MS, START + 30 * DAY_MS
    sick = DeviceSim("d-1", model, Site("s"), seed=2,
                     faults=(Fault("d-1", model, fault, onset, failure),))
    healthy = DeviceSim("d-1", model, Site("s"), seed=2)
    before = statistics.mean(series(sick, metric, START, 5))
    late_sick = statistics.mean(series(sick, metric, failure - 4 * DAY_MS, 4))
    late_healthy = statistics.mean(series(healthy, metric, failure - 4 * DAY_MS, 4))
    assert direction * (late_sick - late_healthy) > 0
    assert direction * (late_sick - before) > 0


def test_device_raises_warning_then_failure_code_once() -> None:
    fault = Fault("ct-9", "ct", "tube_ageing", START, START + 10 * DAY_MS)
    sim = DeviceSim("ct-9", "ct", Site("s"), seed=1, faults=(fault,))
    raised = []
    for t in range(START, START + 12 * DAY_MS, 3_600_000):
        raised += [(t, e.code, e.severity) for e in sim.events(t)]
    assert [(c, s) for _, c, s in raised] == [("W-TUBE-ARC", "warning"), ("E-TUBE-ARC", "critical")]
    assert raised[1][0] >= fault.failure_ms and raised[0][0] < fault.failure_ms


def test_fleet_plan_is_deterministic_and_labels_round_trip(tmp_path: Path) -> None:
    plan = plan_fleet(300, seed=9, start_ms=START, end_ms=START + 60 * DAY_MS)
    assert plan == plan_fleet(300, seed=9, start_ms=START, end_ms=START + 60 * DAY_MS)
    assert plan != plan_fleet(300, seed=10, start_ms=START, end_ms=START + 60 * DAY_MS)
    assert {s.model for s in plan} == set(MODELS)
    assert len({s.site.name for s in plan}) >= 5
    faulty = [s for s in plan if s.faults]
    assert 30 <= len(faulty) <= 90
    n = write_labels(tmp_path / "labels.csv", plan)
    rows = read_labels(tmp_path / "labels.csv")
    assert n == len(rows) == len(faulty)
    for row, spec in zip(rows, faulty, strict=True):
        f = spec.faults[0]
        assert (row["device"], row["fault_type"], int(row["onset_ms"]), int(row["failure_ms"])) \
            == (spec.device_id, f.fault_type, f.onset_ms, f.failure_ms)
        assert START <= f.onset_ms < f.failure_ms


@pytest.mark.servers
def test_small_fleet_live_and_backfill_through_the_broker(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    now = int(time.time() * 1000)
    specs = plan_fleet(12, seed=3, start_ms=now - 2 * DAY_MS, end_ms=now, prefix=prefix,
                       fault_fraction=0.5)
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{protocol.TOPIC_ROOT}/+/#"])
    fleet = Fleet(specs, seed=3, broker=BrokerSettings(port=mosquitto.port),
                  outbox_path=tmp_path / "fleet.db", interval_s=0.5)
    try:
        fleet.connect()
        assert fleet.wait_connected(60)
        produced = fleet.backfill(now - 2 * DAY_MS, now, 600)
        assert produced == 12 * 288
        assert fleet.drain(60)
        fleet.run(3.0)
        # A command to one virtual device, answered through the same code as the agent's.
        target = specs[0].device_id
        cmd = protocol.Command(id="sim-1", cmd="self_test", args={}, reply_to="",
                               expires=int(time.time() * 1000) + 60_000)
        rec.client.publish(protocol.topic(target, "cmd"), protocol.encode(cmd), qos=1)
        end = time.monotonic() + 30
        while "sim-1" not in rec.results() and time.monotonic() < end:
            fleet.step()
        assert rec.results()["sim-1"].ok
        assert fleet.drain(60)
        wait_for(lambda: sum(len(m.samples) for t, p in rec.of_kind("telemetry")
                             if prefix in t for m in [protocol.decode_telemetry(p)]) >= 12 * 288,
                 30, "history at the subscriber")
        per_device: dict[str, set[int]] = {}
        for topic, payload in rec.of_kind("telemetry"):
            device, _ = protocol.parse_topic(topic)
            if not device.startswith(prefix):
                continue
            per_device.setdefault(device, set()).update(
                s.ts for s in protocol.decode_telemetry(payload).samples)
        assert set(per_device) == {s.device_id for s in specs}
        for ts in per_device.values():
            history = [t for t in ts if t < now]
            assert len(history) == 288 and min(history) == now - 2 * DAY_MS
            assert len(ts) - len(history) >= 4  # live samples at 2 Hz for 3 s
        assert {s.state for s in rec.statuses()} >= {"online"}
    finally:
        fleet.close()
        rec.close()


def test_edge_agent_imports_only_the_standard_library_and_paho() -> None:
    code = """
import importlib, pkgutil, sys
import edge_agent
names = ['edge_agent'] + [m.name for m in pkgutil.walk_packages(edge_agent.__path__, 'edge_agent.')]
for name in names:
    importlib.import_module(name)
top = {m.split('.')[0] for m in sys.modules}
print(len(names))
print(' '.join(sorted(top)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout.split("\n")
    assert int(out[0]) >= 15
    loaded = set(out[1].split())
    stdlib = set(sys.stdlib_module_names) | {"__main__", "_distutils_hack", "sitecustomize"}
    # The editable-install finder is packaging machinery, present before any import.
    foreign = {m for m in loaded - stdlib - {"edge_agent", "paho"}
               if not m.startswith("__editable__")}
    assert not foreign, f"edge_agent pulls in {sorted(foreign)}"
    for banned in ("vigil", "ingest", "analytics", "api", "pandas", "numpy", "sqlalchemy"):
        assert banned not in loaded


@pytest.mark.servers
def test_vigil_simulate_command_runs_backfill_then_live(mosquitto: Mosquitto,
                                                        tmp_path: Path) -> None:
    prefix = f"c{uuid.uuid4().hex[:6]}-"
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "simulate", "--devices", "6", "--seed", "4",
         "--broker", f"127.0.0.1:{mosquitto.port}", "--outbox", str(tmp_path / "o.db"),
         "--labels", str(tmp_path / "labels.csv"), "--backfill-days", "0.5",
         "--backfill-step", "600", "--duration", "2", "--fault-fraction", "1",
         "--prefix", prefix],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "backfill: 432 samples" in done.stdout
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["outbox_depth"] <= 6 and stats["samples_queued"] >= 432 + 6
    labels = read_labels(tmp_path / "labels.csv")
    assert len(labels) == 6 and all(r["device"].startswith(prefix) for r in labels)
    truth = json.loads((tmp_path / "labels.json").read_text())
    assert truth["kind"] == "realistic" and truth["seed"] == 4
    assert [f["device"] for f in truth["faults"]] == [r["device"] for r in labels]


@pytest.mark.servers
def test_vigil_simulate_stops_and_drains_on_sigint_even_when_it_was_ignored_at_start(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A shell's background job inherits SIGINT ignored; the simulator must still stop on it."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "simulate", "--devices", "3", "--seed", "4",
         "--broker", f"127.0.0.1:{mosquitto.port}", "--outbox", str(tmp_path / "o.db"),
         "--labels", str(tmp_path / "labels.csv"), "--interval", "1", "--drain", "30",
         "--prefix", f"s{uuid.uuid4().hex[:6]}-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(8)  # connected and live
        sim.send_signal(signal.SIGINT)
        out, err = sim.communicate(timeout=60)
    finally:
        sim.kill()
    assert sim.returncode == 0, err[-2000:]
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["samples_queued"] > 0 and stats["outbox_depth"] == 0


def test_vigil_agent_check_reports_bad_settings_clearly(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text('[device]\nid = "pump-1"\n')
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    ok = subprocess.run([sys.executable, "-m", "edge_agent.cli", str(cfg), "--check"],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert ok.returncode == 0 and "pump-1" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "edge_agent.cli", str(cfg), "--check"],
                         capture_output=True, text=True, cwd=REPO, timeout=60,
                         env={**env, "VIGIL_AGENT_BROKER_PORT": "eighty"})
    assert bad.returncode == 2
    assert "VIGIL_AGENT_BROKER_PORT='eighty' is not a valid int" in bad.stderr


def test_no_edge_agent_module_imports_anything_else_even_lazily() -> None:
    """Imports inside functions count too: the agent ships without the server side."""
    allowed = set(sys.stdlib_module_names) | {"edge_agent", "paho", "__future__"}
    foreign: list[str] = []
    for path in sorted((REPO / "edge_agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            foreign += [f"{path.relative_to(REPO)}: {n}" for n in names
                        if n.split(".")[0] not in allowed]
    assert not foreign, foreign
