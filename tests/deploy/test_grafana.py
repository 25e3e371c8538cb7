"""The optional Grafana of docker-compose.yml: provisioning that points at Vigil's InfluxDB,
and a dashboard whose queries run on a real InfluxDB holding what Vigil writes."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import yaml

from tests.deploy.test_compose import ROOT, services
from tests.telemetry.conftest import influx_store
from vigil.config import ScoringSettings
from vigil.servers import InfluxDB
from vigil.telemetry.store import DEFAULT_MEASUREMENT, Point

GRAFANA = ROOT / "deploy" / "grafana"


def dashboard() -> dict[str, Any]:
    loaded = json.loads((GRAFANA / "dashboards" / "fleet.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def queries() -> list[str]:
    doc = dashboard()
    found = [t["query"] for p in doc["panels"] for t in p["targets"]]
    found += [v["query"] for v in doc["templating"]["list"]]
    return found


def test_the_provisioned_paths_and_secrets_are_the_ones_compose_mounts_and_sets() -> None:
    grafana = services()["grafana"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in grafana["volumes"]}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "vigil.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts[path] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    source = (GRAFANA / "provisioning" / "datasources" / "vigil.yml").read_text()
    used = set(re.findall(r"\$\{?([A-Z_]+)\}?", source))
    assert used and used <= set(grafana["environment"]), used
    [datasource] = yaml.safe_load(source)["datasources"]
    assert datasource["uid"] == "vigil-influxdb" and datasource["jsonData"]["dbName"] == "vigil"


def test_every_panel_uses_the_provisioned_source_and_measurements_vigil_writes() -> None:
    doc = dashboard()
    written = {DEFAULT_MEASUREMENT, ScoringSettings().scores_measurement}
    for panel in doc["panels"]:
        assert panel["datasource"]["uid"] == "vigil-influxdb", panel["title"]
    for query in queries():
        assert set(re.findall(r'FROM "(\w+)"', query)) <= written, query


def _as_grafana_sends(query: str) -> str:
    """The query with Grafana's macros and variables replaced as Grafana does."""
    return (query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1m")
            .replace("$device", "dev-1").replace("$site", "icu"))


def test_the_dashboards_queries_answer_on_influxdb(influxdb: InfluxDB,
                                                   influx_database: str) -> None:
    now_ms = int(time.time() * 1000)
    scores = ScoringSettings().scores_measurement
    with influx_store(influxdb, influx_database) as store:
        store.write([Point(device="dev-1", ts=now_ms - 60_000 * i, model="VT-3", site="icu",
                           metrics={"flow": 3.0 + i / 10, "temp_c": 21.0}) for i in range(10)])
        store.write([Point(device="dev-1", ts=now_ms - 60_000 * i, model="VT-3", site="icu",
                           metrics={"flow": 0.5}, measurement=scores) for i in range(10)])
    for query in queries():
        # A statement InfluxDB refuses raises here; one that matches nothing has no series.
        answer = influxdb.query(_as_grafana_sends(query), db=influx_database)
        assert answer["results"][0].get("series"), f"no data for {query}"
