"""The real-browser test (issue 5): a desktop page in headless Chromium, recorded through
``relay record`` against a fake GWS (tests/js/upstream.mjs), then replayed offline by
``relay replay``: from relay's asset store, from another origin through CORS, and step by step
from the control page, with screenshots saved under ``artifacts/``.

The page (tests/ui) is plain HTML and the official ``cometd`` client's ES modules; it logs in
(GET /api/v2/me, Basic auth, CSRF token), subscribes /v2/me/* over long-polling or WebSocket and
shows each call's state; the tests click its Answer / Transfer / Complete buttons as a person
would and read the states from its DOM.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import browser
import jspeers
import pytest
from browser import DesktopPage
from relayproc import run_relay

from relay import cassette as cas

pytestmark = browser.chromium_marks

SEED = jspeers.ROOT / "cassettes" / "two-step-transfer.json"
CALL_5, CALL_6 = jspeers.CALL_5, jspeers.CALL_6
#: What the page receives during the seed's transfer (its log: call id suffix, state).
TRANSFER = [
    "005 Ringing",
    "005 Established",
    "005 Held",
    "006 Dialing",
    "005 Released",
    "006 Released",
]
OPERATIONS = ["Answer", "InitiateTransfer", "CompleteTransfer"]
TRANSPORTS = ["long-polling", "websocket"]


async def transfer(page: DesktopPage, ring: object = None) -> None:
    """Drive the seed's two-step transfer by clicks, checking the DOM at every step.

    ``ring``: an async callable that makes the phone ring (the upstream's hook) or None when
    the Ringing comes by itself (a replay).
    """
    await page.wait_status("connected")
    if ring is not None:
        await ring()  # type: ignore[operator]
    await page.wait_states({CALL_5: "Ringing"})
    await page.click(CALL_5, "Answer")
    await page.wait_states({CALL_5: "Established"})
    await page.click(CALL_5, "InitiateTransfer")
    await page.wait_states({CALL_5: "Held", CALL_6: "Dialing"})
    await page.click(CALL_6, "CompleteTransfer")
    await page.wait_states({CALL_5: "Released", CALL_6: "Released"})
    assert await page.states() == {CALL_5: "Released", CALL_6: "Released"}
    assert await page.notifications() == TRANSFER, await page.describe()
    assert (await page.page.get_attribute("#status", "data-status")) == "connected"
    used = await page.page.evaluate("window.cometd.getTransport().type")
    assert used == page.transport, await page.describe()


# --- recording ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    cassette: Path
    ui: Path
    transport: str
    upstream: str
    upstream_requests: list[dict]
    recorder_output: str
    recorder_status: int


async def record(tmp: Path, transport: str) -> Recorded:
    """Record the page's transfer through ``relay record``; the upstream is gone afterwards."""
    if not SEED.exists():
        pytest.skip("cassettes/two-step-transfer.json is not there yet")
    ui = browser.ui_dir(tmp / "ui")
    out = tmp / f"rec-{transport}.json"
    async with jspeers.upstream_server(
        SEED, user=jspeers.USER, password=jspeers.PASSWORD, ui=ui
    ) as upstream:
        async with browser.relay_record(upstream.url, out) as recorder:
            async with browser.chromium(tmp / f"profile-record-{transport}") as chrome:
                page = await DesktopPage.open(
                    chrome, browser.localhost(recorder.url), transport=transport
                )
                await transfer(page, upstream.ring)
                await page.page.close()
            status = await browser.finish(recorder)
        requests = await upstream.sync()
    return Recorded(out, ui, transport, upstream.url, requests, recorder.output(), status)


@pytest.fixture(scope="session")
def recorded_lp(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """One recording over long-polling, shared by the replay tests of this worker."""
    return asyncio.run(record(tmp_path_factory.mktemp("recorded"), "long-polling"))


def check_recording(rec: Recorded) -> cas.Cassette:
    """The recorded cassette holds the login, the three operations, the six notifications with
    their causes, and the page's files in its asset store; no credentials."""
    assert rec.recorder_status == 0, rec.recorder_output
    assert rec.cassette.is_file(), rec.recorder_output
    c = cas.load(rec.cassette)
    desktop = c.desktop()
    exchanges = list(desktop.exchanges())
    ops = [x.request.operation_name for x in exchanges if x.request.method == "POST"]
    assert ops == OPERATIONS, [(x.request.method, x.request.path) for x in exchanges]
    gets = [x for x in exchanges if x.request.method == "GET"]
    assert [x.request.path for x in gets] == ["/api/v2/me"], [x.request.path for x in gets]
    assert all(x.response is not None and x.response.status == 200 for x in exchanges)
    by_id = {x.id: x.request.operation_name for x in exchanges}
    notes = [
        (n.data["call"]["id"][-3:] + " " + n.data["call"]["state"], by_id.get(n.cause or ""))
        for n in desktop.notifications()
    ]
    assert notes == [
        ("005 Ringing", None),
        ("005 Established", "Answer"),
        ("005 Held", "InitiateTransfer"),
        ("006 Dialing", "InitiateTransfer"),
        ("005 Released", "CompleteTransfer"),
        ("006 Released", "CompleteTransfer"),
    ]
    # The page and every cometd module, byte for byte, in the content-addressed store.
    store = cas.assets_dir(rec.cassette)
    assets = {a.path: a for a in c.assets}
    wanted = {"/ui/index.html": rec.ui / "index.html", "/ui/desktop.js": rec.ui / "desktop.js"}
    for module in sorted((rec.ui / "cometd").glob("*.js")):
        wanted[f"/ui/cometd/{module.name}"] = module
    missing = sorted(set(wanted) - set(assets))
    assert not missing, f"assets not recorded: {missing}; recorded: {sorted(assets)}"
    for path, source in wanted.items():
        asset = assets[path]
        assert asset.status == 200, (path, asset.status)
        data = source.read_bytes()
        assert asset.sha256 == hashlib.sha256(data).hexdigest(), path
        assert (store / asset.sha256).read_bytes() == data, path
    # The browser's Basic credentials are not in the files.
    basic = base64.b64encode(f"{jspeers.USER}:{jspeers.PASSWORD}".encode())
    for path in [rec.cassette, *store.iterdir()]:
        assert basic not in path.read_bytes(), path
    return c


def test_a_browser_transfer_is_recorded_over_long_polling(recorded_lp: Recorded) -> None:
    check_recording(recorded_lp)
    # The page went through relay record to the upstream: login, Bayeux, the three operations.
    seen = [(r["method"], r["path"].split("?")[0]) for r in recorded_lp.upstream_requests]
    assert ("GET", "/api/v2/me") in seen
    posts = [r for r in recorded_lp.upstream_requests if r["path"].startswith("/api/v2/me/calls")]
    assert [r["status"] for r in posts] == [200, 200, 200]
    assert all(r["csrf"] and r["user"] == jspeers.USER for r in posts), posts


async def test_a_browser_transfer_is_recorded_over_websocket_and_replays(tmp_path: Path) -> None:
    """The page over WebSocket (its credentials in the URL: a browser's WebSocket carries no
    Authorization header, Chromium answers the upstream's 401 with them) through relay record;
    then that recording replayed offline over WebSocket."""
    rec = await record(tmp_path, "websocket")
    check_recording(rec)
    upgrades = [r for r in rec.upstream_requests if r.get("websocket") and r["status"] == 101]
    assert upgrades, rec.upstream_requests
    async with (
        browser.relay_replay(rec.cassette, "--speed", "0") as relay,
        browser.chromium(tmp_path / "profile-replay") as chrome,
    ):
        page = await DesktopPage.open(chrome, browser.localhost(relay.url), transport="websocket")
        try:
            await transfer(page)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- relay replay:\n{relay.output()}") from e


# --- replay, offline ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_recorded_desktop_replays_offline_in_chromium(
    recorded_lp: Recorded, transport: str, tmp_path: Path
) -> None:
    """The upstream is gone: Chromium loads the page from relay's asset store, logs in,
    subscribes and plays the transfer by clicks; a recording over long-polling replays over
    WebSocket too."""
    with pytest.raises(aiohttp.ClientConnectionError):  # offline: the upstream is gone
        await relay_status(recorded_lp.upstream)
    async with (
        browser.relay_replay(recorded_lp.cassette, "--speed", "0") as relay,
        browser.chromium(tmp_path / "profile") as chrome,
    ):
        # The recorded page's address is ?transport=long-polling (relay's asset store keys a
        # page by path and query); the page takes another transport from the fragment.
        page = await DesktopPage.open(
            chrome,
            browser.localhost(relay.url),
            transport=transport,
            address_transport=recorded_lp.transport,
        )
        try:
            await transfer(page)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- relay replay:\n{relay.output()}") from e
        assert "NO MATCH" not in relay.stdout.text, relay.output()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_page_from_another_origin_replays_through_cors(
    recorded_lp: Recorded, transport: str, tmp_path: Path
) -> None:
    """The same page served by another server (another port, so another origin) talks to
    relay through CORS: preflights, credentials, the exposed X-CSRF headers."""
    ui = browser.ui_dir(tmp_path / "ui")
    async with (
        browser.relay_replay(recorded_lp.cassette, "--speed", "0") as relay,
        browser.static_server(ui) as other,
        browser.chromium(tmp_path / "profile") as chrome,
    ):
        assert other != relay.url
        page = await DesktopPage.open(chrome, other, transport=transport, server=relay.url)
        try:
            await transfer(page)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- relay replay:\n{relay.output()}") from e
        assert page.page.url.startswith(other + "/ui/index.html")
        assert "NO MATCH" not in relay.stdout.text, relay.output()
        sessions = {
            line.split(":")[0] for line in relay.stdout.lines if line.startswith("session ")
        }
        assert len(sessions) == 1, relay.output()
        # relay's session cookie was accepted from a credentialed cross-origin answer
        cookies = await chrome.context.cookies(relay.url)
        assert "relay_session" in [c["name"] for c in cookies], cookies


# --- the control page: step mode ----------------------------------------------------------------


async def relay_status(base: str) -> dict:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(base + "/_relay/status") as r,
    ):
        assert r.status == 200
        value: dict = await r.json()
        return value


async def release(base: str) -> None:
    """The presenter's "Release next" (the control API the page's button calls)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.post(base + "/_relay/release") as r,
    ):
        assert r.status == 200, await r.text()
        assert (await r.json())["released"], "nothing was released"


async def held_for_presenter(base: str, what: str) -> None:
    """Until relay's only session holds its next notification for the presenter."""

    async def holding() -> bool:
        sessions = (await relay_status(base))["sessions"]
        return len(sessions) == 1 and sessions[0]["waiting_for"] == "presenter"

    await browser.eventually(holding, 10, f"relay to hold {what} for the presenter")


async def test_step_mode_from_the_control_page(recorded_lp: Recorded, tmp_path: Path) -> None:
    """``relay replay --step``: the desktop sees each group of notifications only after a click
    on the control page's #release, which marks the held event ([data-session-next]) and dims
    the released ones; screenshots of the control page mid-scenario and at the end, and of the
    desktop at the end, go to artifacts/."""
    artifacts = browser.artifacts_dir()
    notes = {
        n.data["call"]["id"][-3:] + " " + n.data["call"]["state"]: n.id
        for n in cas.load(recorded_lp.cassette).desktop().notifications()
    }
    gets = [
        x.id
        for x in cas.load(recorded_lp.cassette).desktop().exchanges()
        if x.request.method == "GET" and x.request.path == "/api/v2/me"
    ]
    assert gets, "the recorded desktop logs in with GET /api/v2/me"
    async with (
        browser.relay_replay(recorded_lp.cassette, "--step") as relay,
        browser.chromium(tmp_path / "profile") as chrome,
    ):
        base = browser.localhost(relay.url)
        desktop = await DesktopPage.open(chrome, base, transport=recorded_lp.transport)
        await desktop.wait_status("connected")
        control = await chrome.open(base + "/_relay/")
        # Tall enough for the whole sequence: no scrolling, so the sticky header stays put.
        await control.set_viewport_size({"width": 1280, "height": 1400})
        release = control.locator("#release")
        await control.wait_for_function("!document.getElementById('release').disabled")

        async def step(group: list[str], before: dict[str, str], after: dict[str, str]) -> None:
            what = " + ".join(group)
            await held_for_presenter(relay.url, what)
            held = control.locator(f'[data-event-id="{notes[group[0]]}"] [data-session-next]')
            await held.wait_for(state="visible")
            assert "presenter" in await held.inner_text()
            await asyncio.sleep(0.3)  # it would have arrived by now without the presenter
            shown = await desktop.states()
            assert shown == before, f"{what} before #release: {await desktop.describe()}"
            await release.click()
            await desktop.wait_states(after)
            for key in group:
                row = f'[data-event-id="{notes[key]}"].released'
                await control.wait_for_selector(row, timeout=5_000)

        # The login GET the desktop sent was answered: its row is marked too.
        answered = ", ".join(f'[data-event-id="{login}"].released' for login in gets)
        await control.wait_for_selector(answered, timeout=5_000)
        try:
            await step(["005 Ringing"], {}, {CALL_5: "Ringing"})
            await desktop.click(CALL_5, "Answer")
            await step(["005 Established"], {CALL_5: "Ringing"}, {CALL_5: "Established"})
            await desktop.click(CALL_5, "InitiateTransfer")
            await held_for_presenter(relay.url, "the Held and the Dialing")
            await control.locator("[data-session-next]").wait_for(state="visible")
            # The Dialing goes with the Held (the same InitiateTransfer caused both): marked.
            grouped = f'[data-event-id="{notes["006 Dialing"]}"].rt-in-group [data-session-group]'
            await control.locator(grouped).wait_for(state="visible")
            await control.wait_for_timeout(300)
            await control.screenshot(path=artifacts / "browser-control-page.png")
            await step(
                ["005 Held", "006 Dialing"],
                {CALL_5: "Established"},
                {CALL_5: "Held", CALL_6: "Dialing"},
            )
            await desktop.click(CALL_6, "CompleteTransfer")
            await step(
                ["005 Released", "006 Released"],
                {CALL_5: "Held", CALL_6: "Dialing"},
                {CALL_5: "Released", CALL_6: "Released"},
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- relay replay:\n{relay.output()}") from e
        assert await desktop.notifications() == TRANSFER
        await desktop.page.screenshot(path=artifacts / "browser-desktop-end.png")
        status = (await relay_status(relay.url))["sessions"][0]
        assert status["finished"], status
        await control.locator("[data-session-next]").wait_for(state="detached")
        await control.screenshot(path=artifacts / "browser-control-page-end.png")


async def test_the_timeline_page_of_the_recording(recorded_lp: Recorded, tmp_path: Path) -> None:
    """``relay show REC --html artifacts/timeline.html``, opened in Chromium and screenshotted."""
    code, out, err = await run_relay("show", "--help")
    if "--html" not in out:
        pytest.skip("relay show has no --html option yet (another developer is adding it)")
    artifacts = browser.artifacts_dir()
    html = artifacts / "timeline.html"
    code, out, err = await run_relay("show", str(recorded_lp.cassette), "--html", str(html))
    assert code == 0, out + err
    async with browser.chromium(tmp_path / "profile") as chrome:
        page = await chrome.open(html.as_uri())
        text = await page.inner_text("body")
        for word in ("Ringing", "Established", "Held", "Dialing", "Released", *OPERATIONS):
            assert word in text, f"{word} not on the timeline page"
        await page.screenshot(path=artifacts / "browser-timeline.png", full_page=True)


async def test_a_reloaded_page_gets_what_is_released_while_it_reconnects(
    recorded_lp: Recorded, tmp_path: Path
) -> None:
    """A reload in the middle of a demo: Chromium drops the old page's held long-poll, and the
    new page handshakes with the same session cookie. A notification released before the new
    page has subscribed (its subscribe is held back here) must wait for that subscription, not
    go to the old page's client, whose subscriptions died with it."""
    async with (
        browser.relay_replay(recorded_lp.cassette, "--step") as relay,
        browser.chromium(tmp_path / "profile") as chrome,
    ):
        base = browser.localhost(relay.url)
        desktop = await DesktopPage.open(chrome, base, transport="long-polling")
        await desktop.wait_status("connected")
        await held_for_presenter(relay.url, "the Ringing")
        await release(relay.url)
        await desktop.wait_states({CALL_5: "Ringing"})
        await desktop.click(CALL_5, "Answer")
        await held_for_presenter(relay.url, "the Established")

        held: asyncio.Queue[Any] = asyncio.Queue()

        async def hold_subscribes(route: Any) -> None:
            if "/meta/subscribe" in (route.request.post_data or ""):
                await held.put(route)
            else:
                await route.continue_()

        await desktop.page.route("**/api/v2/notifications**", hold_subscribes)
        await desktop.page.reload()
        subscribe = await asyncio.wait_for(held.get(), 20)  # the new page is not subscribed
        await release(relay.url)

        async def waits_for_the_new_subscription() -> bool:
            (session,) = (await relay_status(relay.url))["sessions"]
            return bool(session["waiting_for"] == "subscription")

        await browser.eventually(
            waits_for_the_new_subscription, 10, "relay to hold the Established for a subscriber"
        )
        await subscribe.continue_()
        await desktop.page.unroute("**/api/v2/notifications**")
        await desktop.wait_states({CALL_5: "Established"})
