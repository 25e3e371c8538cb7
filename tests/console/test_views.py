"""The console's pages over HTTP, without a browser: sign-in, isolation, CSRF, escaping."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.console.conftest import PASSWORD, Running


@pytest.fixture
def client(server: Running) -> Iterator[TestClient]:
    # https, so the Secure session cookie comes back as a browser would send it.
    with TestClient(server.app, base_url="https://testserver", follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, username: str) -> str:
    answer = client.post("/console/sign-in", data={"username": username, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def test_pages_need_a_session(client: TestClient) -> None:
    answer = client.get("/console/fleet")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in?next=%2Fconsole%2Ffleet"


@pytest.mark.parametrize(("username", "home"), [
    ("customer-a", "/console/portal"), ("engineer", "/console/tickets"),
    ("manager", "/console/fleet"), ("admin", "/console/fleet")])
def test_each_role_lands_on_its_home(client: TestClient, username: str, home: str) -> None:
    assert sign_in(client, username) == home
    page = client.get(home)
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers


def test_a_wrong_password_is_refused_with_a_message(client: TestClient) -> None:
    answer = client.post("/console/sign-in", data={"username": "engineer", "password": "nope"})
    assert answer.status_code == 401
    assert "wrong" in answer.text and "vigil_session" not in answer.headers.get("set-cookie", "")


def test_sign_in_returns_only_to_console_paths(client: TestClient) -> None:
    answer = client.post("/console/sign-in", data={
        "username": "manager", "password": PASSWORD, "next": "//evil.example/console/"})
    assert answer.headers["location"] == "/console/fleet"


def test_sign_in_from_another_site_is_refused(client: TestClient) -> None:
    answer = client.post("/console/sign-in", headers={"Origin": "https://evil.example"},
                         data={"username": "manager", "password": PASSWORD})
    assert answer.status_code == 403


def test_a_customer_sees_only_its_own_devices(client: TestClient, server: Running) -> None:
    sign_in(client, "customer-a")
    fleet = client.get("/console/fleet").text
    assert server.world.devices["a"][0] in fleet
    assert not any(d in fleet for d in server.world.devices["b"])
    other = client.get(f"/console/devices/{server.world.devices['b'][0]}")
    assert other.status_code == 404
    assert server.world.devices["b"][0] in other.text  # it names what was asked, nothing more
    assert "Riverside" not in other.text
    ticket = client.get(f"/console/tickets/{server.world.tickets['b'][0]}")
    assert ticket.status_code == 404


def test_writes_need_the_csrf_token(client: TestClient, server: Running) -> None:
    sign_in(client, "engineer")
    tid = server.world.tickets["b"][-1]
    refused = client.post(f"/console/tickets/{tid}/comments", data={"text": "no token"})
    assert refused.status_code == 403
    token = client.cookies.get("vigil_csrf")
    assert token
    done = client.post(f"/console/tickets/{tid}/comments", data={"text": "with <b>token</b>"},
                       headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert done.status_code == 200
    assert "with &lt;b&gt;token&lt;/b&gt;" in done.text


def test_a_refused_move_says_why_and_changes_nothing(client: TestClient, server: Running) -> None:
    sign_in(client, "engineer")
    tid = server.world.tickets["b"][-2]
    token = client.cookies.get("vigil_csrf") or ""
    answer = client.post(f"/console/tickets/{tid}/transitions", data={"to": "closed"},
                         headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert answer.status_code in (403, 409)
    assert 'role="alert"' in answer.text
    page = client.get(f"/console/tickets/{tid}").text
    assert 'class="state state-open"' in page


def test_fleet_filters_and_pages(client: TestClient, server: Running) -> None:
    sign_in(client, "manager")
    first = client.get("/console/fleet", params={"model": "PM-7"}).text
    assert "pm7-" in first and "ip100-" not in first.split("<tbody>")[1]
    seen: list[str] = []
    url: str | None = "/console/fleet?sort=risk"
    while url:
        page = client.get(url).text
        seen += re.findall(r'<th scope="row"><a href="/console/devices/([^"]+)"', page)
        found = re.search(r'<a href="([^"]+)"[^>]*rel="next"', page)
        url = html.unescape(found.group(1)) if found else None
    everyone = server.world.devices["a"] + server.world.devices["b"]
    assert len(seen) == len(everyone) and set(seen) == set(everyone)  # 60 devices, 50 a page


def test_odd_ids_are_clear_answers_not_errors(client: TestClient) -> None:
    sign_in(client, "manager")
    assert client.get("/console/tickets/99999999999999999999").status_code == 422
    assert client.get("/console/tickets/0").status_code == 422
    assert client.get("/console/tickets/987654").status_code == 404
    assert client.get("/console/devices/no-such-device").status_code == 404
    assert client.get("/console/fleet", params={"site": "9" * 12}).status_code == 200


def test_the_device_page_polls_its_latest_readings(client: TestClient, server: Running) -> None:
    sign_in(client, "engineer")
    device = server.world.devices["a"][1]
    page = client.get(f"/console/devices/{device}").text
    assert f'hx-get="/console/devices/{device}/latest"' in page
    latest = client.get(f"/console/devices/{device}/latest", headers={"HX-Request": "true"})
    assert latest.status_code == 200
    assert "temperature_c" in latest.text and "<html" not in latest.text
    sign_in(client, "customer-b")
    assert client.get(f"/console/devices/{device}/latest").status_code == 404
