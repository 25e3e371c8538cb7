"""The console in a real browser: Debian's headless Chromium driven by Playwright.

Every page is checked for console errors and with axe-core (no serious or
critical violation), and saved as a screenshot in the folder of the
``screenshots`` fixture. Under CI a missing Chromium fails the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.console.conftest import PASSWORD, Running

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
TABLET: ViewportSize = {"width": 1024, "height": 768}


class Tab:
    """A signed-in browser page that records console errors and takes screenshots."""

    def __init__(self, page: Page, base: str, folder: Path) -> None:
        self.page = page
        self.base = base
        self.folder = folder
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", lambda r: self.errors.append(f"HTTP {r.status} {r.url}")
                if r.status >= 400 else None)

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def sign_in(self, username: str) -> None:
        page = self.go("/console/sign-in")
        page.get_by_label("User name").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/console/(portal|fleet|tickets|dashboard)"))

    def shot(self, name: str) -> Path:
        """The whole page, and what a tablet shows of it first (``-view``, for the README)."""
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.page.screenshot(path=str(self.folder / f"{name}-view.png"))
        return path

    def axe(self) -> list[dict[str, Any]]:
        """Serious and critical accessibility violations of the page as it is now."""
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})")
        return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
                for v in result["violations"] if v["impact"] in ("serious", "critical")]

    def check(self, name: str) -> None:
        """Screenshot, no serious accessibility violation, no console error so far."""
        self.shot(name)
        assert self.axe() == [], name
        assert self.errors == [], name


@pytest.fixture
def tab(browser: Browser, server: Running, screenshots: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport=TABLET, bypass_csp=True)  # CSP would block axe
    yield Tab(context.new_page(), server.url, screenshots)
    context.close()


@pytest.fixture
def second_tab(browser: Browser, server: Running, screenshots: Path) -> Iterator[Tab]:
    context = browser.new_context(viewport=TABLET, bypass_csp=True)
    yield Tab(context.new_page(), server.url, screenshots)
    context.close()


def test_sign_in_page_works_from_the_keyboard(tab: Tab) -> None:
    page = tab.go("/console/fleet")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    tab.check("01-sign-in")
    page.keyboard.type("manager")  # the user name field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/fleet$"))
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/console/sign-in"))
    tab.go("/console/fleet")  # the session has ended: back to signing in
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    assert tab.errors == []


@pytest.mark.parametrize(("username", "home", "heading"), [
    ("customer-a", "/console/portal", "Your devices and tickets"),
    ("engineer", "/console/tickets", "Tickets"),
    ("manager", "/console/dashboard", "Dashboard"),
    ("admin", "/console/fleet", "Fleet"),
])
def test_each_role_lands_on_its_home(tab: Tab, username: str, home: str, heading: str) -> None:
    tab.sign_in(username)
    expect(tab.page).to_have_url(re.compile(re.escape(home) + "$"))
    expect(tab.page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(tab.page.get_by_role("button", name="Sign out")).to_be_visible()
    assert tab.errors == []


def test_fleet_lists_devices_most_at_risk_first_and_filters(tab: Tab, server: Running) -> None:
    tab.sign_in("manager")
    page = tab.go("/console/fleet")
    rows = page.locator("#fleet-results tbody tr")
    expect(rows).to_have_count(50)
    risks = [int(t.replace("\u202f%", "")) for t in
             page.locator("#fleet-results .risk").evaluate_all(
                 "els => els.map(e => e.childNodes[1].textContent.trim())")]
    assert risks == sorted(risks, reverse=True) and risks[0] > risks[-1]
    tab.check("02-fleet")
    page.get_by_label("Model").select_option("VT-3")
    expect(page).to_have_url(re.compile(r"model=VT-3"))
    expect(rows.first).to_contain_text("vt3-")
    models = rows.locator("td:nth-child(2)").all_inner_texts()
    assert models and set(models) == {"VT-3"}
    page.get_by_role("link", name=re.compile("^Next")).wait_for(state="detached")
    assert tab.errors == []


def test_the_device_page_draws_its_readings(tab: Tab, server: Running) -> None:
    device = server.world.devices["a"][0]
    tab.sign_in("engineer")
    page = tab.go(f"/console/devices/{device}")
    charts = page.locator("#charts")
    expect(charts).to_have_attribute("data-drawn", "3", timeout=15_000)
    expect(page.locator("#charts canvas")).to_have_count(3)
    drawn = page.locator("#charts canvas").first.evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".some((v, i) => i % 4 === 3 && v > 0)")
    assert drawn, "the chart's canvas is blank"
    expect(page.locator("#csv-link")).to_have_attribute("href", re.compile("format=csv"))
    expect(page.locator("#pred-h + p")).to_contain_text("Likely fault: E-MOTOR-STALL")
    expect(page.get_by_text("had 1 failure(s) to learn from")).to_be_visible()
    tab.check("03-device")
    page.locator("#charts").screenshot(path=str(tab.folder / "03-device-charts.png"))
    page.get_by_text("6h", exact=True).click()
    expect(charts).to_have_attribute("data-drawn", "3")
    assert tab.errors == []


def test_ticket_queue_is_sorted_by_deadline_with_live_countdowns(tab: Tab) -> None:
    tab.sign_in("engineer")
    page = tab.page
    countdowns = page.locator("#queue-results .countdown")
    expect(countdowns.first).to_have_attribute("data-level", re.compile("."))
    dues = countdowns.evaluate_all("els => els.map(e => Date.parse(e.dataset.due))")
    assert len(dues) >= 10 and dues == sorted(dues)
    levels = set(countdowns.evaluate_all("els => els.map(e => e.dataset.level)"))
    assert "breached" in levels and levels & {"ok", "soon", "close"}
    first = countdowns.first.locator(".left")
    assert re.match(r"(in|breached) ", first.inner_text())
    tab.check("04-ticket-queue")
    assert tab.errors == []


def test_a_ticket_goes_from_open_to_closed_with_the_customers_sign_off(
    tab: Tab, second_tab: Tab, server: Running
) -> None:
    customer, engineer = tab, second_tab
    customer.sign_in("customer-a")
    page = customer.page
    tab.check("05-portal")
    device = server.world.devices["a"][3]  # one with readings and no open ticket
    page.get_by_label("Device", exact=True).select_option(device)
    page.get_by_label("What is wrong?").fill("Pump stops mid-infusion")
    page.get_by_label("Details").fill("Twice this morning on ward 4.")
    page.get_by_label("Kind of fault").select_option("mechanical")
    page.get_by_role("button", name="Report the fault").click()
    page.wait_for_url(re.compile(r"/console/tickets/\d+$"))
    ticket_url = page.url.removeprefix(server.url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Pump stops mid-infusion")
    expect(page.locator(".state")).to_have_text("open")

    engineer.sign_in("engineer")
    work = engineer.go(ticket_url)
    expect(work.locator("#charts")).to_have_attribute("data-drawn", "3", timeout=15_000)
    engineer.check("06-ticket-engineer")
    steps: list[tuple[str, str, dict[str, str]]] = [
        ("Acknowledge", "acknowledged", {}),
        ("Start diagnosis", "diagnosing", {}),
        ("Mark repaired", "repaired", {"Diagnosis": "Worn pump segment; replaced."}),
        ("Mark verified", "verified", {"Verification result": "Flow within 2 % over 1 h."}),
    ]
    work.get_by_label("Assign to").select_option(label="Eli Engineer")
    work.get_by_role("button", name="Save assignment").click()
    expect(work.get_by_role("status")).to_have_text("Assignment saved.")
    for button, state, fields in steps:
        form = work.locator("form.move").filter(
            has=work.get_by_role("button", name=button, exact=True))
        for label, text in fields.items():
            form.get_by_label(label).fill(text)
        form.get_by_role("button", name=button, exact=True).click()
        expect(work.locator(".state").first).to_have_text(state)
    work.get_by_label("Add a comment").fill("Please check and sign off.")
    work.get_by_role("button", name="Comment").click()
    expect(work.locator(".history")).to_contain_text("Please check and sign off.")
    # Closing waits for the customer's sign-off: the engineer is not offered it.
    assert work.get_by_role("button", name="Close", exact=True).count() == 0

    page.reload()
    expect(page.get_by_role("heading", name="Sign off the repair")).to_be_visible()
    customer.check("07-ticket-sign-off")
    page.get_by_role("button", name="Accept the repair and close").click()
    expect(page.locator(".state").first).to_have_text("closed")
    expect(page.get_by_role("status")).to_contain_text("signed off")
    customer.go("/console/portal")  # the portal links to the survey
    page.get_by_role("link", name=re.compile("Pump stops mid-infusion")).first.click()
    expect(page.get_by_role("heading", name="How satisfied are you with this repair?")
           ).to_be_visible()
    page.get_by_text("4", exact=True).click()
    page.get_by_label("Comment (optional)").fill("Quick and clear.")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Thank you for your answer.")
    expect(page.locator(".facts")).to_contain_text("4 of 5")
    expect(page.locator("#charts")).to_have_attribute("data-drawn", "3")  # drawn again
    customer.check("08-ticket-closed")
    history = page.locator(".history").inner_text().lower()
    assert "verified → closed" in history and "satisfaction survey answered: 4 of 5" in history
    assert engineer.errors == []


def test_a_customer_cannot_reach_another_customers_device_or_ticket(
    tab: Tab, server: Running
) -> None:
    tab.sign_in("customer-a")
    other_device, other_ticket = server.world.devices["b"][0], server.world.tickets["b"][0]
    page = tab.go(f"/console/devices/{other_device}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    # The 404 itself is what this test asks for, and the browser logs it as an error.
    assert f"HTTP 404 {server.url}/console/devices/{other_device}" in tab.errors
    assert all("404" in e for e in tab.errors)
    tab.errors.clear()
    assert "Riverside" not in page.content() and "Theatre" not in page.content()
    tab.shot("09-not-found")
    assert tab.axe() == []
    page = tab.go(f"/console/tickets/{other_ticket}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    assert f"HTTP 404 {server.url}/console/tickets/{other_ticket}" in tab.errors


def test_a_customer_device_page_and_fleet_pass_the_accessibility_check(
    tab: Tab, server: Running
) -> None:
    tab.sign_in("customer-a")
    tab.go(f"/console/devices/{server.world.devices['a'][1]}")
    expect(tab.page.locator("#charts")).to_have_attribute("data-drawn", re.compile("."))
    tab.check("10-device-customer")
    tab.go("/console/tickets")
    tab.check("11-ticket-queue-customer")


@pytest.mark.parametrize("width", [768, 1024])
@pytest.mark.parametrize("path", ["/console/fleet", "/console/tickets", "/console/portal",
                                  "/console/dashboard"])
def test_pages_fit_a_tablet_either_way_up(browser: Browser, server: Running, screenshots: Path,
                                          path: str, width: int) -> None:
    """On a tablet, upright or sideways, neither the page nor a table scrolls sideways."""
    context = browser.new_context(viewport={"width": width, "height": 1792 - width})
    try:
        tab = Tab(context.new_page(), server.url, screenshots)
        tab.sign_in("customer-a" if path.endswith("portal") else "manager")
        page = tab.go(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        tables = page.locator(".table-wrap").evaluate_all(
            "els => els.map(e => e.scrollWidth - e.clientWidth)")
        assert tables and max(tables) <= 0  # and the tables fit without scrolling
        tab.page.screenshot(
            path=str(screenshots / f"tablet-{width}{path.replace('/', '-')}.png"))
        assert tab.errors == []
    finally:
        context.close()


def test_the_managers_dashboard(tab: Tab) -> None:
    tab.sign_in("manager")
    expect(tab.page.locator("table.ranked tbody tr")).to_have_count(25)
    expect(tab.page.locator("#near-h")).to_be_visible()
    tab.check("14-dashboard")


def test_an_admin_registers_a_device_in_the_browser(tab: Tab) -> None:
    tab.sign_in("admin")
    page = tab.go("/console/admin")
    tab.check("12-admin")
    form = page.get_by_role("form", name="Register a device")
    form.get_by_label("Device id").fill("vt3-browser1")
    form.get_by_label("Serial number").fill("VT-3-BROWSER1")
    form.get_by_label("Model").fill("VT-3")
    form.get_by_label("Site").select_option(label="ICU North (St. Anna Hospital)")
    form.get_by_role("button", name="Register and issue its credential").click()
    expect(page.locator("#new-credential")).to_contain_text("vt3-browser1 is registered")
    tab.check("13-admin-credential")


def test_an_engineer_rates_a_suggested_article(tab: Tab, server: Running) -> None:
    ticket = server.world.tickets["a"][4]  # fan noise: the fan article fits it
    tab.sign_in("engineer")
    page = tab.go(f"/console/tickets/{ticket}")
    kb = page.locator("#kb")
    article = kb.locator("article").filter(has_text="Noisy fans")
    article.get_by_text("Noisy fans").click()  # open it to read the fix
    expect(article.get_by_text("Clean the filter; replace the fan.")).to_be_visible()
    rate = article.get_by_role("group", name=re.compile("Did .Noisy fans. help"))
    rate.get_by_role("button", name="Helpful", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Article marked helpful; thank you.")
    article = page.locator("#kb article").filter(has_text="Noisy fans")
    expect(article.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true")
    expect(article.get_by_role("button", name="Not helpful")).to_have_attribute(
        "aria-pressed", "false")
    expect(page.locator(".history")).to_contain_text("marked helpful")
    tab.check("15-ticket-knowledge-feedback")
    page.locator("#kb").screenshot(path=str(tab.folder / "15-ticket-knowledge-feedback-kb.png"))


def test_the_manager_reads_and_exports_the_quality_report(tab: Tab) -> None:
    tab.sign_in("manager")
    page = tab.page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Service quality").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Service quality")
    page.get_by_label("Group by").select_option(label="device model")
    page.get_by_role("button", name="Show the report").click()
    expect(page).to_have_url(re.compile(r"group=model"))
    levels = page.locator("#levels tbody tr")
    expect(levels.last).to_contain_text("All tickets")
    assert {"IP-100", "PM-7", "VT-3"} <= set(page.locator("#levels tbody th").all_inner_texts())
    expect(page.locator("#mtbf tbody tr")).to_have_count(3)
    tab.check("16-quality-report")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    path = download.value.path()
    assert download.value.suggested_filename.endswith("-by-model.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("group,opened,") and lines[-1].startswith("(all),")
    page.get_by_role("link", name=re.compile("^Published version")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Service quality report")
    assert "St. Anna" not in page.content()
    tab.shot("17-quality-published")
    assert tab.errors == []


def test_an_engineer_is_refused_the_quality_report(tab: Tab, server: Running) -> None:
    tab.sign_in("engineer")
    assert tab.page.get_by_role("link", name="Service quality").count() == 0
    page = tab.go("/console/reports/quality")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    # The 403 itself is what this test asks for, and the browser logs it as an error.
    assert f"HTTP 403 {server.url}/console/reports/quality" in tab.errors
    assert all("403" in e for e in tab.errors)
