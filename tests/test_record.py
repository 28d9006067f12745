"""``relay record`` end to end: the real mitmproxy in a subprocess between an aiohttp client and
a small GWS-like upstream written here (Basic auth, CSRF, session cookie, a raw Bayeux endpoint
over long-polling, WebSocket and callback-polling, assets with ETags)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import signal
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from jspeers import _Lines, _stop
from relayproc import Served, relay_server, run_relay

from relay import cassette as cas
from relay.cassette import Exchange, Notification

USER, PASSWORD = "agent7", "pw-" + secrets.token_hex(6)
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BAYEUX = "/api/v2/notifications"
CALL_5, CALL_6 = "CALL00000005", "CALL00000006"
ADVICE = {"interval": 0, "reconnect": "retry", "timeout": 4000}
APP_JS = b"console.log('workspace');\n" * 50
LOGO = bytes(range(256)) * 4
START_TIMEOUT = 20.0


# --- the upstream ---------------------------------------------------------------------------


def call_event(call: str, state: str, **extra: Any) -> dict[str, Any]:
    body = {"id": call, "state": state, "uri": f"http://gws/api/v2/me/calls/{call}", **extra}
    return {"notificationType": "StatusChange", "call": body, "messageType": "CallStateChange"}


@dataclass
class FakeGws:
    """One agent's GWS: REST with Basic + CSRF + JSESSIONID, and a raw Bayeux endpoint."""

    session_id: str = field(default_factory=lambda: secrets.token_hex(16))
    csrf: str = field(default_factory=lambda: str(uuid.uuid4()))
    queue: list[dict[str, Any]] = field(default_factory=list)
    tasks: set[asyncio.Future[None]] = field(default_factory=set)
    queued: asyncio.Event = field(default_factory=asyncio.Event)
    # Answer is answered only once the test opens this gate: after the desktop got the event
    answer_gate: asyncio.Event = field(default_factory=asyncio.Event)
    conditional_seen: list[str] = field(default_factory=list)
    websockets: list[web.WebSocketResponse] = field(default_factory=list)
    connects: int = 0

    def publish(self, channel: str, data: Any) -> None:
        message = {"channel": channel, "data": data}
        for ws in self.websockets:  # over WebSocket every event is its own frame
            if not ws.closed:
                task = asyncio.ensure_future(self._push(ws, message))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                return
        self.queue.append(message)
        self.queued.set()

    async def _push(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        await ws.send_str(json.dumps([message]))

    def drain(self) -> list[dict[str, Any]]:
        out, self.queue = self.queue, []
        self.queued.clear()
        return out

    async def process(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        replies = []
        for m in messages:
            channel, mid = m.get("channel"), m.get("id")
            if channel == "/meta/handshake":
                replies.append(
                    {
                        "channel": channel,
                        "id": mid,
                        "successful": True,
                        "clientId": secrets.token_hex(16),
                        "version": "1.0",
                        "supportedConnectionTypes": ["long-polling", "callback-polling"],
                        "advice": ADVICE,
                    }
                )
            elif channel == "/meta/connect":
                self.connects += 1
                if self.connects > 1 and not self.queue and len(messages) == 1:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.queued.wait(), ADVICE["timeout"] / 1000)
                replies.append({"channel": channel, "id": mid, "successful": True})
            elif channel == "/meta/subscribe":
                replies.append(
                    {
                        "channel": channel,
                        "id": mid,
                        "successful": True,
                        "subscription": m.get("subscription"),
                    }
                )
            elif channel == "/meta/disconnect":
                replies.append({"channel": channel, "id": mid, "successful": True})
            else:  # a publish: its acknowledgement echoes the data (it must not be recorded)
                replies.append(
                    {"channel": channel, "id": mid, "successful": True, "data": m.get("data")}
                )
        return self.drain() + replies  # queued events ride on any response

    # --- HTTP handlers --------------------------------------------------------------------

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == BASIC

    async def me(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response({"statusCode": 3}, status=401)
        response = web.json_response({"statusCode": 0, "user": {"userName": USER}})
        response.set_cookie("JSESSIONID", self.session_id, path="/", httponly=True)
        response.headers["X-CSRF-HEADER"] = "X-CSRF-TOKEN"
        response.headers["X-CSRF-TOKEN"] = self.csrf
        return response

    async def operation(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response({"statusCode": 3}, status=401)
        if (
            request.headers.get("X-CSRF-TOKEN") != self.csrf
            or request.cookies.get("JSESSIONID") != self.session_id
        ):
            return web.json_response({"statusCode": 3, "statusMessage": "Csrf"}, status=403)
        body = await request.json()
        op, call = body.get("operationName"), request.match_info["id"]
        if op == "Answer":
            # GWS often publishes before it answers: answer once the desktop has the event.
            self.publish("/v2/me/calls", call_event(call, "Established"))
            await asyncio.wait_for(self.answer_gate.wait(), 10)
        elif op == "InitiateTransfer":
            self.publish("/v2/me/calls", call_event(call, "Held"))
            self.publish(
                "/v2/me/calls",
                call_event(
                    CALL_6,
                    "Dialing",
                    parentCallUri=f"http://gws/api/v2/me/calls/{call}",
                    parentCallPath="/calls/CALL0000000H",
                ),
            )
        elif op == "CompleteTransfer":
            asyncio.get_running_loop().call_soon(self._released)
        elif op == "Accept":  # a multimedia operation: correlated by referenceId
            self.publish("/v2/me/chats", {"referenceId": 74, "messageType": "ChatAccepted"})
            return web.json_response({"statusCode": 0, "referenceId": 74})
        return web.json_response({"statusCode": 0})

    def _released(self) -> None:
        self.publish("/v2/me/calls", call_event(CALL_5, "Released"))
        self.publish(
            "/v2/me/calls",
            call_event(CALL_6, "Released", parentCallUri=f"http://gws/api/v2/me/calls/{CALL_5}"),
        )

    async def ring(self, request: web.Request) -> web.Response:
        self.publish("/v2/me/calls", call_event(CALL_5, "Ringing"))
        return web.json_response({"published": 1})

    async def bayeux(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.websocket(request)
        if request.method == "GET":  # callback-polling
            replies = await self.process(json.loads(request.query["message"]))
            text = f"{request.query['jsonp']}({json.dumps(replies)});"
            return web.Response(text=text, content_type="text/javascript")
        return web.json_response(await self.process(await request.json()))

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.websockets.append(ws)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                messages = json.loads(msg.data)
                connect_only = [m for m in messages if m.get("channel") == "/meta/connect"]
                if connect_only and len(messages) == 1 and self.connects:
                    continue  # a held connect: events are pushed as their own frames
                await ws.send_str(json.dumps(await self.process(messages)))
        return ws

    async def asset(self, request: web.Request) -> web.Response:
        content, ctype = {
            "app.js": (APP_JS, "application/javascript"),
            "copy.js": (APP_JS, "application/javascript"),
            "logo.png": (LOGO, "image/png"),
        }[request.match_info["name"]]
        for name in ("If-None-Match", "If-Modified-Since"):
            if name in request.headers:
                self.conditional_seen.append(name)
        etag = '"v1"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=content, content_type=ctype, headers={"ETag": etag})

    async def reset(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()  # the upstream resets the connection mid-exchange
        raise asyncio.CancelledError

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v2/me", self.me)
        app.router.add_post("/api/v2/me/calls/{id}", self.operation)
        app.router.add_post("/api/v2/me/chats/{id}", self.operation)
        app.router.add_post("/api/v2/reset", self.reset)
        app.router.add_post("/test/ring", self.ring)
        app.router.add_get("/ui/{name}", self.asset)
        for path in (BAYEUX, BAYEUX + "/{tail:.*}"):
            app.router.add_route("*", path, self.bayeux)
        return app


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of ``host`` (with TLS when given); yields its origin."""
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"{'https' if tls else 'http'}://{shown}:{port}"
    finally:
        await runner.cleanup()


def tls_context(directory: Path) -> ssl.SSLContext:
    """A lab server's TLS: a self-signed certificate made in ``directory``."""
    cert, key = self_signed(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# --- relay record as a subprocess -----------------------------------------------------------


@dataclass
class Recording(Served):
    """A running ``relay record``: its URL, output, and the cassette it writes."""

    out: Path

    def cassette(self) -> cas.Cassette:
        return cas.load(self.out)


@contextlib.asynccontextmanager
async def recording(upstream: str, out: Path, *args: str) -> AsyncIterator[Recording]:
    """Run ``relay record --upstream UPSTREAM -o OUT --port 0`` with its own confdir."""
    confdir = out.parent / f".mitmproxy-{out.stem}"
    async with relay_server(
        *("record", "--upstream", upstream, "-o", str(out), "--port", "0"),
        *("--confdir", str(confdir), *args),
    ) as served:
        assert served.url.startswith("http://127.0.0.1:"), served.url
        assert not served.url.endswith(":0")
        yield Recording(served.url, served.process, served.stdout, served.stderr, out)


# --- the desktop's side ---------------------------------------------------------------------


class Desktop:
    """REST and raw Bayeux through relay, with one cookie jar (like a browser)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=20),
            headers={"Authorization": BASIC},
        )
        self.csrf: dict[str, str] = {}
        self.received: list[dict[str, Any]] = []  # every notification that reached us
        self.answered: list[str] = []  # operations whose answer reached us
        self.ids = iter(range(1, 10_000))

    async def close(self) -> None:
        await self.http.close()

    async def login(self) -> aiohttp.ClientResponse:
        async with self.http.get(self.base + "/api/v2/me") as r:
            assert r.status == 200, await r.text()
            header = r.headers["X-CSRF-HEADER"]
            self.csrf = {header: r.headers[header]}
            await r.read()
            return r

    async def operation(self, call: str, op: str, kind: str = "calls", **body: Any) -> Any:
        url = f"{self.base}/api/v2/me/{kind}/{call}"
        async with self.http.post(url, json={"operationName": op, **body}, headers=self.csrf) as r:
            assert r.status == 200, await r.text()
            result = await r.json()
        self.answered.append(op)
        return result

    def _note(self, replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        events = [
            m
            for m in replies
            if not m["channel"].startswith("/meta/") and "data" in m and "successful" not in m
        ]
        self.received.extend(events)
        return replies

    async def bayeux(self, *messages: dict[str, Any], tail: str = "") -> list[dict[str, Any]]:
        batch = [{**m, "id": str(next(self.ids))} for m in messages]
        async with self.http.post(self.base + BAYEUX + tail, json=batch) as r:
            assert r.status == 200, await r.text()
            return self._note(await r.json())

    async def handshake(self) -> dict[str, Any]:
        (reply,) = await self.bayeux(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            },
            tail="/handshake",
        )
        self.client_id = reply["clientId"]
        return reply

    async def connect(self) -> list[dict[str, Any]]:
        return await self.bayeux(
            {
                "channel": "/meta/connect",
                "clientId": self.client_id,
                "connectionType": "long-polling",
            },
            tail="/connect",
        )

    async def until(self, count: int) -> None:
        """Long-poll until ``count`` notifications in all arrived (bounded by the timeout)."""
        async with asyncio.timeout(15):
            while len(self.received) < count:
                await self.connect()


def events_of(c: cas.Cassette) -> tuple[list[Exchange], list[Notification]]:
    d = c.desktop()
    return list(d.exchanges()), list(d.notifications())


def states(notes: list[Notification]) -> list[tuple[str, str]]:
    return [(n.data["call"]["id"], n.data["call"]["state"]) for n in notes if "call" in n.data]


def assert_no_secret(out: Path, *values: str) -> None:
    """No secret value in the cassette, its journal or its asset store (grep the bytes)."""
    files = [out, *out.parent.glob(out.name + ".journal")]
    store = cas.assets_dir(out)
    if store.is_dir():
        files += list(store.iterdir())
    for path in files:
        data = path.read_bytes()
        for value in values:
            assert value.encode() not in data, f"{value!r} found in {path}"


# --- tests ----------------------------------------------------------------------------------


async def test_a_transfer_over_long_polling_is_recorded_linked_and_redacted(
    tmp_path: Path,
) -> None:
    gws = FakeGws()
    out = tmp_path / "transfer.json"
    async with serve(gws.app()) as upstream, recording(upstream, out) as rec:
        desktop = Desktop(rec.url)
        try:
            me = await desktop.login()
            # transparent: the desktop sees the real session cookie and CSRF token
            assert desktop.csrf == {"X-CSRF-TOKEN": gws.csrf}
            assert me.cookies["JSESSIONID"].value == gws.session_id
            hs = await desktop.handshake()
            assert hs["advice"] == ADVICE
            await desktop.bayeux(
                {
                    "channel": "/meta/subscribe",
                    "clientId": desktop.client_id,
                    "subscription": "/v2/me/*",
                }
            )
            await desktop.connect()  # the first connect is answered at once
            async with desktop.http.post(rec.url + "/test/ring") as r:
                assert r.status == 200
            await desktop.until(1)
            # Answer: the Established event reaches the desktop before the HTTP answer
            answering = asyncio.ensure_future(desktop.operation(CALL_5, "Answer"))
            await desktop.until(2)
            assert not answering.done()
            gws.answer_gate.set()
            await answering
            await desktop.operation(CALL_5, "InitiateTransfer", destination={"phoneNumber": "5001"})
            # Held and Dialing ride on a subscribe reply, next to a publish acknowledgement
            await desktop.bayeux(
                {
                    "channel": "/meta/subscribe",
                    "clientId": desktop.client_id,
                    "subscription": "/v2/me/chats",
                },
                {"channel": "/v2/me/echo", "clientId": desktop.client_id, "data": {"x": 1}},
            )
            assert len(desktop.received) == 4
            await desktop.operation(CALL_6, "CompleteTransfer")
            await desktop.until(6)
            answer = await desktop.operation("chat1", "Accept", kind="chats")
            assert answer == {"statusCode": 0, "referenceId": 74}
            await desktop.until(7)
            await desktop.bayeux({"channel": "/meta/disconnect", "clientId": desktop.client_id})
        finally:
            await desktop.close()
        assert await rec.stop() == 0
        stderr = rec.stderr.text
    assert not Path(str(out) + ".journal").exists()
    cassette = rec.cassette()
    exchanges, notes = events_of(cassette)
    by_id = {x.id: x for x in exchanges}

    assert [(x.request.method, x.request.path) for x in exchanges] == [
        ("GET", "/api/v2/me"),
        ("POST", "/test/ring"),
        ("POST", f"/api/v2/me/calls/{CALL_5}"),
        ("POST", f"/api/v2/me/calls/{CALL_5}"),
        ("POST", f"/api/v2/me/calls/{CALL_6}"),
        ("POST", "/api/v2/me/chats/chat1"),
    ]
    assert all(not x.request.path.startswith(BAYEUX) for x in exchanges)
    assert [n.message for n in notes] == desktop.received
    ops = {x.request.operation_name: x.id for x in exchanges if x.request.operation_name}
    assert [(s, n.cause) for s, n in zip(states(notes), notes, strict=False)] == [
        ((CALL_5, "Ringing"), None),
        ((CALL_5, "Established"), ops["Answer"]),
        ((CALL_5, "Held"), ops["InitiateTransfer"]),
        ((CALL_6, "Dialing"), ops["InitiateTransfer"]),
        ((CALL_5, "Released"), ops["CompleteTransfer"]),  # posted on the consult call
        ((CALL_6, "Released"), ops["CompleteTransfer"]),
    ]
    assert notes[-1].channel == "/v2/me/chats" and notes[-1].cause == ops["Accept"]
    established = notes[1]
    answer_x = by_id[ops["Answer"]]
    assert answer_x.response_ms is not None and established.at_ms <= answer_x.response_ms
    assert all(
        a.at_ms <= b.at_ms
        for a, b in zip(cassette.desktop().events, cassette.desktop().events[1:], strict=False)
    )
    assert cassette.desktop().bayeux.advice == ADVICE
    assert cassette.desktop().bayeux.path == BAYEUX
    assert cassette.meta.upstream == upstream
    assert cassette.meta.recorded_at.endswith("Z")
    assert answer_x.request.json == {"operationName": "Answer"}
    assert answer_x.response is not None and answer_x.response.body is not None
    assert answer_x.response.body.value == {"statusCode": 0}
    me_x = exchanges[0]
    assert me_x.response is not None
    assert me_x.response.header("X-CSRF-HEADER") == "X-CSRF-TOKEN"  # not a secret
    assert me_x.response.header("X-CSRF-TOKEN") == "<redacted:x-csrf-token:1>"
    assert me_x.request.header("Authorization") == "<redacted:authorization:1>"
    assert (me_x.response.header("Set-Cookie") or "").startswith("JSESSIONID=<redacted:cookie:1>")
    assert by_id[ops["Answer"]].request.header("Cookie") == "JSESSIONID=<redacted:cookie:1>"
    assert_no_secret(out, PASSWORD, BASIC.split()[1], gws.csrf, gws.session_id)
    assert "7 notifications" in stderr and "6 exchanges" in stderr


async def test_websocket_frames_are_recorded_and_the_desktop_sees_them_unchanged(
    tmp_path: Path,
) -> None:
    gws = FakeGws()
    out = tmp_path / "ws.json"
    async with serve(gws.app()) as upstream, recording(upstream, out, "--quiet") as rec:
        desktop = Desktop(rec.url)
        try:
            await desktop.login()
            async with desktop.http.ws_connect(rec.url + BAYEUX) as ws:
                await ws.send_str(
                    json.dumps(
                        [
                            {
                                "channel": "/meta/handshake",
                                "id": "1",
                                "version": "1.0",
                                "supportedConnectionTypes": ["websocket"],
                            }
                        ]
                    )
                )
                (hs,) = json.loads(await ws.receive_str(timeout=10))
                await ws.send_str(
                    json.dumps(
                        [
                            {
                                "channel": "/meta/subscribe",
                                "id": "2",
                                "clientId": hs["clientId"],
                                "subscription": "/v2/me/*",
                            },
                            {
                                "channel": "/meta/connect",
                                "id": "3",
                                "clientId": hs["clientId"],
                                "connectionType": "websocket",
                            },
                        ]
                    )
                )
                frames = [json.loads(await ws.receive_str(timeout=10))]
                await ws.send_str(
                    json.dumps(
                        [
                            {
                                "channel": "/meta/connect",
                                "id": "4",
                                "clientId": hs["clientId"],
                                "connectionType": "websocket",
                            }
                        ]
                    )
                )
                async with desktop.http.post(rec.url + "/test/ring") as r:
                    assert r.status == 200
                frames.append(json.loads(await ws.receive_str(timeout=10)))
                answer = asyncio.ensure_future(desktop.operation(CALL_5, "Answer"))
                frames.append(json.loads(await ws.receive_str(timeout=10)))
                assert not answer.done()
                gws.answer_gate.set()
                await answer
        finally:
            await desktop.close()
        assert await rec.stop() == 0
        assert rec.stderr.text == ""  # --quiet: no status line
    assert frames[1] == [{"channel": "/v2/me/calls", "data": call_event(CALL_5, "Ringing")}]
    assert frames[2] == [{"channel": "/v2/me/calls", "data": call_event(CALL_5, "Established")}]
    cassette = rec.cassette()
    exchanges, notes = events_of(cassette)
    assert states(notes) == [(CALL_5, "Ringing"), (CALL_5, "Established")]
    answer_x = next(x for x in exchanges if x.request.operation_name == "Answer")
    assert [n.cause for n in notes] == [None, answer_x.id]
    assert answer_x.response_ms is not None and notes[1].at_ms <= answer_x.response_ms
    assert cassette.desktop().bayeux.advice == ADVICE
    assert all(not x.request.path.startswith(BAYEUX) for x in exchanges)
    assert_no_secret(out, PASSWORD, BASIC.split()[1], gws.csrf, gws.session_id)


async def test_callback_polling_events_are_recorded(tmp_path: Path) -> None:
    gws = FakeGws()
    out = tmp_path / "jsonp.json"
    async with serve(gws.app()) as upstream, recording(upstream, out, "-q") as rec:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:

            async def jsonp(message: dict[str, Any]) -> str:
                params = {"jsonp": "cb7", "message": json.dumps([message])}
                async with http.get(rec.url + BAYEUX + "/x", params=params) as r:
                    assert r.status == 200
                    return await r.text()

            hs = await jsonp(
                {
                    "channel": "/meta/handshake",
                    "id": "1",
                    "version": "1.0",
                    "supportedConnectionTypes": ["callback-polling"],
                }
            )
            client_id = json.loads(hs.removeprefix("cb7(").removesuffix(");"))[0]["clientId"]
            await jsonp({"channel": "/meta/connect", "id": "2", "clientId": client_id})
            async with http.post(rec.url + "/test/ring") as r:
                assert r.status == 200
            text = await jsonp({"channel": "/meta/connect", "id": "3", "clientId": client_id})
        assert text.startswith("cb7([") and "Ringing" in text
        assert await rec.stop() == 0
    cassette = rec.cassette()
    exchanges, notes = events_of(cassette)
    assert states(notes) == [(CALL_5, "Ringing")]
    assert notes[0].cause is None
    assert cassette.desktop().bayeux.advice == ADVICE
    assert [x.request.path for x in exchanges] == ["/test/ring"]
    assert cassette.assets == []


async def test_assets_are_stored_once_and_conditional_headers_stripped(tmp_path: Path) -> None:
    gws = FakeGws()
    out = tmp_path / "ui.json"
    async with serve(gws.app()) as upstream, recording(upstream, out, "-q") as rec:
        async with aiohttp.ClientSession() as http:
            got = {}
            for name in ("app.js", "copy.js", "logo.png", "app.js"):
                headers = {"If-None-Match": '"v1"', "If-Modified-Since": "Thu, 01 Jan 2026"}
                async with http.get(f"{rec.url}/ui/{name}", headers=headers) as r:
                    assert r.status == 200  # the 304 the desktop asked for is not captured
                    got[name] = await r.read()
        assert await rec.stop() == 0
    assert got == {"app.js": APP_JS, "copy.js": APP_JS, "logo.png": LOGO}
    assert gws.conditional_seen == []
    cassette = rec.cassette()
    assert sorted(a.path for a in cassette.assets) == ["/ui/app.js", "/ui/copy.js", "/ui/logo.png"]
    store = cas.assets_dir(out)
    assert sorted(p.name for p in store.iterdir()) == sorted({a.sha256 for a in cassette.assets})
    assert len(list(store.iterdir())) == 2  # app.js and copy.js share one content
    for a in cassette.assets:
        assert (store / a.sha256).read_bytes() == got[a.path.rsplit("/", 1)[1]]
        assert a.status == 200
        headers = {k.lower(): v for k, v in a.headers}
        assert headers["etag"] == '"v1"' and "content-length" not in headers
    assert list(cassette.desktop().events) == []


async def test_an_upstream_that_resets_or_is_down_gives_502_and_is_recorded(
    tmp_path: Path,
) -> None:
    gws = FakeGws()
    out = tmp_path / "down.json"
    async with serve(gws.app()) as upstream, recording(upstream, out, "-q") as rec:
        async with aiohttp.ClientSession(headers={"Authorization": BASIC}) as http:
            async with http.post(rec.url + "/api/v2/reset", json={"a": 1}) as r:
                assert r.status == 502
            async with http.get(rec.url + "/api/v2/me") as r:  # recording goes on
                assert r.status == 200
        assert await rec.stop() == 0
    exchanges, _ = events_of(rec.cassette())
    assert [(x.request.path, x.response is None, bool(x.error)) for x in exchanges] == [
        ("/api/v2/reset", True, True),
        ("/api/v2/me", False, False),
    ]

    # nobody listens at all
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    out2 = tmp_path / "dead.json"
    async with recording(dead, out2) as rec2:
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.post(rec2.url + "/api/v2/me/calls/1", json={}) as r:
                    assert r.status == 502
        assert await rec2.stop(signal.SIGINT) == 0
        assert "2 errors" in rec2.stderr.text
    exchanges, _ = events_of(rec2.cassette())
    assert len(exchanges) == 2 and all(x.response is None and x.error for x in exchanges)


async def test_kill_9_then_recover_keeps_everything_the_desktop_saw(tmp_path: Path) -> None:
    gws = FakeGws()
    out = tmp_path / "killed.json"
    async with serve(gws.app()) as upstream, recording(upstream, out) as rec:
        desktop = Desktop(rec.url)
        try:
            await desktop.login()
            await desktop.handshake()
            await desktop.connect()
            async with desktop.http.post(rec.url + "/test/ring") as r:
                assert r.status == 200
            await desktop.until(1)
            answering = asyncio.ensure_future(desktop.operation(CALL_5, "Answer"))
            await desktop.until(2)
            assert not answering.done()
            gws.answer_gate.set()
            await answering
            await desktop.operation(CALL_5, "InitiateTransfer", destination={"phoneNumber": "5"})
            await desktop.until(4)
            # a long poll is in flight when the recorder dies
            pending = asyncio.ensure_future(desktop.connect())
            await asyncio.sleep(0)
            assert await rec.stop(signal.SIGKILL) == -signal.SIGKILL
            with contextlib.suppress(aiohttp.ClientError):
                await pending
        finally:
            await desktop.close()
    journal = Path(str(out) + ".journal")
    assert journal.exists() and not out.exists()
    code, stdout, stderr = await run_relay("recover", str(out))
    assert code == 0, stderr
    assert stdout.startswith(f"recovered {out}")
    assert not journal.exists()
    exchanges, notes = events_of(cas.load(out))
    assert [n.message for n in notes] == desktop.received
    answered = [x.request.operation_name for x in exchanges if x.response is not None]
    assert [op for op in answered if op] == desktop.answered
    ops = {x.request.operation_name: x.id for x in exchanges}
    assert [n.cause for n in notes] == [
        None,
        ops["Answer"],
        ops["InitiateTransfer"],
        ops["InitiateTransfer"],
    ]
    assert_no_secret(out, PASSWORD, BASIC.split()[1], gws.csrf, gws.session_id)


async def test_extra_redaction_rules(tmp_path: Path) -> None:
    gws = FakeGws()
    out = tmp_path / "extra.json"
    customer = "Ada Lovelace " + secrets.token_hex(4)
    args = ["-q", "--redact-header", "X-Agent-Id", "--redact-json", "userData"]
    async with serve(gws.app()) as upstream, recording(upstream, out, *args) as rec:
        desktop = Desktop(rec.url)
        try:
            await desktop.login()
            await desktop.operation(
                CALL_5,
                "AnswerLater",
                userData={"name": customer, "vip": True},
                password="hunter2-" + PASSWORD,
            )
            async with desktop.http.get(
                rec.url + "/api/v2/me", headers={"X-Agent-Id": "agent-id-4242"}
            ) as r:
                assert r.status == 200
        finally:
            await desktop.close()
        assert await rec.stop() == 0
    exchanges, _ = events_of(rec.cassette())
    body = exchanges[1].request.json
    assert body["userData"] == {"name": "<redacted:userdata:1>", "vip": True}
    assert body["password"] == "<redacted:password:1>"
    assert exchanges[2].request.header("X-Agent-Id") == "<redacted:x-agent-id:1>"
    assert_no_secret(out, customer, "hunter2", "agent-id-4242", PASSWORD, gws.csrf)


async def test_title_notes_and_desktop_name_reach_the_cassette(tmp_path: Path) -> None:
    gws = FakeGws()
    out = tmp_path / "labelled.json"
    args = ["-q", "--title", "Transfer on 8.5.2", "--notes", "lab B, build 42", "--desktop", "ann"]
    async with serve(gws.app()) as upstream, recording(upstream, out, *args) as rec:
        desktop = Desktop(rec.url)
        try:
            await desktop.login()
        finally:
            await desktop.close()
        assert await rec.stop() == 0
    cassette = rec.cassette()
    assert cassette.meta.title == "Transfer on 8.5.2"
    assert cassette.meta.notes == "lab B, build 42"
    assert [d.name for d in cassette.desktops] == ["ann"]


@pytest.mark.parametrize(
    "args",
    [
        ["record", "--upstream", "ftp://x", "-o", "{tmp}/a.json"],
        ["record", "--upstream", "http://x/api", "-o", "{tmp}/a.json"],
        ["record", "-o", "{tmp}/a.json"],
        ["record", "--upstream", "http://x", "-o", "{tmp}/no/such/dir/a.json"],
        ["record", "--upstream", "http://x", "-o", "{tmp}/a.json", "--redact-json", "a..b"],
        ["record", "--upstream", "http://x", "-o", "{tmp}/a.json", "--port", "70000"],
        ["record", "--upstream", "http://x", "-o", "{tmp}/a.json", "--host", "no.such.invalid"],
        ["recover", "{tmp}/nothing.json"],
    ],
)
async def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    code, stdout, stderr = await run_relay(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stderr and stderr.strip()


async def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        code, stdout, stderr = await run_relay(
            "record",
            "--upstream",
            "http://127.0.0.1:1",
            "-o",
            str(tmp_path / "b.json"),
            "--port",
            port,
            "--confdir",
            str(tmp_path / "conf"),
        )
    assert code == 2 and stdout == ""
    assert stderr == f"Error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert list(tmp_path.glob("b.json*")) == []


async def test_a_left_journal_blocks_a_new_recording_until_recovered(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    Path(str(out) + ".journal").write_text('{"t":"start","at":1.0,"upstream":"u"}\n{"t":"req')
    code, _, stderr = await run_relay("record", "--upstream", "http://x", "-o", str(out))
    assert code == 2 and "relay recover" in stderr
    code, _, stderr = await run_relay("recover", str(out))
    assert code == 0, stderr
    assert cas.load(out).desktop().events == []


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A lab server's self-signed certificate for 127.0.0.1: (cert, key) PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab-gws")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "lab.pem", directory / "lab.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_an_https_upstream_with_a_self_signed_certificate(tmp_path: Path) -> None:
    statuses = {}
    async with serve(FakeGws().app(), tls=tls_context(tmp_path)) as upstream:
        for flag in ("", "--insecure"):
            out = tmp_path / f"tls{flag}.json"
            async with recording(upstream, out, "-q", *([flag] if flag else [])) as rec:
                async with (
                    aiohttp.ClientSession(headers={"Authorization": BASIC}) as http,
                    http.get(rec.url + "/api/v2/me") as r,
                ):
                    statuses[flag] = r.status
                assert await rec.stop() == 0
            (x,) = events_of(rec.cassette())[0]
            assert rec.cassette().meta.upstream == upstream
            if flag:
                assert x.response is not None and x.response.status == 200
            else:
                assert x.response is None and x.error and "certificate" in x.error.lower()
    assert statuses == {"": 502, "--insecure": 200}


async def test_regular_proxy_mode_with_an_https_upstream(tmp_path: Path) -> None:
    """A desktop configured with relay as its HTTP proxy reaching an HTTPS lab server: it
    tunnels with CONNECT and trusts mitmproxy's CA (from --confdir); relay records the
    decrypted exchanges and passes other hosts through unrecorded."""
    out = tmp_path / "regular-tls.json"
    async with (
        serve(FakeGws().app(), tls=tls_context(tmp_path)) as upstream,
        serve(FakeGws().app()) as elsewhere,
        recording(upstream, out, "-q", "--mode", "regular", "--insecure") as rec,
    ):
        ca = out.parent / f".mitmproxy-{out.stem}" / "mitmproxy-ca-cert.pem"
        desktop_context = ssl.create_default_context(cafile=str(ca))
        async with aiohttp.ClientSession(
            headers={"Authorization": BASIC}, cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as http:
            async with http.get(upstream + "/api/v2/me", proxy=rec.url, ssl=desktop_context) as r:
                assert r.status == 200
                token = r.headers["X-CSRF-TOKEN"]
            hold = {"operationName": "Hold"}
            async with http.post(
                upstream + "/api/v2/me/calls/" + CALL_5,
                json=hold,
                headers={"X-CSRF-TOKEN": token},
                proxy=rec.url,
                ssl=desktop_context,
            ) as r:
                assert r.status == 200, await r.text()
            async with http.get(elsewhere + "/api/v2/me", proxy=rec.url) as r:
                assert r.status == 200
        assert await rec.stop() == 0
    cassette = rec.cassette()
    exchanges, _ = events_of(cassette)
    assert [(x.request.method, x.request.operation_name) for x in exchanges] == [
        ("GET", None),
        ("POST", "Hold"),
    ]
    assert cassette.meta.upstream == upstream
    assert_no_secret(out, PASSWORD, token)


async def test_regular_proxy_mode_records_only_the_upstream(tmp_path: Path) -> None:
    gws, other = FakeGws(), FakeGws()
    out = tmp_path / "regular.json"
    async with (
        serve(gws.app()) as upstream,
        serve(other.app()) as elsewhere,
        recording(upstream, out, "-q", "--mode", "regular") as rec,
    ):
        async with aiohttp.ClientSession(headers={"Authorization": BASIC}) as http:
            for base in (upstream, elsewhere, upstream):
                async with http.get(base + "/api/v2/me", proxy=rec.url) as r:
                    assert r.status == 200
            async with http.get(upstream + "/ui/app.js", proxy=rec.url) as r:
                assert await r.read() == APP_JS
            async with http.options(upstream + "/api/v2/me", proxy=rec.url) as r:
                assert r.status == 405  # a CORS preflight: forwarded, not recorded
        assert await rec.stop() == 0
    cassette = rec.cassette()
    exchanges, _ = events_of(cassette)
    assert len(exchanges) == 2
    assert [a.path for a in cassette.assets] == ["/ui/app.js"]
    assert cassette.meta.upstream == upstream


async def test_the_addon_runs_in_mitmdump(tmp_path: Path) -> None:
    import shutil

    import relay.record

    mitmdump = shutil.which("mitmdump")
    if mitmdump is None:
        pytest.skip("mitmdump is not on PATH")
    gws = FakeGws()
    out = tmp_path / "dump.json"
    async with serve(gws.app()) as upstream:
        process = await asyncio.create_subprocess_exec(
            mitmdump,
            "--mode",
            f"reverse:{upstream}",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--set",
            f"confdir={tmp_path / 'conf'}",
            "-s",
            relay.record.__file__,
            "--set",
            f"relay_output={out}",
            # with mitmproxy's own recorder too: what the addon keeps in flow.metadata saves
            "-w",
            str(tmp_path / "flows"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = _Lines(process.stdout), _Lines(process.stderr)
        try:

            def port(lines: list[str]) -> str | None:
                for line in lines:
                    if "listening at" in line:
                        return line.rsplit(":", 1)[1].rstrip(".")
                return None

            try:
                found = await stdout.wait_for(port, START_TIMEOUT)
            except (TimeoutError, EOFError) as e:
                raise AssertionError(stdout.text + stderr.text) from e
            desktop = Desktop(f"http://127.0.0.1:{found}")
            try:
                await desktop.login()
                await desktop.operation(CALL_5, "Hold")
            finally:
                await desktop.close()
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 15)
        finally:
            await _stop(process)
            await stdout.finish()
            await stderr.finish()
    exchanges, _ = events_of(cas.load(out))
    assert [x.request.operation_name for x in exchanges] == [None, "Hold"]
    assert cas.load(out).meta.upstream == upstream
    from mitmproxy import io as mitm_io

    with (tmp_path / "flows").open("rb") as f:
        saved = list(mitm_io.FlowReader(f).stream())
    assert [flow.metadata["relay.route"] for flow in saved] == ["exchange", "exchange"]
    assert_no_secret(out, PASSWORD, gws.csrf, gws.session_id)


# --- the addon's hooks in process (mitmproxy's own test helpers) ----------------------------


@pytest.fixture
async def addon(tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Path]]:
    from mitmproxy.test import taddons

    from relay.record import Recorder

    recorder = Recorder()
    out = tmp_path / "unit.json"
    with taddons.context(recorder) as tctx:
        tctx.configure(
            recorder, relay_output=str(out), relay_status=False, mode=["reverse:http://gws:8080"]
        )
        recorder.running()
        yield recorder, tctx, out
        recorder.done()


def _journal(out: Path) -> list[dict[str, Any]]:
    lines = Path(str(out) + ".journal").read_bytes().splitlines()
    return [json.loads(line) for line in lines]


async def test_websocket_frames_are_journaled_then_dropped(addon: Any) -> None:
    from mitmproxy import websocket
    from mitmproxy.test import tflow
    from wsproto.frame_protocol import Opcode

    recorder, _, out = addon
    flow = tflow.twebsocketflow()
    flow.request.path = BAYEUX
    assert flow.websocket is not None
    flow.websocket.messages = []
    frames = [
        (True, b'[{"channel":"/meta/connect","id":"1"}]'),
        (False, b'[{"channel":"/v2/me/calls","data":{"call":{"id":"c","state":"Ringing"}}}]'),
        (False, b'[{"channel":"/meta/connect","successful":true}]'),
    ]
    for from_client, content in frames:
        flow.websocket.messages.append(
            websocket.WebSocketMessage(Opcode.TEXT, from_client, content)
        )
        recorder.websocket_message(flow)
        assert flow.websocket.messages == []  # nothing retained for the connection's life
    notes = [r for r in _journal(out) if r["t"] == "notification"]
    assert [n["message"]["data"]["call"]["state"] for n in notes] == ["Ringing"]
    assert _journal(out)[0]["upstream"] == "http://gws:8080"


async def test_conditional_headers_are_stripped_except_on_bayeux(addon: Any) -> None:
    from mitmproxy.test import tflow, tutils

    recorder, _, _ = addon
    for path, stripped in (("/ui/app.js", True), ("/api/v2/me", True), (BAYEUX, False)):
        flow = tflow.tflow(req=tutils.treq(path=path.encode()))
        flow.request.headers["If-None-Match"] = '"v1"'
        flow.request.headers["If-Modified-Since"] = "Thu, 01 Jan 2026 00:00:00 GMT"
        recorder.requestheaders(flow)
        assert ("If-None-Match" not in flow.request.headers) is stripped
        assert ("If-Modified-Since" not in flow.request.headers) is stripped


async def test_an_exchange_journals_its_request_before_its_answer(addon: Any) -> None:
    from mitmproxy.test import tflow, tutils

    recorder, _, out = addon
    flow = tflow.tflow(
        req=tutils.treq(method=b"POST", path=b"/api/v2/me/calls/c1", content=b'{"a":1}')
    )
    recorder.request(flow)
    assert [r["t"] for r in _journal(out)] == ["start", "request"]
    flow.error = tflow.terr("Connection reset by peer")
    recorder.error(flow)
    recorder.error(flow)  # an error after the first is not a second answer
    assert [r["t"] for r in _journal(out)] == ["start", "request", "error"]
    assert recorder.status.errors == 1 and recorder.status.exchanges == 1


def test_status_line_in_place_on_a_terminal_plain_lines_otherwise() -> None:
    import io

    from relay.record import Status

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    status = Status(tty, True)
    status.exchanges = 2
    status.changed()
    status.notifications = 1
    status.changed()
    status.show(final=True)
    assert tty.getvalue() == (
        "\r\x1b[Krelay: 2 exchanges, 0 notifications, 0 assets, 0 errors"
        "\r\x1b[Krelay: 2 exchanges, 1 notifications, 0 assets, 0 errors"
        "\r\x1b[Krelay: 2 exchanges, 1 notifications, 0 assets, 0 errors\n"
    )
    plain = io.StringIO()
    status = Status(plain, True)
    status.changed()  # not a terminal: only the ticker shows it, once per change
    status.show()
    status.show()
    status.errors = 1
    status.show()
    assert plain.getvalue().splitlines() == [
        "relay: 0 exchanges, 0 notifications, 0 assets, 0 errors",
        "relay: 0 exchanges, 0 notifications, 0 assets, 1 errors",
    ]
    quiet = io.StringIO()
    Status(quiet, False).show(final=True)
    assert quiet.getvalue() == ""
