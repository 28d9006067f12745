"""The replay server's shared state: options, sessions, Bayeux client connections and the
``Replayer`` that holds them, with the small helpers every handler uses.

``relay.replay_rest`` and ``relay.replay_bayeux`` build on this module and ``relay.replay``
wires them into the app; nothing here imports them back.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDict

from relay import bayeux as bx
from relay.cassette import Asset, Cassette, Desktop, Notification
from relay.matching import query_matches
from relay.summary import one_line, operations_of
from relay.timeline import Timeline

SESSION_COOKIE = "relay_session"
CONTROL_PREFIX = "/_relay"
#: Seconds past the long-poll timeout after which a silent Bayeux client is forgotten.
CLIENT_GRACE = 60.0

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
    #: The connection of the long-poll held now (None over WebSocket or between polls).
    held_transport: asyncio.BaseTransport | None = None
    #: It dropped a held long-poll and has not connected since (see Replayer._live_clients).
    gone: bool = False

    @property
    def dropped(self) -> bool:
        """Its held long-poll's connection is closed: the page went away (a reload, a closed
        tab). aiohttp does not cancel the handler, so only the transport says so."""
        t = self.held_transport
        return self.holding > 0 and t is not None and t.is_closing()


@dataclass(slots=True)
class Session:
    sid: str
    timeline: Timeline
    origin: str
    clients: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    last_seen: float = 0.0


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
        """Step mode: release the next group of notifications (of one session, or all); the
        sessions that had one to release (not those waiting for their desktop)."""
        chosen = [self.sessions[sid]] if sid else list(self.sessions.values())
        released = []
        for session in chosen:
            if session.timeline.release_next():
                released.append(session.sid)
                self.pump(session)
        return released

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
        """Forget Bayeux clients that went away without a disconnect (a closed laptop), then
        drop the sessions left idle without clients (``live``).

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
        self.live()

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
        clients = self._live_clients(session)
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

    def _live_clients(self, session: Session) -> list[bx.Client]:
        """The session's clients that can receive: not those whose held long-poll was dropped
        (a reload, a closed tab) and that have not connected again since. Their subscriptions
        must not make a notification due: it would wait in a queue nobody reads while the page
        that replaced them has not subscribed yet. A client that comes back (a network blip,
        the same clientId) counts again from its next connect."""
        live = []
        for cid in session.clients:
            client = self.bayeux.clients.get(cid)
            conn = self.conns.get(cid)
            if client is None or conn is None:
                continue
            if conn.dropped and not conn.gone:
                conn.gone = True
                conn.wake.set()  # its orphaned handler ends now
                self.info(f"session {session.sid}: client {cid[:8]}… dropped its connection")
            if not conn.gone:
                live.append(client)
        return live

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


#: A Host header the origin rewriting may paste into bodies: a name or an IPv4 or bracketed
#: IPv6 address, with an optional port (nothing a JSON string or a script would need escaped).
_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def client_origin(request: web.Request) -> str:
    """The origin the client used; a 400 when its Host is not ``host[:port]``."""
    host = request.host
    if not _HOST.fullmatch(host):
        report = {"relay": "bad-host", "error": f"Host {host!r} is not host[:port]"}
        raise web.HTTPBadRequest(
            text=orjson.dumps(report).decode(), content_type="application/json"
        )
    return f"{request.scheme}://{host}"


REPLAYER = web.AppKey("replayer", Replayer)


def _json_response(status: int, value: Any, **headers: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(value), content_type="application/json", headers=headers
    )


ASSETS_DIR = web.AppKey("assets_dir", Path)
