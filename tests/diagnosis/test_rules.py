"""The pure rules of diagnosis: the allow-list, who may diagnose, what may be sent when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.diagnosis import rules
from vigil.errors import Conflict, Forbidden, InvalidRequest

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


@pytest.fixture(scope="module")
def allow() -> rules.AllowList:
    return rules.AllowList.load()


def test_the_shipped_list_has_the_designs_commands(allow: rules.AllowList) -> None:
    names = [s.name for s in allow.for_model("IP-100")]
    assert names == ["self_test", "get_logs", "get_config", "set_sampling"]
    assert allow.find("IP-100", "set_sampling").changes_device
    assert not allow.find("IP-100", "self_test").changes_device


def test_a_model_of_its_own_replaces_the_default() -> None:
    allow = rules.AllowList.parse({"commands": {"a": {}, "b": {}},
                                   "models": {"*": ["a", "b"], "X-1": ["a"]}})
    assert [s.name for s in allow.for_model("X-1")] == ["a"]
    with pytest.raises(InvalidRequest, match="not allowed for model X-1"):
        allow.find("X-1", "b")


def test_a_list_naming_an_unknown_command_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown command 'c'"):
        rules.AllowList.parse({"commands": {"a": {}}, "models": {"*": ["a", "c"]}})


def test_arguments_are_checked_against_the_spec(allow: rules.AllowList) -> None:
    spec = allow.find("m", "set_sampling")
    assert spec.check_args({"interval_s": 0.1, "duration_s": 30}) == {
        "interval_s": 0.1, "duration_s": 30}
    with pytest.raises(InvalidRequest, match="args.interval_s: required"):
        spec.check_args({})
    with pytest.raises(InvalidRequest, match="args.interval_s: must be between"):
        spec.check_args({"interval_s": 0.001})
    with pytest.raises(InvalidRequest, match="args.rm: set_sampling takes no such"):
        spec.check_args({"interval_s": 1, "rm": 1})
    with pytest.raises(InvalidRequest, match="must be a number"):
        spec.check_args({"interval_s": True})
    with pytest.raises(InvalidRequest, match="whole number"):
        allow.find("m", "get_logs").check_args({"lines": 2.5})


def test_only_engineers_and_managers_diagnose() -> None:
    rules.may_diagnose({"engineer"})
    rules.may_diagnose({"manager", "customer"})
    for roles in ({"customer"}, {"admin"}, set()):
        with pytest.raises(Forbidden):
            rules.may_diagnose(roles)


def test_a_session_needs_an_online_device() -> None:
    rules.may_open(online=True, state="online")
    rules.may_open(online=True, state="maintenance")
    with pytest.raises(Conflict, match="offline"):
        rules.may_open(online=False, state="online")
    with pytest.raises(Conflict, match="offline"):
        rules.may_open(online=True, state="offline")


def test_behaviour_changing_commands_need_maintenance(allow: rules.AllowList) -> None:
    spec = allow.find("m", "set_sampling")
    with pytest.raises(Conflict, match="needs the maintenance state; the device reports online"):
        rules.may_send(spec, expires_at=LATER, closed_at=None, online=True, state="online",
                       now=NOW)
    rules.may_send(spec, expires_at=LATER, closed_at=None, online=True, state="maintenance",
                   now=NOW)
    rules.may_send(allow.find("m", "self_test"), expires_at=LATER, closed_at=None, online=True,
                   state="online", now=NOW)


def test_nothing_is_sent_in_an_expired_or_closed_session(allow: rules.AllowList) -> None:
    spec = allow.find("m", "self_test")
    with pytest.raises(Conflict, match="expired"):
        rules.may_send(spec, expires_at=NOW, closed_at=None, online=True, state="online", now=NOW)
    with pytest.raises(Conflict, match="closed"):
        rules.may_send(spec, expires_at=LATER, closed_at=NOW, online=True, state="online",
                       now=NOW)
    assert rules.is_active(expires_at=LATER, closed_at=None, now=NOW)
    assert not rules.is_active(expires_at=NOW, closed_at=None, now=NOW)


def test_a_command_waits_its_timeout_but_not_past_the_session(allow: rules.AllowList) -> None:
    spec = allow.find("m", "self_test")
    assert rules.command_expiry(spec, NOW, LATER) == NOW + timedelta(seconds=30)
    assert rules.command_expiry(spec, NOW, NOW + timedelta(seconds=5)) == NOW + timedelta(
        seconds=5)
