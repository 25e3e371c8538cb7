"""The console's pages over HTTP, without a browser: sign-in, isolation, CSRF, escaping."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.console.conftest import PASSWORD, Running
from tests.tickets.test_survey import closed_ticket
from vigil.db.models import Device, Ticket
from vigil.knowledge.models import KnowledgeArticle
from vigil.tickets import survey


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
    ("manager", "/console/dashboard"), ("admin", "/console/fleet")])
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
    assert answer.headers["location"] == "/console/dashboard"


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
    with server.sessions() as session:  # other tests may have registered devices
        everyone = list(session.scalars(select(Device.id)))
    assert len(everyone) > 50  # more than one page
    assert len(seen) == len(everyone) and set(seen) == set(everyone)


def test_odd_ids_are_clear_answers_not_errors(client: TestClient) -> None:
    sign_in(client, "manager")
    assert client.get("/console/tickets/99999999999999999999").status_code == 422
    assert client.get("/console/tickets/0").status_code == 422
    assert client.get("/console/tickets/987654").status_code == 404
    assert client.get("/console/devices/no-such-device").status_code == 404
    assert client.get("/console/fleet", params={"site": "9" * 12}).status_code == 200
    too_long = client.get("/console/fleet", params={"q": "x" * 65})
    assert too_long.status_code == 422 and "q: at most 64 characters" in too_long.text
    assert client.get("/console/tickets", params={"state": "x" * 21}).status_code == 422


def test_list_filters_survive_paging_and_htmx_gets_only_the_results(client: TestClient) -> None:
    sign_in(client, "manager")
    page = client.get("/console/tickets", params={"closed": "yes", "priority": ""}).text
    assert "<h1>" in page
    part = client.get("/console/fleet", params={"sort": "model", "q": ""},
                      headers={"HX-Request": "true", "HX-Target": "fleet-results"})
    assert part.status_code == 200 and "<h1>" not in part.text and 'id="fleet-results"' in part.text
    found = re.search(r'<a href="([^"]+)"[^>]*rel="next"', part.text)
    assert found and "sort=model" in html.unescape(found.group(1))
    assert "cursor=" in html.unescape(found.group(1))


def test_the_device_page_polls_its_latest_readings(client: TestClient, server: Running) -> None:
    sign_in(client, "engineer")
    device = server.world.devices["a"][1]
    page = client.get(f"/console/devices/{device}").text
    assert f'hx-get="/console/devices/{device}/latest?every=30s"' in page
    latest = client.get(f"/console/devices/{device}/latest", headers={"HX-Request": "true"})
    assert latest.status_code == 200
    assert "temperature_c" in latest.text and "<html" not in latest.text
    sign_in(client, "customer-b")
    assert client.get(f"/console/devices/{device}/latest").status_code == 404


def test_only_administrators_reach_administration(client: TestClient) -> None:
    sign_in(client, "manager")
    assert client.get("/console/admin").status_code == 403
    token = client.cookies.get("vigil_csrf") or ""
    refused = client.post("/console/admin/devices", headers={"X-CSRF-Token": token},
                          data={"device_id": "pump-x1", "serial": "X1", "model": "IP-100"})
    assert refused.status_code == 403
    sign_in(client, "admin")
    assert "Register a device" in client.get("/console/admin").text


def test_an_admin_registers_a_device_sees_its_credential_once_and_revokes_it(
    client: TestClient, server: Running
) -> None:
    sign_in(client, "admin")
    headers = {"X-CSRF-Token": client.cookies.get("vigil_csrf") or "", "HX-Request": "true"}
    done = client.post("/console/admin/devices", headers=headers, data={
        "device_id": "ip100-new01", "serial": "IP-100-NEW01", "model": "IP-100"})
    assert done.status_code == 200, done.text
    password = re.search(r"<dt>Password</dt><dd><code>([^<]+)</code>", done.text)
    assert password and len(password.group(1)) >= 16
    assert password.group(1) not in client.get("/console/admin").text  # shown once only
    again = client.post("/console/admin/devices", headers=headers, data={
        "device_id": "ip100-new01", "serial": "IP-100-NEW02", "model": "IP-100"})
    assert again.status_code == 409 and 'role="alert"' in again.text
    revoked = client.post("/console/admin/devices/revoke", headers=headers,
                          data={"device_id": "ip100-new01"})
    assert revoked.status_code == 200 and "is revoked" in revoked.text
    missing = client.post("/console/admin/devices/revoke", headers=headers,
                          data={"device_id": "no-such-device"})
    assert missing.status_code == 404


def test_an_admin_adds_a_customer_user_who_sees_only_its_site(
    client: TestClient, server: Running
) -> None:
    sign_in(client, "admin")
    headers = {"X-CSRF-Token": client.cookies.get("vigil_csrf") or "", "HX-Request": "true"}
    admin_page = client.get("/console/admin").text
    site = re.search(r'<option value="(\d+)">Theatre 2', admin_page)
    assert site
    done = client.post("/console/admin/users", headers=headers, data={
        "username": "nurse-b", "display_name": "Nina Nurse", "role": "customer",
        "sites": [site.group(1)]})
    assert done.status_code == 200, done.text
    password = re.search(r"<p><code>([^<]+)</code>", done.text)
    assert password
    answer = client.post("/console/sign-in",
                         data={"username": "nurse-b", "password": password.group(1)})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/portal"
    portal = client.get("/console/portal").text
    assert server.world.devices["b"][0] in portal and server.world.devices["a"][0] not in portal


def test_the_dashboard_ranks_predicted_failures_and_lists_tickets_near_breach(
    client: TestClient, server: Running
) -> None:
    sign_in(client, "manager")
    page = client.get("/console/dashboard").text
    ranked = re.findall(r'<th scope="row"><a href="/console/devices/([^"]+)"', page)
    assert ranked[:1] == ["pm7-a025"]  # the highest probability of the seeded fleet (0.95)
    assert "motor_current_a" in page  # its main driver
    near = re.findall(r'<li><a href="/console/tickets/(\d+)"', page)
    assert near  # seeded tickets past their respond deadline
    vt3 = client.get("/console/dashboard", params={"model": "VT-3"}).text
    assert set(re.findall(r'<span class="muted serial">([^<]+)</span>', vt3)) == {"VT-3"}
    sign_in(client, "customer-a")
    assert client.get("/console/dashboard").status_code == 404


def test_staff_see_knowledge_base_suggestions_and_customers_do_not(
    client: TestClient, server: Running
) -> None:
    tid = server.world.tickets["a"][0]  # a mechanical fault on an IP-100
    sign_in(client, "engineer")
    page = client.get(f"/console/tickets/{tid}").text
    assert page.index("Occlusion alarms on IP-100") < page.index("Noisy fans")
    sign_in(client, "customer-a")
    page = client.get(f"/console/tickets/{tid}").text
    assert "Knowledge base" not in page and "Noisy fans" not in page


def _write(client: TestClient, path: str, data: dict[str, str]) -> Any:
    token = client.cookies.get("vigil_csrf") or ""
    return client.post(path, data=data, headers={"X-CSRF-Token": token, "HX-Request": "true"})


def test_engineers_rate_suggested_articles_and_the_counts_follow(
    client: TestClient, server: Running
) -> None:
    tid = server.world.tickets["b"][0]  # a mechanical fault on an IP-100
    with server.sessions() as session:
        article = session.scalars(select(KnowledgeArticle).where(
            KnowledgeArticle.title.startswith("Occlusion alarms"))).one().id
    path = f"/console/tickets/{tid}/articles/{article}/feedback"
    sign_in(client, "engineer")
    page = client.get(f"/console/tickets/{tid}").text
    assert f'hx-post="{path}"' in page
    done = _write(client, path, {"helpful": "yes"})
    assert done.status_code == 200 and "Article marked helpful" in done.text
    assert "1 found it helpful, 0 did not" in done.text
    assert 'aria-pressed="true">Helpful</button>' in done.text
    flipped = _write(client, path, {"helpful": "no"})
    assert "0 found it helpful, 1 did not" in flipped.text
    assert "article #%d marked not helpful" % article in flipped.text  # in the history
    assert _write(client, path, {"helpful": "maybe"}).status_code == 422
    sign_in(client, "admin")  # sees the articles, but rating is the engineers' and managers'
    page = client.get(f"/console/tickets/{tid}").text
    assert "Noisy fans" in page and f'hx-post="{path}"' not in page
    refused = _write(client, path, {"helpful": "yes"})
    assert refused.status_code == 403 and 'role="alert"' in refused.text
    sign_in(client, "customer-b")
    assert _write(client, path, {"helpful": "yes"}).status_code == 403
    sign_in(client, "customer-a")  # another customer's ticket does not exist for it
    assert _write(client, path, {"helpful": "yes"}).status_code == 404
    with server.sessions() as session:
        counts = session.get(KnowledgeArticle, article)
        assert counts is not None and (counts.helpful_count, counts.not_helpful_count) == (0, 1)


def test_the_quality_report_for_managers_and_admins_only(client: TestClient) -> None:
    sign_in(client, "manager")
    page = client.get("/console/reports/quality")
    assert page.status_code == 200, page.text
    text = page.text
    for heading in ("Service levels", "Outcomes", "Reliability by device model",
                    "Planned maintenance"):
        assert heading in text
    assert "St. Anna Hospital" not in text  # sites are named, their customers not needed
    rows = re.findall(r'<th scope="row">([^<]+)</th>', text.split('id="levels"')[1]
                      .split("</table>")[0])
    assert {"ICU North", "Cardiology", "Theatre 2", "All tickets"} <= set(rows)
    # The chart: three bars per group and the total, each with its figure as a tooltip.
    chart = text.split('id="compliance-chart"')[1].split("</svg>")[0]
    labels = re.findall(r'<text x="172"[^>]*>([^<]+)</text>', chart)
    assert "All tickets" in labels and "ICU North" in labels
    assert len(re.findall(r"<title>(respond|diagnose|restore): ", chart)) == 3 * len(labels)
    by_model = client.get("/console/reports/quality", params={"group": "model"}).text
    levels = by_model.split('id="levels"')[1].split("</table>")[0]
    assert {"IP-100", "PM-7", "VT-3"} <= set(re.findall(r'<th scope="row">([^<]+)</th>', levels))
    assert client.get("/console/dashboard").text.count('href="/console/reports/quality"') == 2
    sign_in(client, "admin")
    assert client.get("/console/reports/quality").status_code == 200
    sign_in(client, "engineer")
    assert client.get("/console/reports/quality").status_code == 403
    assert client.get("/console/reports/quality.csv").status_code == 403
    assert 'href="/console/reports/quality"' not in client.get("/console/dashboard").text
    sign_in(client, "customer-a")
    for path in ("/console/reports/quality", "/console/reports/quality.csv",
                 "/console/reports/quality/published"):
        assert client.get(path).status_code == 404


def test_the_quality_report_form_refuses_odd_periods_clearly(client: TestClient) -> None:
    sign_in(client, "manager")
    for params, says in (({"from": "2026-05-02", "to": "2026-05-01"}, "ends before it starts"),
                         ({"from": "yesterday"}, "YYYY-MM-DD"),
                         ({"group": "customer"}, "group: one of"),
                         ({"from": "2020-01-01", "to": "2026-01-01"}, "at most 731 days")):
        answer = client.get("/console/reports/quality", params=params)
        assert answer.status_code == 422 and says in answer.text, params
        assert 'role="alert"' in answer.text


def test_the_quality_csv_and_the_published_version(client: TestClient) -> None:
    sign_in(client, "manager")
    today = datetime.now(UTC).date()
    period = {"from": (today - timedelta(days=6)).isoformat(), "to": today.isoformat()}
    answer = client.get("/console/reports/quality.csv", params={**period, "group": "site"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert lines[-1]["group"] == "(all)" and int(lines[-1]["opened"]) >= 14
    assert {"ICU North", "Theatre 2"} <= {line["group"] for line in lines}
    page = client.get("/console/reports/quality", params={**period, "group": "site"}).text
    found = re.search(r'id="published-link" href="([^"]+)"', page)
    assert found
    link = html.unescape(found.group(1))
    assert "group=model" in link  # sites are not named in public
    published = client.get(link)
    assert published.status_code == 200 and "Reliability by device model" in published.text
    assert "script-src" not in published.headers["content-security-policy"]
    for private in ("St. Anna", "Riverside", "ICU North", "Theatre 2", "Eli Engineer",
                    "ip100-a000"):
        assert private not in published.text
    assert client.get("/console/reports/quality/published",
                      params={**period, "group": "site"}).status_code == 422
    # The analytics rules and their false alarms: a table on the page and a CSV of their own.
    assert 'id="rules"' in page and "False alarms by analytics rule" in published.text
    found = re.search(r'id="rules-csv-link" href="([^"]+)"', page)
    assert found
    rules = client.get(html.unescape(found.group(1)))
    assert rules.status_code == 200 and "-rules.csv" in rules.headers["content-disposition"]
    assert next(csv.reader(io.StringIO(rules.text))) == [
        "rule", "opened", "cancelled_false_alarm", "cancelled_share"]
    assert client.get("/console/reports/quality.csv",
                      params={**period, "section": "people"}).status_code == 422


def test_remote_diagnosis_without_a_broker_says_the_command_was_not_delivered(
    client: TestClient, server: Running
) -> None:
    device, ticket = server.world.devices["a"][1], server.world.tickets["a"][1]
    sign_in(client, "engineer")
    start = client.get(f"/console/devices/{device}/diagnosis", params={"ticket": ticket}).text
    assert f'<option value="{ticket}" selected>' in start
    assert f'href="/console/devices/{device}/diagnosis?ticket={ticket}"' in client.get(
        f"/console/tickets/{ticket}").text
    assert f'href="/console/devices/{device}/diagnosis"' in client.get(
        f"/console/devices/{device}").text
    opened = _write(client, "/console/diagnosis", {"device_id": device, "ticket": str(ticket)})
    assert opened.status_code == 204, opened.text
    page_url = opened.headers["hx-redirect"]
    session_id = int(page_url.rsplit("/", 1)[1])
    page = client.get(page_url).text
    assert "Run self_test" in page and f'href="/console/tickets/{ticket}"' in page
    # set_sampling changes the device: refused outside the maintenance state, and says why.
    assert re.search(r'id="cmd-set_sampling-button" class="danger" disabled', page)
    assert "Not now: set_sampling changes the device" in page
    commands = f"/console/diagnosis/{session_id}/commands"
    refused = _write(client, commands, {"cmd": "set_sampling", "interval_s": "0.5"})
    assert refused.status_code == 409 and 'role="alert"' in refused.text
    assert "needs the maintenance state" in refused.text
    bad = _write(client, commands, {"cmd": "get_logs", "lines": "many"})
    assert bad.status_code == 422 and "lines: must be a number" in bad.text
    assert _write(client, commands, {"cmd": "reboot"}).status_code == 422
    sent = _write(client, commands, {"cmd": "get_logs", "lines": "20"})
    assert sent.status_code == 200, sent.text
    assert "get_logs sent" in sent.text
    # This server's diagnosis bus is not connected: the transcript says so at once.
    more = client.get(f"/console/diagnosis/{session_id}/transcript", params={"after": 0},
                      headers={"HX-Request": "true"})
    assert more.status_code == 200
    assert "Sent <code>get_logs</code>" in more.text and "lines=20" in more.text
    assert "Not delivered" in more.text and 'hx-swap-oob="beforeend:#transcript"' in more.text
    cursor = re.search(r"transcript\?after=(\d+)", more.text)
    assert cursor
    last = int(cursor.group(1))
    nothing = client.get(f"/console/diagnosis/{session_id}/transcript", params={"after": last})
    assert nothing.status_code == 204 and "hx-refresh" not in nothing.headers
    closed = _write(client, f"/console/diagnosis/{session_id}/close", {})
    assert closed.status_code == 204
    over = client.get(f"/console/diagnosis/{session_id}/transcript", params={"after": last})
    assert over.status_code == 204 and over.headers["hx-refresh"] == "true"
    page = client.get(page_url).text
    assert "Closed" in page and "transcript?after=" not in page
    late = _write(client, commands, {"cmd": "self_test"})
    assert late.status_code == 409 and "the session is closed" in late.text


def test_remote_diagnosis_refuses_an_offline_device_and_other_roles(
    client: TestClient, server: Running
) -> None:
    offline = server.world.devices["a"][13]
    sign_in(client, "manager")
    start = client.get(f"/console/devices/{offline}/diagnosis").text
    assert "The device is offline" in start
    refused = _write(client, "/console/diagnosis", {"device_id": offline})
    assert refused.status_code == 409 and 'role="alert"' in refused.text
    assert "the device is offline; a session needs an online device" in refused.text
    sign_in(client, "admin")
    assert client.get(f"/console/devices/{offline}/diagnosis").status_code == 403
    assert 'id="diagnosis-link"' not in client.get(f"/console/devices/{offline}").text
    sign_in(client, "customer-a")
    assert client.get(f"/console/devices/{offline}/diagnosis").status_code == 404
    assert _write(client, "/console/diagnosis", {"device_id": offline}).status_code == 404
    assert client.get("/console/diagnosis/1").status_code == 404
    assert 'id="diagnosis-link"' not in client.get(f"/console/devices/{offline}").text


def test_the_survey_link_is_answered_once_without_signing_in(
        client: TestClient, server: Running) -> None:
    device = server.world.devices["a"][1]
    with server.sessions() as s, s.begin():
        ticket_id = closed_ticket(s, device=device, at=datetime.now(UTC))
        token = survey.issue(s, ticket_id=ticket_id, now=datetime.now(UTC)).token
    page = client.get(f"/console/survey/{token}")
    assert page.status_code == 200 and f"Ticket #{ticket_id}" in page.text
    assert "Riverside" not in page.text and "vigil_session" not in page.headers.get(
        "set-cookie", "")
    refused = client.post(f"/console/survey/{token}", data={"score": "9"})
    assert refused.status_code == 422 and "1 to 5" in refused.text
    done = client.post(f"/console/survey/{token}", data={"score": "5", "text": "Fast."})
    assert done.status_code == 200 and "Thank you for your answer." in done.text
    again = client.post(f"/console/survey/{token}", data={"score": "1"})
    assert "has been answered" in again.text
    with server.sessions() as s:
        assert s.get(Ticket, ticket_id).satisfaction_score == 5  # type: ignore[union-attr]
    unknown = client.get(f"/console/survey/{'x' * 43}")
    assert unknown.status_code == 404
