"""The replay server: a cassette's REST API and a Bayeux server on aiohttp.

A thin adapter. The protocol decisions are ``relay.bayeux``'s, the matching and timing
``relay.timeline``'s; this module routes requests to replay sessions, waits (held connects,
timers), writes answers and pushes notifications.

Sessions: each desktop gets a replay session with its own cursor. A request carrying the
``relay_session`` cookie of a live session belongs to it; a handshake with that cookie joins it
(a re-handshake after a 402 or a sleeping laptop keeps the cursor). A request without it goes
to the only live session that can match it (409 when several can), else starts a session and
sets the cookie. Bayeux messages after the handshake find their session by ``clientId``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import difflib
import functools
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, hdrs, web
from multidict import CIMultiDict

from relay import bayeux as bx
from relay.cassette import Asset, Body, Cassette, Desktop, Exchange, Notification, Request
from relay.errors import BayeuxError
from relay.matching import describe_request, explain, query_matches
from relay.redact import PLACEHOLDER_RE
from relay.summary import one_line, operations_of
from relay.timeline import Served, Timeline

SESSION_COOKIE = "relay_session"
CONTROL_PREFIX = "/_relay"
#: Seconds past the long-poll timeout after which a silent Bayeux client is forgotten.
CLIENT_GRACE = 60.0
#: Headers never copied from a recorded response: aiohttp computes them, or they describe
#: an encoding the stored (decoded) body no longer has.
_SKIP_RESPONSE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Content-Encoding",
        "Date",
        "Server",
        "Access-Control-Allow-Origin",
        "Access-Control-Allow-Credentials",
        "Access-Control-Expose-Headers",
    )
)
_EXPOSED = "X-CSRF-HEADER, X-CSRF-TOKEN"

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to replay. ``timeout_ms`` None: the recorded handshake advice."""

    speed: float = 1.0
    timeout_ms: int | None = None
    keep_origin: bool = False
    desktop: str | None = None
    subscribe_wait: float = 30.0
    session_idle: float = 600.0
    step: bool = False
    loop: bool = False


@dataclass(slots=True)
class ClientConn:
    """Adapter state of one Bayeux client: how to wake its held connect, where to push."""

    origin: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ws_out: asyncio.Queue[bytes] | None = None
    last_seen: float = 0.0
    holding: int = 0  # connects of this client being held now


@dataclass(slots=True)
class Session:
    sid: str
    timeline: Timeline
    origin: str
    clients: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    last_seen: float = 0.0


class Replayer:
    """The replay state shared by the handlers of one app."""

    def __init__(
        self, cassette: Cassette, options: ReplayOptions, log: Log, *, verbose: bool = True
    ) -> None:
        self.cassette = cassette
        self.options = options
        self.desktop: Desktop = cassette.desktop(options.desktop)
        self.log = log
        self.verbose = verbose
        timeout = options.timeout_ms
        if timeout is None:
            timeout = self.desktop.bayeux.timeout_ms
        self.bayeux = bx.Bayeux(timeout_ms=timeout, new_id=lambda: secrets.token_hex(16))
        self.bayeux_path = self.desktop.bayeux.path.rstrip("/")
        self.upstream = cassette.meta.upstream.rstrip("/").encode()
        self.sessions: dict[str, Session] = {}
        self.conns: dict[str, ClientConn] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        self.closing = False
        # Presenter settings: they start from the options and change at run time.
        self.speed = options.speed
        self.paused = False
        self.step = options.step
        self._numbers = itertools.count(1)
        self.unmatched: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.unmatched_total = 0
        self.answers: dict[tuple[str, str], Answer] = {}  # (exchange id, origin) -> ready answer
        self.operations = operations_of(cassette)
        self.assets: dict[str, list[Asset]] = {}
        for asset in cassette.assets:
            self.assets.setdefault(asset.path, []).append(asset)
        # Paths outside /api/ that the timeline itself knows (a hand-made cassette may have some).
        self.timeline_paths = {
            e.request.path
            for e in self.desktop.exchanges()
            if not e.request.path.startswith("/api/")
        }

    # -- sessions

    def info(self, line: str) -> None:
        """A routine console line (errors go to ``log`` always)."""
        if self.verbose:
            self.log(line)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def new_sid(self) -> str:
        return f"s{next(self._numbers)}-{secrets.token_hex(3)}"

    def new_session(self, origin: str, sid: str | None = None) -> Session:
        sid = sid or self.new_sid()
        session = Session(sid, self._timeline(), origin, last_seen=self.now())
        self.sessions[sid] = session
        self.info(f"session {sid}: new desktop session from {origin}")
        return session

    def _timeline(self) -> Timeline:
        timeline = Timeline(
            self.desktop,
            start=self.now(),
            speed=self.speed,
            subscribe_wait=self.options.subscribe_wait,
            step=self.step,
        )
        if self.paused:
            timeline.pause()
        return timeline

    def reset(self, session: Session) -> None:
        """Start a session's scenario again from the top (its clients stay connected)."""
        session.timeline = self._timeline()
        self.info(f"session {session.sid}: reset to the start of the cassette")
        self.pump(session)

    def touch(self, session: Session, now: float | None = None) -> None:
        """A request of the session: with ``loop``, a finished scenario starts again."""
        session.last_seen = self.now() if now is None else now
        if self.options.loop and session.timeline.finished:
            self.info(f"session {session.sid}: played the whole cassette, looping")
            self.reset(session)

    # -- presenter controls (the control API and the terminal call these)

    def release_next(self, sid: str | None = None) -> list[str]:
        """Step mode: release the next group of notifications (of one session, or all)."""
        chosen = [self.sessions[sid]] if sid else list(self.sessions.values())
        for session in chosen:
            session.timeline.release_next()
            self.pump(session)
        return [s.sid for s in chosen]

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        for session in self.sessions.values():
            if paused:
                session.timeline.pause()
            else:
                session.timeline.resume(self.now())
            self.pump(session)
        self.info("paused" if paused else "resumed")

    def set_speed(self, speed: float) -> None:
        self.speed = speed
        for session in self.sessions.values():
            session.timeline.set_speed(speed)
            self.pump(session)
        self.info(f"speed {speed:g}")

    def live(self) -> list[Session]:
        """Sessions still in play; idle ones without Bayeux clients are dropped."""
        now = self.now()
        for sid, s in list(self.sessions.items()):
            idle = now - s.last_seen > self.options.session_idle
            if idle and not any(c in self.bayeux.clients for c in s.clients):
                self.drop(s)
                del self.sessions[sid]
        return list(self.sessions.values())

    def drop(self, session: Session) -> None:
        if session.timer is not None:
            session.timer.cancel()
        for client in self.bayeux.drop_owner(session.sid):
            conn = self.conns.pop(client.client_id, None)
            if conn is not None:
                conn.wake.set()

    def by_cookie(self, request: web.Request) -> Session | None:
        sid = session_cookie(request.headers.get(hdrs.COOKIE, ""))
        return self.sessions.get(sid) if sid else None

    def sweep(self) -> None:
        """Forget Bayeux clients that went away without a disconnect (a closed laptop).

        Like a CometD server's ``maxInterval``: a client with no held connect, no WebSocket and
        no request for the long-poll timeout plus ``CLIENT_GRACE`` seconds is dropped.
        """
        now = self.now()
        limit = self.bayeux.timeout_ms / 1000 + CLIENT_GRACE
        for cid, conn in list(self.conns.items()):
            if conn.holding or conn.ws_out is not None or now - conn.last_seen <= limit:
                continue
            client = self.bayeux.forget(cid)
            del self.conns[cid]
            if client is not None and client.owner in self.sessions:
                self.sessions[client.owner].clients.discard(cid)
                self.info(f"session {client.owner}: client {cid[:8]}… went away, forgotten")

    def asset_for(self, path: str, query: list[tuple[str, str]]) -> Asset | None:
        """The recorded asset for a GET: same path and query (a redacted value matches any),
        else the first one recorded at that path (a page's query is settings or cache-busting,
        not another page)."""
        candidates = self.assets.get(path)
        if not candidates:
            return None
        for asset in candidates:
            if query_matches(query, asset.query):
                return asset
        return candidates[0]

    # -- notifications

    def pump(self, session: Session) -> None:
        """Deliver what is due for a session and set a timer for what comes next."""
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        if self.closing:
            return
        clients = [self.bayeux.clients[c] for c in session.clients if c in self.bayeux.clients]
        release = session.timeline.due(
            self.now(), lambda n: any(c.subscribed_to(n.channel) for c in clients)
        )
        for n in release.delivered:
            self.deliver(session, n, clients)
        for n in release.skipped:
            self.log(
                f"session {session.sid}: gave up on {n.id} {n.channel}: no subscription "
                f"matched within {self.options.subscribe_wait:g}s"
            )
        if release.wake_at is not None:
            loop = asyncio.get_running_loop()
            session.timer = loop.call_at(release.wake_at, self.pump, session)

    def deliver(self, session: Session, n: Notification, clients: list[bx.Client]) -> None:
        message = {k: v for k, v in n.message.items() if k != "clientId"}
        for client in clients:
            if not client.subscribed_to(n.channel):
                continue
            conn = self.conns.get(client.client_id)
            if conn is None:
                continue
            if conn.ws_out is not None:
                conn.ws_out.put_nowait(self.rewrite(orjson.dumps([message]), conn.origin))
            else:
                self.bayeux.enqueue(client, message)
                conn.wake.set()
        if self.verbose:
            self.log(f"session {session.sid}: <- {one_line(n, self.operations)}")

    # -- origins

    def rewrite(self, data: bytes, origin: str) -> bytes:
        """Replace the recorded upstream origin by the one the client used."""
        if self.options.keep_origin or not self.upstream:
            return data
        return data.replace(self.upstream, origin.encode())


def session_cookie(header: str) -> str | None:
    """The ``relay_session`` value of a Cookie header (read directly: aiohttp's
    ``request.cookies`` builds a SimpleCookie of every cookie, a hot spot under load)."""
    prefix = SESSION_COOKIE + "="
    for part in header.split(";"):
        part = part.strip()
        if part.startswith(prefix):
            return part[len(prefix) :].strip('"') or None
    return None


def client_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


REPLAYER = web.AppKey("replayer", Replayer)


# --- REST ------------------------------------------------------------------------------------


async def _incoming(request: web.Request) -> Request:
    data = await request.read() if request.body_exists else b""
    return Request(
        method=request.method,
        path=request.path,
        query=list(request.query.items()),
        body=Body.from_bytes(data, request.content_type if data else None),
    )


def _json_response(status: int, value: Any, **headers: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(value), content_type="application/json", headers=headers
    )


def _set_cookie_value(value: str) -> str:
    # A redacted cookie value is not a valid cookie-octet string: give the desktop a token.
    return PLACEHOLDER_RE.sub(lambda m: f"relay-redacted-{m.group(1)}-{m.group(2)}", value)


@dataclass(frozen=True, slots=True)
class Answer:
    """A recorded response made ready for one client origin (built once, sent many times)."""

    status: int
    reason: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            reason=self.reason,
            body=self.body,
            headers=CIMultiDict(self.headers),
        )


def build_answer(replayer: Replayer, exchange: Exchange, origin: str) -> Answer:
    """Headers filtered, cookies made valid, the recorded origin replaced by the client's."""
    recorded = exchange.response
    if recorded is None:
        report = {"relay": "recorded-failure", "error": exchange.error, "exchange": exchange.id}
        return Answer(502, None, (("Content-Type", "application/json"),), orjson.dumps(report))
    headers: list[tuple[str, str]] = []
    for name, value in recorded.headers:
        lname = name.lower()
        if lname in _SKIP_RESPONSE_HEADERS:
            continue
        if lname == "set-cookie":
            value = _set_cookie_value(value)
        elif lname == "location":
            value = replayer.rewrite(value.encode(), origin).decode()
        headers.append((name, value))
    body = recorded.body.to_bytes() if recorded.body is not None else b""
    if recorded.body is not None and recorded.body.kind != "base64":
        body = replayer.rewrite(body, origin)
    if recorded.body is not None and not any(k.lower() == "content-type" for k, _ in headers):
        kind = recorded.body.kind
        headers.append(("Content-Type", "application/json" if kind == "json" else "text/plain"))
    return Answer(recorded.status, recorded.reason or None, tuple(headers), body)


def _recorded_response(replayer: Replayer, exchange: Exchange, origin: str) -> web.Response:
    key = (exchange.id, origin)
    answer = replayer.answers.get(key)
    if answer is None:
        if len(replayer.answers) >= 4096:
            replayer.answers.clear()
        answer = replayer.answers[key] = build_answer(replayer, exchange, origin)
    return answer.response()


def _no_match(
    replayer: Replayer, session: Session, request: Request, served: Served
) -> web.Response:
    described = describe_request(request)
    expected = served.expected
    if served.recorded_later is not None and expected is not None:
        hint = (
            f"recorded later ({served.recorded_later.id}); the desktop is expected to send "
            f"{describe_request(expected.request)} [{expected.id}] first"
        )
    elif served.closest:
        best = served.closest[0]
        what = "; ".join(d.describe() for d in best.differences)
        hint = f"closest is {describe_request(best.exchange.request)} [{best.exchange.id}]: {what}"
    else:
        hint = "nothing like it was recorded"
    replayer.log(f"session {session.sid}: NO MATCH {described}: {hint}")
    report = {
        "relay": "no-match",
        "message": f"relay: no recorded exchange matches {described}",
        "hint": hint,
        "session": session.sid,
        "request": described,
        "expected": None if expected is None else describe_request(expected.request),
        "closest": explain(served.closest),
    }
    replayer.unmatched.append(report)
    replayer.unmatched_total += 1
    return _json_response(404, report)


def _asset_miss(replayer: Replayer, request: Request) -> web.Response:
    described = describe_request(request)
    near = difflib.get_close_matches(request.path, list(replayer.assets), n=3, cutoff=0.5)
    hint = f"closest recorded assets: {', '.join(near)}" if near else "no asset recorded near it"
    replayer.log(f"NO MATCH {described}: not in the cassette's asset store; {hint}")
    report: dict[str, Any] = {
        "relay": "no-match",
        "message": f"relay: no recorded asset or exchange matches {described}",
        "hint": hint,
        "session": None,
        "request": described,
        "expected": None,
        "closest": [],
    }
    replayer.unmatched.append(report)
    replayer.unmatched_total += 1
    return _json_response(404, report)


async def rest_handler(request: web.Request) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return _preflight(request)
    replayer = request.app[REPLAYER]
    origin = client_origin(request)
    incoming = await _incoming(request)
    if request.method in ("GET", "HEAD"):
        asset = replayer.asset_for(request.path, incoming.query)
        if asset is not None:
            return await _asset_response(request, asset)
    if not request.path.startswith("/api/") and request.path not in replayer.timeline_paths:
        return _asset_miss(replayer, incoming)  # outside the timeline: no session is involved
    session = replayer.by_cookie(request)
    new_cookie = False
    if session is None:
        able = [s for s in replayer.live() if s.timeline.peek(incoming).ok]
        if len(able) > 1:
            names = ", ".join(s.sid for s in able)
            return _json_response(
                409,
                {
                    "relay": "ambiguous-session",
                    "message": f"relay: {len(able)} live sessions can take this request "
                    f"({names}); send the {SESSION_COOKIE} cookie to choose",
                    "sessions": [s.sid for s in able],
                },
            )
        session = able[0] if able else replayer.new_session(origin)
        new_cookie = not able
    now = replayer.now()
    replayer.touch(session, now)
    served = session.timeline.serve(incoming, now)
    if not served.ok or served.exchange is None:
        response = _no_match(replayer, session, incoming, served)
    else:
        response = _recorded_response(replayer, served.exchange, origin)
        status = served.exchange.response.status if served.exchange.response else 502
        note = " (repeat)" if served.kind == "repeat" else ""
        if replayer.verbose:
            replayer.log(
                f"session {session.sid}: -> {describe_request(incoming)} "
                f"{status} [{served.exchange.id}]{note}"
            )
        if served.kind == "hit":
            replayer.pump(session)
    if new_cookie:
        response.set_cookie(SESSION_COOKIE, session.sid, path="/", httponly=True, samesite="Lax")
    return response


async def _asset_response(request: web.Request, asset: Asset) -> web.StreamResponse:
    replayer = request.app[REPLAYER]
    path = request.app.get(ASSETS_DIR)
    if path is None:
        return _json_response(404, {"relay": "no-asset-store", "path": request.path})
    try:
        data = await asyncio.to_thread((path / asset.sha256).read_bytes)
    except OSError as e:
        replayer.log(f"asset {request.path}: cannot read {asset.sha256} ({e.strerror or e})")
        return _json_response(404, {"relay": "asset-missing", "path": request.path})
    response = web.Response(status=asset.status, body=data)
    for name, value in asset.headers:
        if name.lower() not in _SKIP_RESPONSE_HEADERS and name.lower() != "set-cookie":
            response.headers.add(name, value)
    return response


# --- Bayeux ----------------------------------------------------------------------------------


def _bayeux_error(e: BayeuxError) -> web.Response:
    return _json_response(e.status, {"error": str(e), "relay": "bad-bayeux-request"})


def _owner_for(
    replayer: Replayer,
    request: web.Request,
    messages: list[bx.Message],
    reserved: str | None = None,
) -> tuple[str | None, bool]:
    """The session a handshake joins (and whether it is new); None when no handshake.

    ``reserved``: the session id a WebSocket's upgrade response already set as cookie.
    """
    if not any(m["channel"] == bx.HANDSHAKE for m in messages):
        return None, False
    session = replayer.by_cookie(request)
    if session is None and reserved is not None:
        session = replayer.sessions.get(reserved)
    if session is not None:
        return session.sid, False
    return replayer.new_session(client_origin(request), reserved).sid, True


def _after(
    replayer: Replayer, outcome: bx.Outcome, origin: str, ws: asyncio.Queue[bytes] | None
) -> None:
    """Adapter bookkeeping once the core has answered a request."""
    if outcome.handshaken is not None:
        c = outcome.handshaken
        replayer.conns[c.client_id] = ClientConn(origin=origin, ws_out=ws, last_seen=replayer.now())
        session = replayer.sessions[c.owner]
        session.clients.add(c.client_id)
        replayer.info(f"session {c.owner}: handshake, clientId {c.client_id[:8]}…")
    client = outcome.client
    if client is not None and client.client_id in replayer.conns:
        conn = replayer.conns[client.client_id]
        conn.origin = origin
        conn.last_seen = replayer.now()
        if ws is not None:
            conn.ws_out = ws
        owning = replayer.sessions.get(client.owner)
        if owning is not None:
            replayer.touch(owning)
    if outcome.disconnected is not None:
        c = outcome.disconnected
        released = replayer.conns.pop(c.client_id, None)
        if released is not None:
            released.wake.set()
        if c.owner in replayer.sessions:
            replayer.sessions[c.owner].clients.discard(c.client_id)


def _pump_after_subscribe(replayer: Replayer, outcome: bx.Outcome) -> None:
    """A new subscription may unblock a notification that waits for one."""
    client = outcome.client
    if outcome.subscribed and client is not None and client.owner in replayer.sessions:
        replayer.pump(replayer.sessions[client.owner])


async def _wait_held(replayer: Replayer, outcome: bx.Outcome) -> list[bx.Message]:
    """Hold a connect until an event, a disconnect, shutdown or the timeout; then answer."""
    client = outcome.client
    assert client is not None
    conn = replayer.conns.get(client.client_id)
    if conn is not None and not replayer.closing:
        conn.wake.set()  # a previous held connect of this client ends now
        conn.wake = asyncio.Event()
        conn.holding += 1
        try:
            # asyncio.timeout, not wait_for: no extra task per held connect (a hot spot
            # with thousands of desktops).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(replayer.bayeux.timeout_ms / 1000):
                    await conn.wake.wait()
        finally:
            conn.holding -= 1
            conn.last_seen = replayer.now()
    gone = client.client_id not in replayer.bayeux.clients or replayer.closing
    replies = list(outcome.replies)
    replies[outcome.hold_index] = replayer.bayeux.end_held_connect(
        replies[outcome.hold_index], disconnected=gone
    )
    return bx.Bayeux.drain(client) + replies


async def bayeux_handler(request: web.Request) -> web.StreamResponse:
    replayer = request.app[REPLAYER]
    if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
        return await bayeux_websocket(request)
    jsonp = request.query.get("jsonp")
    try:
        if request.method == "GET":
            raw = request.query.get("message")
            if raw is None:
                raise BayeuxError("a GET needs a 'message' parameter (callback-polling)")
            messages = bx.parse_messages(raw.encode())
        else:
            messages = bx.parse_messages(await request.read(), request.content_type)
        owner, new = _owner_for(replayer, request, messages)
        transport = "callback-polling" if jsonp else "long-polling"
        outcome = replayer.bayeux.process(messages, transport=transport, owner=owner)
    except BayeuxError as e:
        return _bayeux_error(e)
    origin = client_origin(request)
    _after(replayer, outcome, origin, None)
    _pump_after_subscribe(replayer, outcome)
    payload = (
        await _wait_held(replayer, outcome) if outcome.hold else outcome.events + outcome.replies
    )
    body = replayer.rewrite(orjson.dumps(payload), origin)
    if jsonp:
        response = web.Response(
            body=f"{jsonp}(".encode() + body + b");", content_type="text/javascript"
        )
    else:
        response = web.Response(body=body, content_type="application/json")
    if new and owner is not None:
        response.set_cookie(SESSION_COOKIE, owner, path="/", httponly=True, samesite="Lax")
    return response


async def bayeux_websocket(request: web.Request) -> web.StreamResponse:
    replayer = request.app[REPLAYER]
    ws = web.WebSocketResponse(autoping=True)
    # A desktop that handshakes over the WebSocket gets its session cookie from the upgrade
    # response (browsers keep it), so its REST requests find the same session.
    reserved = None
    if replayer.by_cookie(request) is None:
        reserved = replayer.new_sid()
        ws.set_cookie(SESSION_COOKIE, reserved, path="/", httponly=True, samesite="Lax")
    await ws.prepare(request)
    replayer.sockets.add(ws)
    origin = client_origin(request)
    out: asyncio.Queue[bytes] = asyncio.Queue()

    async def writer() -> None:
        while True:
            frame = await out.get()
            await ws.send_str(frame.decode())

    async def held(outcome: bx.Outcome) -> None:
        payload = await _wait_held(replayer, outcome)
        out.put_nowait(replayer.rewrite(orjson.dumps(payload), origin))

    writing = asyncio.create_task(writer())
    holding: asyncio.Task[None] | None = None
    mine: set[str] = set()
    try:
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                if frame.type == WSMsgType.BINARY:
                    await ws.close(code=1003, message=b"relay: Bayeux frames are text")
                continue
            try:
                messages = bx.parse_messages(frame.data.encode())
                owner, _ = _owner_for(replayer, request, messages, reserved)
                outcome = replayer.bayeux.process(messages, transport="websocket", owner=owner)
            except BayeuxError as e:
                await ws.close(code=1002, message=f"relay: {e}"[:120].encode())
                break
            _after(replayer, outcome, origin, out)
            if outcome.client is not None:
                mine.add(outcome.client.client_id)
            if outcome.hold:
                if holding is not None and not holding.done():
                    holding.cancel()
                holding = asyncio.create_task(held(outcome))
            else:
                out.put_nowait(
                    replayer.rewrite(orjson.dumps(outcome.events + outcome.replies), origin)
                )
            _pump_after_subscribe(replayer, outcome)
    finally:
        if holding is not None:
            holding.cancel()
        writing.cancel()
        replayer.sockets.discard(ws)
        for cid in mine:
            conn = replayer.conns.get(cid)
            if conn is not None and conn.ws_out is out:
                conn.ws_out = None
    return ws


# --- CORS and the app ------------------------------------------------------------------------


def _preflight(request: web.Request) -> web.Response:
    """CORS preflights are answered outside the timeline."""
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = request.headers.get(
        "Access-Control-Request-Method", "GET, POST, PUT, DELETE, OPTIONS"
    )
    asked = request.headers.get("Access-Control-Request-Headers")
    if asked:
        response.headers["Access-Control-Allow-Headers"] = asked
    response.headers["Access-Control-Max-Age"] = "600"
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: Handler) -> Handler:
    """No input crashes the server: an unexpected error is one console line and a 500.

    A wrapper per handler rather than a middleware: aiohttp's middleware chain costs more on
    every request (measured with scripts/bench.py)."""

    @functools.wraps(handler)
    async def guard(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPException, asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:
            request.app[REPLAYER].log(f"internal error on {request.method} {request.path}: {e!r}")
            return _json_response(500, {"relay": "internal-error", "error": repr(e)})

    return guard


async def allow_origin(request: web.Request, response: web.StreamResponse) -> None:
    """CORS for desktops served from another origin (``on_response_prepare``): the Origin is
    echoed with credentials, and browser code may read the CSRF headers."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
        response.headers.add(hdrs.VARY, "Origin")


ASSETS_DIR = web.AppKey("assets_dir", Path)


def create_app(
    cassette: Cassette,
    options: ReplayOptions | None = None,
    *,
    log: Log | None = None,
    verbose: bool = True,
    assets_dir: Path | None = None,
) -> web.Application:
    """The replay app for a cassette. ``log`` gets errors (no match, a notification given up)
    and, when ``verbose``, one line per served exchange and delivered notification."""
    replayer = Replayer(
        cassette,
        options or ReplayOptions(),
        log or (lambda _: None),
        verbose=verbose and log is not None,
    )
    app = web.Application(client_max_size=64 * 2**20)
    app.on_response_prepare.append(allow_origin)
    app[REPLAYER] = replayer
    if assets_dir is not None:
        app[ASSETS_DIR] = assets_dir
    from relay import control  # control builds on this module: imported late, no cycle

    control.add_routes(app)
    base = replayer.bayeux_path
    for path in (base, base + "/", base + "/{tail:.*}"):
        app.router.add_route("GET", path, guarded(bayeux_handler))
        app.router.add_route("POST", path, guarded(bayeux_handler))
    app.router.add_route("*", "/{tail:.*}", guarded(rest_handler))

    async def on_shutdown(app: web.Application) -> None:
        # Release every held connect and close sockets so that the server stops at once.
        replayer.closing = True
        for session in replayer.sessions.values():
            if session.timer is not None:
                session.timer.cancel()
        for conn in replayer.conns.values():
            conn.wake.set()
        for ws in list(replayer.sockets):
            await ws.close(code=1001, message=b"relay shutting down")

    app.on_shutdown.append(on_shutdown)

    async def sweeper(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(CLIENT_GRACE / 4)
                replayer.sweep()

        task = asyncio.create_task(run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sweeper)
    return app
