"""The production deployment files, checked without a container engine.

docker-compose.yml must be valid against the Compose Specification's JSON
schema (vendored in ``compose-spec/``), run only real ``vigil`` commands, set
only real settings, give every service a health check and pin every image; the
Dockerfile must be multi-stage, install from the constraints file and run as a
non-root user.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from pydantic import BaseModel

from vigil.cli import COMMANDS, build_parser
from vigil.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "compose-spec" / "compose-spec.json"
VIGIL_IMAGE = "vigil:"
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def vigil_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items()
            if str(s.get("image", "")).startswith(VIGIL_IMAGE)}


def test_the_compose_file_follows_the_compose_specification() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    errors = [str(e).splitlines()[0] for e in validator.iter_errors(compose())]
    assert errors == []


def test_the_schema_refuses_what_compose_would_refuse() -> None:
    """The check has teeth: a misspelt key and a wrong type are errors."""
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    broken = compose()
    broken["services"]["api"]["healthcheck"]["retires"] = 3
    assert not validator.is_valid(broken)
    broken = compose()
    broken["services"]["jobs"]["deploy"]["replicas"] = "two"
    assert not validator.is_valid(broken)


def _check_vigil_argv(argv: list[str]) -> None:
    """Parse as `vigil` would: an unknown command or option exits."""
    assert argv[0] == "vigil", argv
    assert argv[1] in COMMANDS, f"vigil has no command {argv[1]!r}"
    try:
        build_parser(argv[1:]).parse_args(argv[1:])
    except SystemExit as exc:
        raise AssertionError(f"not a valid vigil command: {argv}") from exc


@pytest.mark.parametrize("name", sorted(vigil_services()))
def test_every_command_is_a_real_vigil_command(name: str) -> None:
    service = vigil_services()[name]
    _check_vigil_argv([_VARIABLE.sub("x", str(part)) for part in service["command"]])
    check = service["healthcheck"]["test"]
    if check[0] == "CMD" and check[1] == "vigil":
        _check_vigil_argv(check[1:])


def _setting_exists(path: list[str], model: type[BaseModel] = Settings) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    nested = field.annotation
    return isinstance(nested, type) and issubclass(nested, BaseModel) and _setting_exists(
        path[1:], nested)


@pytest.mark.parametrize("name", sorted(vigil_services()))
def test_every_variable_is_a_real_setting_with_a_valid_value(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = vigil_services()[name].get("environment", {})
    assert environment, name
    for variable, value in environment.items():
        assert variable.startswith("VIGIL_"), f"{name}: {variable} is not a Vigil setting"
        path = variable.removeprefix("VIGIL_").lower().split("__")
        assert _setting_exists(path), f"{name}: {variable} names no setting"
        monkeypatch.setenv(variable, _VARIABLE.sub("placeholder", str(value)))
    monkeypatch.setenv("VIGIL_CONFIG", "")
    Settings()  # the values have the settings' types and pass their checks


def test_a_misspelt_setting_would_be_caught() -> None:
    assert _setting_exists(["mqtt", "password_file"])
    assert not _setting_exists(["mqtt", "passwordfile"])
    assert not _setting_exists(["influx", "url"])


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_has_a_health_check(name: str) -> None:
    check = services()[name].get("healthcheck", {})
    assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert not check.get("disable", False)


@pytest.mark.parametrize("name", sorted(services()))
def test_every_image_is_pinned_by_version(name: str) -> None:
    image = str(services()[name]["image"])
    repository, _, tag = image.rpartition(":")
    assert repository and tag and tag != "latest" and re.search(r"\d", tag), image


def test_two_ingest_workers_split_the_devices_and_jobs_run_two_replicas() -> None:
    """Each ingest worker keeps its own partition: together all of them, none twice."""
    doc = compose()
    ingest = [s for s in doc["services"].values() if s.get("command") == ["vigil", "ingest"]]
    assert len(ingest) == 2
    for service in ingest:
        assert "deploy" not in service, "replicas of one service would share a partition"
        assert service["environment"]["VIGIL_INGEST__PARTITIONS"] == "2"
    assert sorted(s["environment"]["VIGIL_INGEST__PARTITION"] for s in ingest) == ["0", "1"]
    assert doc["services"]["jobs"]["deploy"]["replicas"] == 2


def test_state_lives_in_named_volumes() -> None:
    doc = compose()
    named = set(doc["volumes"])
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            assert source.startswith("./deploy/") or source in named, (name, volume)


def test_every_secret_the_compose_file_needs_is_in_the_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    needed = set(_VARIABLE.findall(text))
    example = (ROOT / "deploy" / "env.example").read_text()
    offered = set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE))
    assert needed and needed <= offered, needed - offered


def test_the_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2
    for stage in stages:
        image = stage.split()[1]
        assert re.search(r":\d", image), f"unpinned base image {image}"
    final = lines[lines.index(stages[-1]):]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any("-c requirements/constraints.txt" in line for line in lines)


def test_the_demo_simulator_logs_in_with_the_credentials_demo_fleet_writes() -> None:
    """Per-device credentials: the file `vigil demo-fleet` writes, for the same devices.

    The broker's ACL admits a device only with its own password; the simulator
    reads the compose secret that deploy/README.md fills with `vigil demo-fleet`.
    """
    doc = compose()
    simulator = doc["services"]["simulator"]
    argv = simulator["command"]
    assert "--password" not in argv
    secret = argv[argv.index("--credentials") + 1].removeprefix("/run/secrets/")
    assert secret in simulator["secrets"]
    source = doc["secrets"][secret]["file"].removeprefix("./")
    devices = argv[argv.index("--devices") + 1]
    readme = (ROOT / "deploy" / "README.md").read_text()
    step = next(line for line in readme.splitlines() if "vigil demo-fleet" in line
                and line.startswith("docker compose run"))
    command = step.split(" api ", 1)[1].split(" > ")
    assert command[1].strip() == source
    fleet = command[0].split()
    _check_vigil_argv(fleet)
    assert fleet[fleet.index("--devices") + 1] == devices
