"""Service vouchers through the API: issued by the service organisation, read by the ticket's
readers, as HTML or PDF, every version kept."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.api.conftest import World

Headers = Callable[[str], dict[str, str]]


def test_issue_then_read_as_html_and_pdf(client: TestClient, headers: Headers,
                                         world: World) -> None:
    url = f"/api/v1/tickets/{world.ticket_ids['a']}/voucher"
    before = client.get(url, headers=headers("customer-a"))
    assert before.status_code == 404 and "no service voucher" in before.json()["detail"]
    issued = client.post(url, headers=headers("engineer"))
    assert issued.status_code == 201, issued.text
    assert (issued.json()["version"], issued.json()["has_pdf"]) == (1, True)
    html = client.get(url, headers=headers("customer-a"))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "SN-a0" in html.text and "ICU A" in html.text
    assert html.headers["x-voucher-digest"] == issued.json()["digest"]
    assert "script-src" not in html.headers["content-security-policy"]
    assert "default-src 'none'" in html.headers["content-security-policy"]
    pdf = client.get(url, params={"format": "pdf"}, headers=headers("customer-a"))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    client.post(f"/api/v1/tickets/{world.ticket_ids['a']}/comments",
                json={"text": "seal replaced"}, headers=headers("engineer"))
    second = client.post(url, headers=headers("manager"))
    assert second.json()["version"] == 2
    latest = client.get(url, headers=headers("customer-a"))
    assert latest.headers["x-voucher-version"] == "2" and "seal replaced" in latest.text
    first = client.get(url, params={"version": 1}, headers=headers("customer-a"))
    assert first.headers["x-voucher-version"] == "1" and "seal replaced" not in first.text
    assert client.get(url, params={"version": 3}, headers=headers("admin")).status_code == 404


def test_only_the_tickets_readers_see_it_and_field_staff_issue_it(
    client: TestClient, headers: Headers, world: World
) -> None:
    url = f"/api/v1/tickets/{world.ticket_ids['b']}/voucher"
    assert client.post(url, headers=headers("engineer")).status_code == 201
    other = client.get(url, headers=headers("customer-a"))
    missing = client.get("/api/v1/tickets/999999/voucher", headers=headers("customer-a"))
    assert other.status_code == missing.status_code == 404
    assert "ICU B" not in other.text
    assert client.get(url, headers=headers("customer-b")).status_code == 200
    for who in ("admin", "customer-b"):
        assert client.post(url, headers=headers(who)).status_code == 403
    assert client.get(url, params={"format": "docx"},
                      headers=headers("customer-b")).status_code == 422
