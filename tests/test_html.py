"""The sequence view: relay/html.py (model, page), relay show --html, and the control page's use
of the shared renderer (relay/static/timeline.js, timeline.css)."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner
from rawbayeux import collect, connect, handshake, states, subscribe

from relay import cassette as cm
from relay import html as rh
from relay.cli import main
from relay.replay import REPLAYER, ReplayOptions, create_app

ROOT = Path(__file__).resolve().parent.parent
SEED_PATH = ROOT / "cassettes" / "two-step-transfer.json"
SEED = cm.load(SEED_PATH)
STATIC = ROOT / "relay" / "static"
CHROMIUM = Path(os.environ.get("RELAY_CHROMIUM", "/usr/bin/chromium"))
HOSTILE = "</script><img src=x onerror=alert(1)><!--"
EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//""", re.I)


def note(
    nid: str,
    at: int,
    *,
    cause: str | None = None,
    call: str = "C-1",
    state: str = "Held",
    **data: Any,
) -> cm.Notification:
    message = {
        "channel": "/v2/me/calls",
        "data": {"notificationType": "StatusChange", "call": {"id": call, "state": state}, **data},
    }
    return cm.Notification(id=nid, at_ms=at, channel="/v2/me/calls", message=message, cause=cause)


def exchange(
    xid: str, at: int, *, op: str = "Hold", status: int | None = 200, error: str | None = None
) -> cm.Exchange:
    return cm.Exchange(
        id=xid,
        at_ms=at,
        request=cm.Request(
            method="POST", path="/api/v2/me/calls/C-1", body=cm.Body.json({"operationName": op})
        ),
        response=None if status is None else cm.Response(status=status, reason="R"),
        response_ms=None if status is None else at + 5,
        error=error,
    )


def cassette(*desktops: list[cm.Event], title: str = "t") -> cm.Cassette:
    return cm.Cassette(
        meta=cm.Meta(title=title),
        desktops=[cm.Desktop(name=f"d{i}", events=events) for i, events in enumerate(desktops)],
    )


class Tags(HTMLParser):
    """The start tags of a page with their attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    tags.close()
    return tags


def assert_self_contained(page: str, allowed: tuple[str, ...] = ("data:",)) -> None:
    """No attribute loads anything but inline data (or ``allowed``); no other origin."""
    assert EXTERNAL.search(page) is None
    for tag, attrs in parse(page).tags:
        for name in ("src", "href", "action", "srcset", "poster"):
            value = attrs.get(name)
            assert value is None or value.startswith(allowed), (tag, name, value)


# --- the model ------------------------------------------------------------------------------


def test_model_of_the_seed_rows_in_time_order() -> None:
    m = rh.model(SEED)
    rows = m["events"]
    assert [r["id"] for r in rows] == ["n1", "x1", "n2", "x2", "n3", "n4", "x3", "n5", "n6"]
    assert [r["index"] for r in rows] == list(range(9))
    assert [r["time"] for r in rows][:4] == ["0.000", "10.000", "10.100", "36.000"]
    assert [r["delta_ms"] for r in rows][:4] == [None, 10000, 100, 25900]
    assert m["lanes"] == [
        {"name": "agent", "kind": "desktop"},
        {"name": "server", "kind": "server"},
    ]
    assert m["stats"] == {
        "events": 9,
        "exchanges": 3,
        "failed": 0,
        "notifications": 6,
        "caused": 5,
        "unsolicited": 1,
        "span_ms": 48100,
    }
    x2 = rows[3]
    assert (x2["method"], x2["operation"], x2["status"], x2["reason"]) == (
        "POST",
        "InitiateTransfer",
        200,
        "OK",
    )
    assert x2["latency_ms"] == 50 and x2["failed"] is False
    assert x2["target"] == "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
    assert x2["target_short"] == "/api/v2/me/calls/…0005"
    assert x2["label"].startswith("x2 POST /api/v2/me/calls/")


def test_model_of_the_seed_calls_states_and_capabilities() -> None:
    m = rh.model(SEED)
    assert m["calls"] == [
        {"id": "011DJV5JI898NB2L04000VTAES000005", "short": "…0005"},
        {"id": "011DJV5JI898NB2L04000VTAES000006", "short": "…0006"},
    ]
    by_id = {r["id"]: r for r in m["events"]}
    assert [by_id[n]["state"] for n in ("n1", "n2", "n3", "n4", "n5", "n6")] == [
        "Ringing",
        "Established",
        "Held",
        "Dialing",
        "Released",
        "Released",
    ]
    n4 = by_id["n4"]
    assert (n4["call_short"], n4["call_index"], n4["call_type"]) == ("…0006", 1, "Consult")
    assert n4["channel"] == "/v2/me/calls" and n4["notification_type"] == "StatusChange"
    assert "CompleteTransfer" in n4["capabilities"]
    assert "gained" not in n4  # the consult call's first notification: nothing to compare with
    n2 = by_id["n2"]
    assert n2["lost"] == ["Answer"]
    assert {"Hold", "Hangup", "InitiateTransfer"} <= set(n2["gained"])
    n3 = by_id["n3"]
    assert (n3["gained"], n3["lost"]) == (["Retrieve"], ["SendDtmf", "Hold"])


def test_model_of_the_seed_causes_and_links() -> None:
    m = rh.model(SEED)
    by_id = {r["id"]: r for r in m["events"]}
    assert by_id["n1"]["unsolicited"] is True and by_id["n1"]["cause"] is None
    assert "link" not in by_id["n1"] and "cause_index" not in by_id["n1"]
    assert [by_id[x]["caused"] for x in ("x1", "x2", "x3")] == [["n2"], ["n3", "n4"], ["n5", "n6"]]
    assert by_id["n4"]["cause_index"] == 3 and by_id["n4"]["cause_operation"] == "InitiateTransfer"
    assert m["links"] == [
        {"cause": "x1", "rows": [1, 2], "track": 0},
        {"cause": "x2", "rows": [3, 4, 5], "track": 0},
        {"cause": "x3", "rows": [6, 7, 8], "track": 0},
    ]
    assert m["tracks"] == 1
    assert [by_id[e]["link"] for e in ("x2", "n3", "n4", "x3")] == [1, 1, 1, 2]


def test_overlapping_links_get_their_own_tracks_and_lanes_per_desktop() -> None:
    # x1's answer arrives after x2 was sent (by the other desktop): the links overlap.
    c = cassette(
        [exchange("x1", 0), note("n2", 30, cause="x1"), note("n4", 40, cause="x3")],
        [exchange("x2", 10), exchange("x3", 20), note("n1", 50, cause="x2")],
    )
    m = rh.model(c)
    assert [r["id"] for r in m["events"]] == ["x1", "x2", "x3", "n2", "n4", "n1"]
    assert [r["desktop"] for r in m["events"]] == [0, 1, 1, 0, 0, 1]
    assert [lane["name"] for lane in m["lanes"]] == ["d0", "d1", "server"]
    assert [(link["cause"], link["rows"], link["track"]) for link in m["links"]] == [
        ("x1", [0, 3], 0),
        ("x2", [1, 5], 1),
        ("x3", [2, 4], 2),
    ]
    assert m["tracks"] == 3
    # One desktop only (the control page's view): a cause on another desktop is named, not drawn.
    one = rh.model(c, [c.desktops[1]])
    assert [r["id"] for r in one["events"]] == ["x2", "x3", "n1"]
    assert one["lanes"][0] == {"name": "d1", "kind": "desktop"}


def test_a_track_is_reused_once_its_link_has_ended() -> None:
    c = cassette(
        [
            exchange("x1", 0),
            note("n1", 1, cause="x1"),
            exchange("x2", 2),
            note("n2", 3, cause="x2"),
        ]
    )
    assert [link["track"] for link in rh.model(c)["links"]] == [0, 0]


def test_failed_exchanges_and_a_notification_without_a_call() -> None:
    c = cassette(
        [
            exchange("x1", 0, status=None, error="upstream down"),
            exchange("x2", 1, status=500),
            exchange("x3", 2, status=200),
            cm.Notification(id="n1", at_ms=3, channel="/v2/me/agent", message={"data": "?"}),
        ]
    )
    rows = rh.model(c)["events"]
    assert [r["failed"] for r in rows[:3]] == [True, True, False]
    assert rows[0]["error"] == "upstream down" and "status" not in rows[0]
    assert rows[0]["latency_ms"] is None
    assert rows[3]["unsolicited"] is True and "call_id" not in rows[3]
    assert rh.model(c)["stats"]["failed"] == 2


def test_empty_cassette() -> None:
    m = rh.model(cassette())
    assert m["events"] == [] and m["links"] == [] and m["tracks"] == 0
    assert m["stats"]["span_ms"] == 0
    assert "(no events)" in rh.static_text("timeline.js")


def test_short_ids() -> None:
    assert rh.short_ids(
        ["011DJV5JI898NB2L04000VTAES000005", "011DJV5JI898NB2L04000VTAES000006"]
    ) == [
        "…0005",
        "…0006",
    ]
    assert rh.short_ids(["AAAA0001BBBB", "AAAA0002BBBB"]) == ["…1BBBB", "…2BBBB"]
    assert rh.short_ids(["C-1", "abcdef"]) == ["C-1", "abcdef"]  # short enough already
    assert rh.short_ids([]) == []
    assert rh.short_ids(["X" * 20, "X" * 20]) == ["…XXXX", "…XXXX"]  # the same call twice


# --- the page -------------------------------------------------------------------------------


def test_page_is_self_contained() -> None:
    page = rh.page(SEED)
    assert_self_contained(page)
    tags = parse(page)
    assert {t for t, _ in tags.tags} <= {"html", "head", "meta", "link", "title", "style"} | {
        "body",
        "div",
        "script",
    }
    csp = next(a for t, a in tags.tags if t == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in str(csp["content"])
    # The renderer and its styles are inlined, the model is embedded as JSON.
    assert rh.static_text("timeline.css") in page
    assert rh.static_text("timeline.js") in page
    assert len(tags.scripts) == 2
    assert json.loads(tags.scripts[0]) == json.loads(json.dumps(rh.model(SEED)))


def test_cassette_text_cannot_break_out_of_the_page() -> None:
    c = cassette(
        [
            exchange("x1", 0, op=HOSTILE),
            note("n1", 1, cause="x1", call=HOSTILE, state=HOSTILE, capabilities=[HOSTILE]),
        ],
        title=HOSTILE,
    )
    c.desktops[0].name = HOSTILE
    c.meta.upstream = "javascript:alert(1)"
    page = rh.page(c)
    tags = parse(page)
    assert [t for t, _ in tags.tags if t in ("img", "script")] == ["script", "script"]
    assert page.lower().count("</script") == 2
    assert "<!--" not in page
    assert (
        "<title>&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&lt;!-- · relay show</title>"
        in page
    )
    # The embedded JSON is the model, unchanged, once parsed.
    assert json.loads(tags.scripts[0]) == json.loads(json.dumps(rh.model(c)))
    assert_self_contained(page)


def test_script_json_escapes() -> None:
    text = rh.script_json({"a": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}
    with pytest.raises(ValueError):
        rh.inline_script("x = '</script>'")


def test_the_renderer_never_parses_cassette_text_as_html() -> None:
    js = rh.static_text("timeline.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js
    assert EXTERNAL.search(rh.static_text("timeline.css")) is None
    assert "url(" not in rh.static_text("timeline.css")


# --- relay show --html ----------------------------------------------------------------------


def test_cli_show_html_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "out" / "seed.html"
    out.parent.mkdir()
    result = CliRunner().invoke(main, ["show", str(SEED_PATH), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == f"{out}\n"
    assert out.read_text(encoding="utf-8") == rh.page(SEED)
    assert [p.name for p in out.parent.iterdir()] == ["seed.html"]  # no temporary file left


def test_cli_show_without_html_prints_text() -> None:
    result = CliRunner().invoke(main, ["show", str(SEED_PATH)])
    assert result.exit_code == 0
    assert result.output.startswith("Two-step transfer")
    assert "<" not in result.output


def test_cli_show_html_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "desktops": 3}')
    out = tmp_path / "x.html"
    result = CliRunner().invoke(main, ["show", str(bad), "--html", str(out)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "bad.json" in result.output
    assert not out.exists()
    result = CliRunner().invoke(main, ["show", str(SEED_PATH), "--html", str(tmp_path)])
    assert result.exit_code == 2  # a directory is not a file to write
    assert "cannot write" in result.output
    result = CliRunner().invoke(main, ["show", str(SEED_PATH), "--html"])
    assert result.exit_code == 2  # click's usage error


# --- the control page -----------------------------------------------------------------------


async def start(aiohttp_client: Any) -> TestClient:  # type: ignore[type-arg]
    client: TestClient = await aiohttp_client(  # type: ignore[type-arg]
        create_app(SEED, ReplayOptions(speed=0, step=True))
    )
    return client


async def test_control_page_uses_the_shared_renderer(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    page = await (await client.get("/_relay/")).text()
    assert_self_contained(page, ("data:", "/_relay/static/"))
    srcs = [a.get("src") or a.get("href") for t, a in parse(page).tags if t in ("script", "link")]
    assert "/_relay/static/timeline.js" in srcs and "/_relay/static/timeline.css" in srcs
    for element_id in ("release", "pause", "speed"):
        assert f'id="{element_id}"' in page
    assert 'fetch("/_relay/"' in page and "RelayTimeline.render(" in page
    for name, kind in (("timeline.js", "text/javascript"), ("timeline.css", "text/css")):
        resp = await client.get(f"/_relay/static/{name}")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith(kind)
        assert await resp.text() == (STATIC / name).read_text(encoding="utf-8")
    for name in ("control.html", "..%2fhtml.py", "nope.js"):
        assert (await client.get(f"/_relay/static/{name}")).status == 404
    assert client.app is not None and client.app[REPLAYER].sessions == {}  # outside the timeline


async def test_control_timeline_is_the_model_of_the_replayed_desktop(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    timeline = await (await client.get("/_relay/timeline")).json()
    assert timeline["desktop"] == "agent"
    expected = json.loads(json.dumps(rh.model(SEED, [SEED.desktops[0]])))
    assert {k: v for k, v in timeline.items() if k != "desktop"} == expected


# --- in a real browser ----------------------------------------------------------------------


def _playwright() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("needs Playwright (pip install playwright; browsers are not downloaded)")
    if not CHROMIUM.is_file():
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    return async_playwright


@pytest.mark.timeout(90)
async def test_the_page_renders_in_chromium(tmp_path: Path) -> None:
    c = cm.load(SEED_PATH)
    c.desktops[0].events[0].message["data"]["call"]["state"] = HOSTILE  # type: ignore[union-attr, index]
    path = tmp_path / "seed.html"
    path.write_text(rh.page(c), encoding="utf-8")
    async with _playwright()() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            requests: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(path.as_uri())
            rows = page.locator(".rt-body .rt-row")
            assert await rows.count() == 9
            assert await page.locator(".rt-row[data-event-id=x2] .rt-op").text_content() == (
                "InitiateTransfer"
            )
            assert (
                await page.locator(".rt-row[data-event-id=n3] .rt-state").text_content() == "Held"
            )
            assert (
                await page.locator(".rt-row[data-event-id=n1] .rt-state").text_content() == HOSTILE
            )
            assert await page.locator("img").count() == 0
            assert await page.locator(".rt-seg-cause").count() == 3
            assert await page.locator(".rt-row.rt-unsolicited").count() == 1
            await page.locator(".rt-row[data-event-id=n4]").hover()
            highlighted = page.locator(".rt-row.rt-hl")
            assert [await highlighted.nth(i).get_attribute("data-event-id") for i in range(3)] == [
                "x2",
                "n3",
                "n4",
            ]
            assert errors == []
            assert requests == [path.as_uri()]
        finally:
            await browser.close()


@pytest.mark.timeout(90)
async def test_the_control_page_shows_where_the_session_is(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/*")
    async with _playwright()() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(str(client.make_url("/_relay/")))
            marker = page.locator("[data-session-next]")
            await marker.wait_for()
            (session,) = client.app[REPLAYER].sessions  # type: ignore[index]
            assert await marker.get_attribute("data-session-next") == session
            next_row = page.locator(".rt-row:has([data-session-next])")
            assert await next_row.get_attribute("data-event-id") == "n1"
            assert "waits for presenter" in str(await marker.text_content())
            await page.locator("#release").click()
            assert states(await collect(client, cid, 1)) == ["Ringing"]
            await page.locator(".rt-row.released[data-event-id=n1]").wait_for()
            await page.locator(".rt-row[data-event-id=x1] [data-session-next]").wait_for()
            assert "waits for request" in str(await marker.text_content())
            assert await page.locator(".rt-body .rt-row").count() == 9
            assert errors == []
        finally:
            await browser.close()
