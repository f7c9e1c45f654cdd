"""The console as agents and officers use it, in headless Chromium against a real server.

Each test signs in through the sign-in page, as a person would, and checks what they see; the
customer's side goes through the HTTP API, as their apps would. Screenshots of each page are
saved (`CONTINUITY_SCREENSHOTS`, default build/screenshots); the README shows some of them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import msgspec
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect

from api.auth import Role, issue_token
from privacy.certificates import SignedCertificate, verify
from tests.browser.conftest import screenshot_path
from tests.console_scenario import KETTLE_NAME, QUESTION, REASON, SURNAME, Journey, journey
from tests.helpers import SECRET

T = TypeVar("T")
WAIT_MS = 10_000


def token(subject: UUID, role: Role, device: str | None = None) -> str:
    return issue_token(SECRET, subject, role, device, timedelta(hours=1))


def bearer(subject: UUID, device: str | None, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, role, device)}"}  # type: ignore[arg-type]


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on its own thread's event loop (Playwright's sync API owns this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


def customer_journey(base: str) -> Journey:
    async def go() -> Journey:
        async with httpx.AsyncClient(base_url=base) as client:
            return await journey(client, bearer)

    return run(go)


def watched(page: Page) -> list[str]:
    """The page's console errors (a CSP violation is one) and uncaught exceptions."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


AXE = Axe()
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def accessible(page: Page) -> None:
    """axe-core's WCAG 2.1 A and AA rules (labels, contrast, names, landmarks, ARIA) find
    nothing on the page as it is now."""
    results = AXE.run(page, options=WCAG_AA)
    assert results.violations_count == 0, f"{page.url}\n{results.generate_report()}"


def sign_in(page: Page, base: str, bearer_token: str) -> None:
    """By keyboard alone: the token field has focus order first, Enter sends the form."""
    page.goto(f"{base}/console/sign-in")
    accessible(page)
    page.get_by_label("Token").focus()
    page.keyboard.type(bearer_token)
    page.keyboard.press("Enter")
    page.wait_for_load_state()


class EventTap:
    """A customer's live update stream (`/v1/me/session/events`), read on a thread: what the
    customer's own apps would receive."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(base, headers), daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the customer's stream did not open"

    def _read(self, base: str, headers: dict[str, str]) -> None:
        with (
            httpx.Client(base_url=base, timeout=httpx.Timeout(5, read=30)) as client,
            client.stream("GET", "/v1/me/session/events", headers=headers) as stream,
        ):
            for line in stream.iter_lines():
                if line.startswith(":"):
                    self.connected.set()
                elif line.startswith("data:"):
                    self.events.append(json.loads(line[5:]))
                if self._stop.is_set():
                    return

    def wait_for(self, check: Callable[[dict[str, Any]], bool], timeout: float = 10) -> None:
        for _ in range(int(timeout * 20)):
            if any(check(e) for e in self.events):
                return
            threading.Event().wait(0.05)
        raise AssertionError(f"not on the customer's stream: {self.events}")

    def close(self) -> None:
        self._stop.set()


def test_an_agent_takes_over_sees_everything_and_both_sides_update_live(
    context: BrowserContext, server: str
) -> None:
    seen = customer_journey(server)
    page = context.new_page()
    errors = watched(page)
    sign_in(page, server, token(uuid4(), "agent"))
    expect(page).to_have_url(f"{server}/console/queue")
    waiting = page.locator(f'tr[data-conversation="{seen.conversation}"]')
    expect(waiting).to_be_visible(timeout=WAIT_MS)

    # A handoff that arrives while the queue is open appears without a reload.
    later = customer_journey(server)
    expect(page.locator(f'tr[data-conversation="{later.conversation}"]')).to_be_visible(
        timeout=WAIT_MS
    )
    page.screenshot(path=screenshot_path("queue"), full_page=True)
    accessible(page)

    waiting.get_by_role("button", name="Open customer").click()
    expect(page.get_by_text("Opened for: Helping the customer in a conversation")).to_be_visible()
    for shown in (QUESTION, REASON, KETTLE_NAME, SURNAME):
        expect(page.get_by_text(shown).first).to_be_visible()
    page.get_by_role("button", name="Take over").click()

    tap = EventTap(server, seen.laptop)
    try:
        reply = "Thanks Ada, I can see the form. Let me fix the employer step."
        page.get_by_label("Reply (web chat)").fill(reply)
        page.get_by_role("button", name="Send").click()
        expect(page.locator(".transcript").get_by_text(reply)).to_be_visible()
        tap.wait_for(
            lambda e: e["kind"] == "conversation.turn_added" and e["data"]["text"] == reply
        )
    finally:
        tap.close()

    # The customer's changes, on any device, appear on the agent's page without a reload.
    async def customer_acts() -> None:
        async with httpx.AsyncClient(base_url=server) as client:
            tea = {"sku": "TEA-3", "name": "Smoky tea tin", "unit_price": "8.50", "quantity": 2}
            added = await client.post("/v1/me/cart/items", json=tea, headers=seen.phone)
            assert added.status_code == 200, added.text
            said = await client.post(
                f"/v1/me/conversations/{seen.conversation}/turns",
                json={"medium": "web_chat", "text": "Great, thank you!"},
                headers=seen.laptop,
            )
            assert said.status_code == 200, said.text

    draft = "typing, not sent yet"
    page.get_by_label("Reply (web chat)").fill(draft)
    run(customer_acts)
    expect(page.locator("#cart").get_by_text("Smoky tea tin")).to_be_visible(timeout=WAIT_MS)
    transcript = page.locator(".transcript")
    expect(transcript.get_by_text("Great, thank you!")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_label("Reply (web chat)")).to_have_value(draft)  # the draft survived
    page.screenshot(path=screenshot_path("customer"), full_page=True)
    accessible(page)

    # Nothing of the customer's is kept in the browser: no storage, no readable cookie.
    # htmx keeps one thing, the page's own path, in sessionStorage at load; page contents
    # never (its history cache is off: `htmx-config` in base.html).
    stored = page.evaluate("[{...localStorage}, {...sessionStorage}]")
    path = page.evaluate("location.pathname + location.search")
    assert stored == [{}, {"htmx-current-path-for-history": path}], stored
    assert page.evaluate("document.cookie") == ""
    # Usable on a tablet held upright: nothing wider than the screen.
    page.set_viewport_size({"width": 768, "height": 1024})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=screenshot_path("customer-tablet"), full_page=True)

    page.get_by_label("Reply (web chat)").fill("")
    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_text("No open conversation.")).to_be_visible()
    assert errors == [], errors  # no CSP violation, no script error


def test_a_compliance_officer_erases_and_the_certificate_verifies(
    context: BrowserContext, server: str, tmp_path: Path
) -> None:
    seen = customer_journey(server)
    page = context.new_page()
    errors = watched(page)
    sign_in(page, server, token(uuid4(), "compliance"))
    expect(page).to_have_url(f"{server}/console/privacy")
    page.get_by_label("Subject id, email address or phone number").fill(seen.email)
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(f"{server}/console/privacy/subjects/{seen.customer}")
    assert seen.email not in page.url
    page.screenshot(path=screenshot_path("subject"), full_page=True)
    accessible(page)

    page.get_by_label("Reason", exact=True).last.fill("Art. 17 request by letter")
    page.get_by_label("Reference (ticket)").fill("PRIV-2041")
    page.get_by_role("button", name="Request erasure").click()
    expect(page.locator("#erasure-state")).to_have_text("completed")
    expect(page.locator("#verdict")).to_contain_text("Signature valid")
    page.screenshot(path=screenshot_path("erasure"), full_page=True)
    accessible(page)

    with page.expect_download() as started:
        page.get_by_role("link", name="Download the certificate").click()
    saved = tmp_path / "certificate.json"
    started.value.save_as(saved)
    signed = msgspec.json.decode(saved.read_bytes(), type=SignedCertificate)
    published = httpx.get(f"{server}/.well-known/continuity-signing-key").json()
    verify(signed, published["public_key_pem"])
    assert signed.certificate["subject_id"] == str(seen.customer)

    page.get_by_role("link", name="Verify a certificate").first.click()
    page.get_by_label("Certificate file (JSON)").set_input_files(saved)
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("#verdict")).to_contain_text("Signature valid")
    page.screenshot(path=screenshot_path("verify"), full_page=True)
    accessible(page)

    # The erased customer's data is gone from the API too.
    gone = httpx.get(f"{server}/v1/me/session", headers=seen.laptop)
    assert gone.status_code in (401, 410)
    assert errors == [], errors


def test_the_analytics_page_draws_its_charts(context: BrowserContext, server: str) -> None:
    async def counted() -> None:
        async with httpx.AsyncClient(base_url=server) as client:
            seen = await journey(client, bearer, analytics=True)
            tea = {"sku": "TEA-3", "name": "Smoky tea tin", "unit_price": "8.50", "quantity": 1}
            added = await client.post("/v1/me/cart/items", json=tea, headers=seen.phone)
            assert added.status_code == 200, added.text  # the web cart, continued in the app
            url = f"/v1/me/conversations/{seen.conversation}/resolve"
            assert (await client.post(url, headers=seen.laptop)).status_code == 200

    run(counted)
    page = context.new_page()
    errors = watched(page)
    sign_in(page, server, token(uuid4(), "agent"))
    page.get_by_role("link", name="Analytics").click()
    expect(page.get_by_role("heading", name="Journey analytics")).to_be_visible()
    # The projection is asynchronous: reload until the journey is counted.
    journeys = page.locator("#journeys-table")
    for _ in range(50):
        if journeys.count():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(journeys.get_by_role("cell", name="app")).to_be_visible()
    charts = page.get_by_role("img")
    assert charts.count() >= 4  # the mix, a funnel, the journeys, resolution time
    assert page.locator("svg.chart rect").count() > 3
    expect(page.locator("#funnel-personal-loan")).to_contain_text("identity")
    page.screenshot(path=screenshot_path("analytics"), full_page=True)
    accessible(page)
    with page.expect_download() as started:
        page.get_by_role("link", name="Download the journeys (CSV)").click()
    assert started.value.suggested_filename.startswith("analytics-journeys-")
    assert errors == [], errors


def test_the_accessibility_check_finds_what_it_should(context: BrowserContext) -> None:
    """`accessible` is not vacuous: an unlabelled field and grey-on-grey text are reported."""
    page = context.new_page()
    page.set_content(
        '<html lang="en"><head><title>t</title></head><body><main>'
        '<p style="color:#aaa;background:#bbb">faint</p><input></main></body></html>'
    )
    results = AXE.run(page, options=WCAG_AA)
    found = {v["id"] for v in results.response["violations"]}
    assert {"label", "color-contrast"} <= found, found
