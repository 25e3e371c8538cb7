"""Pure parts: backoff, clock guard, commands, config, command-source lines."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edge_agent import protocol
from edge_agent.backoff import Backoff
from edge_agent.clock import ClockGuard
from edge_agent.commands import CommandProcessor
from edge_agent.config import ConfigError, load_config
from edge_agent.sources import Reading, SourceEvent, parse_line

NOW_MS = 1_760_000_000_000


def test_backoff_grows_exponentially_with_jitter_and_resets() -> None:
    b = Backoff(1.0, 30.0, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(8)]
    caps = [1, 2, 4, 8, 16, 30, 30, 30]
    for delay, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= delay <= cap
    assert len({round(d, 6) for d in delays[5:]}) == 3, "jitter spreads equal caps"
    b.reset()
    assert b.next_delay() <= 1.0
    other = Backoff(1.0, 30.0, rng=random.Random(4))
    assert [other.next_delay() for _ in range(8)] != delays
    with pytest.raises(ValueError):
        Backoff(0, 10)


def test_clock_guard_flags_floor_backwards_and_jumps() -> None:
    wall = [NOW_MS / 1000]
    mono = [100.0]
    guard = ClockGuard(floor_ms=NOW_MS - 86_400_000, max_jump_ms=60_000,
                       wall=lambda: wall[0], monotonic=lambda: mono[0])
    assert not guard.check(NOW_MS).suspect
    v = guard.check(946_684_800_000)
    assert v.suspect and "floor" in v.reason
    assert guard.episode_started(v) and not guard.episode_started(guard.check(946_684_800_001))
    assert guard.check(NOW_MS - 30_000).suspect  # well before a sample already sent
    wall[0] += 3600  # the wall clock is stepped an hour, monotonic time barely moved
    mono[0] += 1
    v = guard.check(NOW_MS + 3_600_000)
    assert v.suspect and "monotonic" in v.reason
    assert guard.suspect_count == 4
    guard.accept_current_clock()
    assert not guard.check(NOW_MS + 3_601_000).suspect


def _processor(state: str = "online") -> CommandProcessor:
    p = CommandProcessor("pump-1", lambda: state, lambda: NOW_MS)
    p.register("echo", lambda args: {"args": args})
    p.register("tune", lambda args: {"tuned": True}, changes_device=True)
    p.register("boom", lambda args: 1 / 0)
    return p


def _cmd(name: str, *, expires: int = NOW_MS + 1000, reply_to: str = "") -> bytes:
    return protocol.encode(protocol.Command(id="c1", cmd=name, args={"x": 1}, reply_to=reply_to,
                                            expires=expires))


def test_command_decisions() -> None:
    p = _processor()
    ok = p.handle(_cmd("echo"))
    assert ok and ok.result.ok and ok.result.output == {"args": {"x": 1}}
    assert ok.topic == protocol.topic("pump-1", "cmd/result")
    assert "unknown command" in p.handle(_cmd("nope")).result.output["error"]
    assert "expired" in p.handle(_cmd("echo", expires=NOW_MS - 1)).result.output["error"]
    assert "maintenance" in p.handle(_cmd("tune")).result.output["error"]
    assert _processor("maintenance").handle(_cmd("tune")).result.ok
    boom = p.handle(_cmd("boom"))
    assert not boom.result.ok and boom.result.output["error"].startswith("ZeroDivisionError")
    foreign = p.handle(_cmd("echo", reply_to="vigil/v1/dev/pump-2/cmd/result"))
    assert not foreign.result.ok and foreign.topic == protocol.topic("pump-1", "cmd/result")
    assert p.handle(b'{"v":1,"id":"c9","cmd":"echo"}').result.output["error"].startswith(
        "malformed")
    assert p.handle(b"not json") is None


def test_config_from_toml_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[device]\nid = "pump-7"\n[broker]\nport = 1884\n[sampling]\ninterval_s = 2\n')
    cfg = load_config(path, environ={"VIGIL_AGENT_BROKER_HOST": "broker.example",
                                     "VIGIL_AGENT_BROKER_PASSWORD": "s3cret",
                                     "VIGIL_AGENT_SOURCE_COMMAND": "read-port --json"})
    assert (cfg.device.id, cfg.broker.port, cfg.broker.host) == ("pump-7", 1884, "broker.example")
    assert cfg.sampling.interval_s == 2.0
    assert cfg.source.command == ["read-port", "--json"]
    assert cfg.redacted()["broker"]["password"] == "***"
    with pytest.raises(ConfigError, match="no setting 'prot'"):
        load_config(path, environ={"VIGIL_AGENT_BROKER_PROT": "1"})
    with pytest.raises(ConfigError, match="broker.port must be int"):
        bad = tmp_path / "bad.toml"
        bad.write_text('[device]\nid = "pump-7"\n[broker]\nport = "x"\n')
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="device.id"):
        load_config(None, environ={})
    with pytest.raises(ConfigError, match="unknown config section"):
        bad.write_text('[devise]\nid = "x"\n')
        load_config(bad, environ={})


def test_command_source_lines() -> None:
    assert parse_line(b'{"metrics": {"a": 1}}', NOW_MS) == Reading(NOW_MS, {"a": 1})
    assert parse_line(b'{"ts": 5, "metrics": {"a": 1}}', NOW_MS).ts == 5
    assert parse_line(b'{"event": {"code": "E-1", "severity": "error"}}', NOW_MS) == \
        SourceEvent("E-1", "error", "", NOW_MS)
    for bad in (b"nope", b"[1]", b'{"metrics": {}}', b'{"ts": "now", "metrics": {"a": 1}}'):
        with pytest.raises(ValueError):
            parse_line(bad, NOW_MS)
