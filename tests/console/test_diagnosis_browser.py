"""The diagnosis console in Chromium, with the app's diagnosis bus on a real Mosquitto.

A second server runs the app on the console tests' database with its bus
started, and a simulated device answers commands with the edge agent's own
command processor (``tests.diagnosis.conftest.SimulatedDevice``), so a result
reaches the page only through the broker, the bus and the transcript.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import Engine

from api.app import create_app
from tests.console.conftest import Running, World
from tests.console.test_browser import TABLET, Tab
from tests.diagnosis.conftest import SimulatedDevice
from tests.live_app import served
from vigil.config import ApiSettings, MqttSettings, Settings
from vigil.diagnosis.bus import DiagnosisBus
from vigil.servers import Mosquitto
from vigil.telemetry.embedded import EmbeddedStore

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def live(engine: Engine, store: EmbeddedStore, world: World, mosquitto: Mosquitto,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The app with its diagnosis bus connected, on uvicorn on a free loopback port."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("console-diagnosis"),
                        mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port),
                        api=ApiSettings(diagnosis_client_id=f"console-{uuid.uuid4().hex[:8]}"))
    app = create_app(settings, engine=engine, telemetry=lambda: store)
    bus = DiagnosisBus(settings.mqtt, app.state.sessions,
                       client_id=str(settings.api.diagnosis_client_id),
                       shared_group=f"console{uuid.uuid4().hex[:8]}", sweep_s=0.2)
    app.state.diagnosis = bus
    bus.start()
    assert bus.wait_subscribed(10), "the diagnosis bus did not subscribe"
    try:
        with served(app, lifespan="off") as url:
            yield Running(url, world, app, app.state.sessions)
    finally:
        bus.stop()


@pytest.fixture
def tab(browser: Browser, live: Running, screenshots: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport=TABLET, bypass_csp=True)  # CSP would block axe
    yield Tab(context.new_page(), live.url, screenshots)
    context.close()


def test_an_engineer_runs_a_self_test_and_sees_the_answer_live(
    tab: Tab, live: Running, mosquitto: Mosquitto
) -> None:
    device_id, ticket = live.world.devices["b"][2], live.world.tickets["b"][2]
    device = SimulatedDevice(mosquitto.host, mosquitto.port, device_id)
    try:
        tab.sign_in("engineer")
        page = tab.go(f"/console/tickets/{ticket}")
        page.get_by_role("link", name=f"Diagnose {device_id} remotely").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(
            f"Remote diagnosis of {device_id}")
        expect(page.get_by_label("For ticket")).to_have_value(str(ticket))
        tab.check("18-diagnosis-open")
        page.get_by_role("button", name="Open a session").click()
        page.wait_for_url(re.compile(r"/console/diagnosis/\d+$"))
        expect(page.locator("#session-facts")).to_contain_text("Active")
        page.get_by_role("button", name="Run self_test").click()
        expect(page.get_by_role("status")).to_have_text(
            "self_test sent; its answer appears in the transcript.")
        transcript = page.locator("#transcript")
        answered = transcript.locator(".entry-result").filter(has_text="self_test")
        expect(answered).to_contain_text("Answered", timeout=15_000)
        expect(answered.locator("pre")).to_contain_text('"passed": true')
        expect(answered.locator("time")).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
        expect(page.locator(".transcript-empty")).to_be_hidden()
        assert [c.cmd for c in device.received] == ["self_test"]
        # The simulated device knows no get_logs: its agent refuses it, and the page says so.
        page.get_by_label("lines (optional)").fill("50")
        page.get_by_role("button", name="Run get_logs").click()
        refused = transcript.locator(".entry-result.refused")
        expect(refused).to_contain_text("Refused by the device", timeout=15_000)
        expect(refused).to_contain_text("unknown command 'get_logs'")
        assert refused.locator("pre").count() == 0  # the reason once, not again as JSON
        # set_sampling changes the device: not offered outside the maintenance state.
        expect(page.get_by_role("button", name="Run set_sampling")).to_be_disabled()
        expect(page.locator("#cmd-set_sampling-reason")).to_contain_text("maintenance state")
        expect(page.locator("#latest-readings")).to_contain_text("temperature_c")
        tab.check("19-diagnosis-session")
        page.get_by_role("button", name="Close the session").click()
        expect(page.locator("#session-facts")).to_contain_text("Closed")
        expect(page.get_by_role("button", name="Run self_test")).to_be_disabled()
        assert page.locator("#transcript-poll").count() == 0  # no more polling
        expect(transcript.locator(".entry")).to_have_count(4)
        tab.check("20-diagnosis-closed")
    finally:
        device.close()


def test_an_offline_device_is_refused_clearly(tab: Tab, live: Running) -> None:
    offline = live.world.devices["b"][3]  # every fifth device from the fourth is offline
    tab.sign_in("manager")
    page = tab.go(f"/console/devices/{offline}")
    page.get_by_role("link", name="Remote diagnosis").click()
    expect(page.locator("#open-session")).to_contain_text("The device is offline")
    page.get_by_role("button", name="Open a session").click()
    expect(page.get_by_role("alert")).to_have_text(
        "the device is offline; a session needs an online device")
    tab.shot("21-diagnosis-offline")
    assert tab.axe() == []
    # The 409 is the refusal this test asks for, and the browser logs it as an error.
    assert f"HTTP 409 {live.url}/console/diagnosis" in tab.errors
    assert all("409" in e for e in tab.errors)
