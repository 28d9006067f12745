"""The replay server: a cassette's REST API and a Bayeux server on aiohttp.

A thin adapter. The protocol decisions are ``relay.bayeux``'s, the matching and timing
``relay.timeline``'s; this module routes requests to replay sessions, waits (held connects,
timers), writes answers and pushes notifications.

Sessions: each desktop gets a replay session with its own cursor. A request carrying the
``relay_session`` cookie of a live session belongs to it; a handshake with that cookie joins it
(a re-handshake after a 402 or a sleeping laptop keeps the cursor). A request without it goes
to the only live session that can match it (409 when several can), else starts a session and
sets the cookie. Bayeux messages after the handshake find their session by ``clientId``.

The code is in four modules: ``relay.replay_state`` (the shared state: options, sessions, the
``Replayer``), ``relay.replay_rest`` (the REST and asset side), ``relay.replay_bayeux`` (the
Bayeux transports) and this one, which builds the app and routes requests to the others. Their
names stay importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import hdrs, web

from relay.cassette import Cassette
from relay.replay_bayeux import (
    _after,
    _bayeux_error,
    _owner_for,
    _pump_after_subscribe,
    _wait_held,
    bayeux_handler,
    bayeux_websocket,
)
from relay.replay_rest import (
    _SKIP_RESPONSE_HEADERS,
    _asset_miss,
    _asset_response,
    _incoming,
    _no_match,
    _preflight,
    _recorded_response,
    _set_cookie_value,
    build_answer,
    rest_handler,
)
from relay.replay_state import (
    ASSETS_DIR,
    CLIENT_GRACE,
    CONTROL_PREFIX,
    REPLAYER,
    SESSION_COOKIE,
    Answer,
    ClientConn,
    Log,
    Replayer,
    ReplayOptions,
    Session,
    _json_response,
    client_origin,
    session_cookie,
)

__all__ = [
    "ASSETS_DIR",
    "CLIENT_GRACE",
    "CONTROL_PREFIX",
    "REPLAYER",
    "SESSION_COOKIE",
    "_SKIP_RESPONSE_HEADERS",
    "Answer",
    "ClientConn",
    "Handler",
    "Log",
    "ReplayOptions",
    "Replayer",
    "Session",
    "_after",
    "_asset_miss",
    "_asset_response",
    "_bayeux_error",
    "_incoming",
    "_json_response",
    "_no_match",
    "_owner_for",
    "_preflight",
    "_pump_after_subscribe",
    "_recorded_response",
    "_set_cookie_value",
    "_wait_held",
    "allow_origin",
    "bayeux_handler",
    "bayeux_websocket",
    "build_answer",
    "client_origin",
    "create_app",
    "guarded",
    "rest_handler",
    "session_cookie",
]

_EXPOSED = "X-CSRF-HEADER, X-CSRF-TOKEN"


# --- CORS and the app ------------------------------------------------------------------------


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
            if request.writer.output_size > 0:
                # The response has begun (a WebSocket, a stream): another one written now
                # would corrupt it. Drop the connection; aiohttp's write of this empty
                # response then fails quietly.
                if request.transport is not None:
                    request.transport.close()
                return web.StreamResponse()
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
