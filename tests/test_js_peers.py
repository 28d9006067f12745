"""The JS peers against each other, no relay involved: desktop.mjs logs in to upstream.mjs
(Basic + CSRF + cookies), subscribes, gets rung, answers, transfers and completes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import jspeers
import pytest

pytestmark = jspeers.node_marks

USER, PASSWORD = jspeers.USER, jspeers.PASSWORD
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
SHIPPED = jspeers.ROOT / "cassettes" / "two-step-transfer.json"
CALL_5 = "/api/v2/me/calls/" + jspeers.CALL_5


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    return jspeers.write_cassette(tmp_path / "two-step.json", jspeers.two_step_transfer_cassette())


def _cassettes() -> list[Any]:
    params = [pytest.param("built", id="seed-sample2")]
    if SHIPPED.exists():
        params.append(pytest.param("shipped", id="cassettes/two-step-transfer.json"))
    return params


def _ops(result: jspeers.DesktopResult) -> list[tuple[str, str, Any, int]]:
    return [(r["method"], r["path"], r["body"], r["status"]) for r in result.rest]


@pytest.mark.parametrize("which", _cassettes())
@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_desktop_plays_the_two_step_transfer_against_upstream(
    which: str, transport: str, cassette: Path
) -> None:
    path = cassette if which == "built" else SHIPPED
    expected = jspeers.cassette_notifications(path)
    assert len(expected) >= 6
    async with jspeers.upstream_server(path, user=USER, password=PASSWORD) as upstream:
        # localhost, as a browser would: the cookies are set by a name, not an address.
        url = upstream.url.replace("127.0.0.1", "localhost")
        desktop = jspeers.start_desktop(
            url,
            transport=transport,
            count=len(expected),
            login=True,
            user=USER,
            password=PASSWORD,
            deadline_ms=30_000,
        )
        async with desktop:
            await desktop.ready()
            assert await upstream.ring() == 1
            result = await desktop.result()
        requests = await upstream.sync()

    assert result.notifications == expected
    calls = [n["data"]["call"] for n in expected]
    call_6 = "/api/v2/me/calls/" + next(c["id"] for c in calls if c["callType"] == "Consult")
    assert _ops(result) == [
        ("GET", "/api/v2/me?subresources=*", None, 200),
        ("POST", CALL_5, {"operationName": "Answer"}, 200),
        (
            "POST",
            CALL_5,
            {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}},
            200,
        ),
        ("POST", call_6, {"operationName": "CompleteTransfer"}, 200),
    ]

    api = [r for r in requests if r["path"].startswith("/api/v2/")]
    bayeux = [r for r in api if r["path"].startswith("/api/v2/notifications")]
    operations = [r for r in api if r["path"].startswith("/api/v2/me/calls/")]
    login = api[0]
    assert login["path"] == "/api/v2/me?subresources=*" and login["session"] is None
    session = api[1]["session"]
    assert session is not None
    # One session for everything after login: Basic, the JSESSIONID cookie and the CSRF token
    # on REST and on CometD alike (the WebSocket upgrade included).
    for r in api[1:]:
        status = 101 if r["websocket"] else 200
        assert (r["user"], r["session"], r["csrf"], r["status"]) == (USER, session, True, status)
    assert len(operations) == 3
    # The cookie the Bayeux side set (long-polling response or the 101) went out on REST.
    assert all("BAYEUX_BROWSER" in r["cookies"] for r in operations)
    if transport == "websocket":
        assert [r["websocket"] for r in bayeux] == [True]
    else:
        assert bayeux and not any(r["websocket"] for r in bayeux)
        assert {r["path"] for r in bayeux} >= {
            "/api/v2/notifications/handshake",
            "/api/v2/notifications/connect",
            "/api/v2/notifications/disconnect",
        }


async def _login(http: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    """GET /api/v2/me: the JSESSIONID cookie and the CSRF token."""
    async with http.get(url + "/api/v2/me", params={"subresources": "*"}, headers=AUTH) as r:
        assert r.status == 200
        assert (await r.json())["statusCode"] == 0
        assert r.headers["X-CSRF-HEADER"] == "X-CSRF-TOKEN"
        return r.cookies["JSESSIONID"].value, r.headers["X-CSRF-TOKEN"]


async def test_operations_need_the_session_csrf_token(cassette: Path) -> None:
    answer = {"operationName": "Answer"}
    async with (
        jspeers.upstream_server(cassette, user=USER, password=PASSWORD) as upstream,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        url = upstream.url
        session, token = await _login(http, url)
        cookie = {"Cookie": f"JSESSIONID={session}"}
        forbidden = {"statusCode": 3, "statusMessage": "Missing or invalid Csrf token"}
        for headers in (
            {**AUTH, **cookie},  # no token
            {**AUTH, **cookie, "X-CSRF-TOKEN": "not-the-token"},
            {**AUTH, "X-CSRF-TOKEN": token},  # the token, but not its session
        ):
            async with http.post(url + CALL_5, json=answer, headers=headers) as r:
                assert (r.status, await r.json()) == (403, forbidden), headers
        headers = {**AUTH, **cookie, "X-CSRF-TOKEN": token}
        async with http.post(url + CALL_5, json=answer, headers=headers) as r:
            assert (r.status, await r.json()) == (200, {"statusCode": 0})
        async with http.post(url + CALL_5, json={"operationName": "Nope"}, headers=headers) as r:
            assert r.status == 400
            assert (await r.json())["statusCode"] == 1


async def test_api_and_bayeux_need_basic_auth(cassette: Path) -> None:
    wrong = {"Authorization": "Basic " + base64.b64encode(b"agent:wrong").decode()}
    handshake = [
        {
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "id": "1",
        }
    ]
    bayeux = "/api/v2/notifications"
    async with (
        jspeers.upstream_server(cassette, user=USER, password=PASSWORD) as upstream,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        url = upstream.url
        for headers in ({}, wrong):
            async with http.get(url + "/api/v2/me", headers=headers) as r:
                assert r.status == 401
                assert r.headers["WWW-Authenticate"].startswith("Basic")
            async with http.post(url + bayeux, json=handshake, headers=headers) as r:
                assert r.status == 401
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url + bayeux, headers=headers)
            assert refused.value.status == 401
        # The same requests with the right credentials go through.
        async with http.post(url + bayeux, json=handshake, headers=AUTH) as r:
            assert r.status == 200
            assert (await r.json())[0]["successful"] is True
        jsonp = {"jsonp": "cb", "message": json.dumps(handshake)}
        async with http.get(url + bayeux, params=jsonp) as r:
            assert r.status == 401
        async with http.get(url + bayeux, params=jsonp, headers=AUTH) as r:
            assert r.status == 200
            assert r.content_type == "text/javascript"
            text = await r.text()
            assert text.startswith("/**/cb(") and text.endswith(");")
            assert json.loads(text[len("/**/cb(") : -2])[0]["successful"] is True
        async with http.ws_connect(url + bayeux, headers=AUTH) as ws:
            await ws.send_json(handshake)
            reply = await ws.receive_json(timeout=10)
            assert reply[0]["successful"] is True


async def test_desktop_fails_clearly_on_a_rest_error(cassette: Path) -> None:
    async with jspeers.upstream_server(cassette, user=USER, password=PASSWORD) as upstream:
        refused = r"GET /api/v2/me\?subresources=\* answered HTTP 401"
        with pytest.raises(AssertionError, match=refused):
            await jspeers.run_desktop(
                upstream.url,
                transport="long-polling",
                count=1,
                login=True,
                user=USER,
                password="wrong",
            )


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_desktop_fails_clearly_when_handshakes_are_refused(
    cassette: Path, transport: str
) -> None:
    async with jspeers.upstream_server(cassette, user=USER, password=PASSWORD) as upstream:
        with pytest.raises(AssertionError, match="handshakes failed"):
            await jspeers.run_desktop(
                upstream.url,
                transport=transport,
                count=1,
                user=USER,
                password="wrong",
                extra=["--max-handshake-failures", "1"],
            )


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_desktop_subscribes_again_after_a_re_handshake(
    cassette: Path, transport: str
) -> None:
    expected = jspeers.cassette_notifications(cassette)
    # A 1 s hold: the forgotten client's next connect reply comes within a second.
    async with jspeers.upstream_server(cassette, user=USER, password=PASSWORD, timeout=1) as up:
        desktop = jspeers.start_desktop(
            up.url,
            transport=transport,
            count=len(expected),
            login=True,
            user=USER,
            password=PASSWORD,
        )
        async with desktop:
            first = await desktop.wait_event("subscribed")
            assert await up.forget() == 1
            second = await desktop.wait_event("subscribed", nth=2)
            assert second["clientId"] != first["clientId"]
            assert await up.ring() == 1
            result = await desktop.result()
    assert result.notifications == expected
    assert [(r["body"] or {}).get("operationName") for r in result.rest] == [
        None,
        "Answer",
        "InitiateTransfer",
        "CompleteTransfer",
    ]
    assert "402::Unknown client" in result.stderr


async def test_desktop_fails_on_its_deadline(cassette: Path) -> None:
    async with jspeers.upstream_server(cassette, user=USER, password=PASSWORD) as upstream:
        desktop = jspeers.start_desktop(
            upstream.url,
            transport="websocket",
            count=1,
            user=USER,
            password=PASSWORD,
            deadline_ms=2_000,
            no_ops=True,
        )
        async with desktop:
            with pytest.raises(AssertionError, match="deadline of 2000 ms passed: 0 of 1"):
                await desktop.result()


async def test_desktop_without_ops_only_listens(cassette: Path) -> None:
    async with jspeers.upstream_server(cassette, user=USER, password=PASSWORD) as upstream:
        desktop = jspeers.start_desktop(
            upstream.url,
            transport="long-polling",
            count=2,
            user=USER,
            password=PASSWORD,
            subscribe=["/v2/me/*", "/**"],  # overlapping: each message still printed once
            no_ops=True,
        )
        async with desktop:
            await desktop.ready()
            assert await upstream.ring() == 1
            await upstream.publish("/v2/me/devices", {"messageType": "DeviceStateChangeMessage"})
            result = await desktop.result()
    assert result.rest == []
    assert [n["channel"] for n in result.notifications] == ["/v2/me/calls", "/v2/me/devices"]
    assert result.notifications[0] == jspeers.cassette_notifications(cassette)[0]


async def test_upstream_serves_ui_with_validators(cassette: Path, tmp_path: Path) -> None:
    ui = tmp_path / "ui"
    (ui / "js").mkdir(parents=True)
    (ui / "index.html").write_text("<!doctype html><title>desktop</title>")
    (ui / "js" / "app.js").write_text("console.log('desktop');")
    async with (
        jspeers.upstream_server(cassette, ui=ui) as upstream,
        aiohttp.ClientSession() as http,
    ):
        url = upstream.url
        async with http.get(url + "/ui/js/app.js") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/javascript")
            assert await r.text() == "console.log('desktop');"
            etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
        async with http.get(url + "/ui/js/app.js", headers={"If-None-Match": etag}) as r:
            assert r.status == 304
            assert await r.read() == b""
        async with http.get(url + "/ui/js/app.js", headers={"If-Modified-Since": modified}) as r:
            assert r.status == 304
        async with http.get(url + "/ui/js/app.js", headers={"If-None-Match": '"other"'}) as r:
            assert r.status == 200
        async with http.get(url + "/ui/") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/html")
        async with http.get(url + "/ui/../../etc/passwd") as r:
            assert r.status in (403, 404)
        async with http.get(url + "/ui/missing.js") as r:
            assert r.status == 404


def test_cassette_notifications_reads_the_built_cassette() -> None:
    notifications = jspeers.cassette_notifications(jspeers.two_step_transfer_cassette())
    states = [(n["data"]["call"]["id"][-1], n["data"]["call"]["state"]) for n in notifications]
    assert states == [
        ("5", "Ringing"),
        ("5", "Established"),
        ("5", "Held"),
        ("6", "Dialing"),
        ("5", "Released"),
        ("6", "Released"),
    ]
    assert json.loads(json.dumps(notifications)) == notifications
