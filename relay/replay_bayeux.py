"""The replay server's Bayeux side: long-polling and callback-polling requests, the WebSocket
transport, held connects, and the adapter bookkeeping around ``relay.bayeux``'s answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import orjson
from aiohttp import WSMsgType, hdrs, web

from relay import bayeux as bx
from relay.errors import BayeuxError
from relay.replay_state import (
    REPLAYER,
    SESSION_COOKIE,
    ClientConn,
    Replayer,
    _json_response,
    client_origin,
)

#: A JSONP callback name (``a.b$c_1``): anything else would be script written into the answer.
_JSONP_CALLBACK = re.compile(r"[A-Za-z_$][\w$.]{0,63}", re.ASCII)


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
        back = conn.gone or conn.dropped  # it came back (a network blip): it counts again
        if back:
            conn.gone = False
            conn.held_transport = None
        if ws is not None:
            conn.ws_out = ws
        owning = replayer.sessions.get(client.owner)
        if owning is not None:
            replayer.touch(owning)
            if back:
                replayer.pump(owning)  # what waited for a subscriber may go to it now
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


async def _wait_held(
    replayer: Replayer, outcome: bx.Outcome, request: web.Request | None = None
) -> list[bx.Message] | None:
    """Hold a connect until an event, a disconnect, shutdown or the timeout; then answer.

    None when the long-poll ``request``'s connection closed meanwhile (aiohttp does not cancel
    the handler): the client's queued events stay for its next connect."""
    client = outcome.client
    assert client is not None
    conn = replayer.conns.get(client.client_id)
    # Events may have been queued since ``process`` decided to hold (``_after``'s touch can
    # restart a looping scenario): then the connect is answered at once.
    if conn is not None and not replayer.closing:
        conn.wake.set()  # a previous held connect of this client ends now
        conn.wake = asyncio.Event()
        conn.holding += 1
        conn.held_transport = None if request is None else request.transport
        try:
            # asyncio.timeout, not wait_for: no extra task per held connect (a hot spot
            # with thousands of desktops).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(replayer.bayeux.timeout_ms / 1000):
                    if not client.queue:
                        await conn.wake.wait()
        finally:
            conn.holding -= 1
            if not conn.holding:
                conn.held_transport = None
            conn.last_seen = replayer.now()
    if request is not None and (request.transport is None or request.transport.is_closing()):
        return None
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
    origin = client_origin(request)
    jsonp = request.query.get("jsonp")
    try:
        if jsonp and not _JSONP_CALLBACK.fullmatch(jsonp):
            raise BayeuxError("'jsonp' must be a callback name (letters, digits, _ $ .)")
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
    _after(replayer, outcome, origin, None)
    _pump_after_subscribe(replayer, outcome)
    if outcome.hold:
        payload = await _wait_held(replayer, outcome, request)
        if payload is None:  # the client dropped this long-poll: nobody reads the answer
            return web.Response(status=499)
    else:
        payload = outcome.events + outcome.replies
    body = replayer.rewrite(orjson.dumps(payload), origin)
    if jsonp:
        response = web.Response(
            body=f"{jsonp}(".encode() + body + b");",
            content_type="text/javascript",
            headers={"X-Content-Type-Options": "nosniff"},
        )
    else:
        response = web.Response(body=body, content_type="application/json")
    if new and owner is not None:
        response.set_cookie(SESSION_COOKIE, owner, path="/", httponly=True, samesite="Lax")
    return response


async def bayeux_websocket(request: web.Request) -> web.StreamResponse:
    replayer = request.app[REPLAYER]
    origin = client_origin(request)  # before the upgrade: a bad Host is still a 400
    ws = web.WebSocketResponse(autoping=True)
    # A desktop that handshakes over the WebSocket gets its session cookie from the upgrade
    # response (browsers keep it), so its REST requests find the same session.
    reserved = None
    if replayer.by_cookie(request) is None:
        reserved = replayer.new_sid()
        ws.set_cookie(SESSION_COOKIE, reserved, path="/", httponly=True, samesite="Lax")
    await ws.prepare(request)
    replayer.sockets.add(ws)
    out: asyncio.Queue[bytes] = asyncio.Queue()

    async def writer() -> None:
        while True:
            frame = await out.get()
            await ws.send_str(frame.decode())

    async def held(outcome: bx.Outcome) -> None:
        payload = await _wait_held(replayer, outcome)
        assert payload is not None  # only a long-poll request's connection can be gone
        out.put_nowait(replayer.rewrite(orjson.dumps(payload), origin))

    writing = asyncio.create_task(writer())
    # Held connects (their tasks kept here until done). A newer connect of the same client
    # wakes the older one (``_wait_held``), which then writes its reply, as over HTTP.
    holding: set[asyncio.Task[None]] = set()
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
                _after(replayer, outcome, origin, out)
                if outcome.client is not None:
                    mine.add(outcome.client.client_id)
                if outcome.hold:
                    task = asyncio.create_task(held(outcome))
                    holding.add(task)
                    task.add_done_callback(holding.discard)
                else:
                    out.put_nowait(
                        replayer.rewrite(orjson.dumps(outcome.events + outcome.replies), origin)
                    )
                _pump_after_subscribe(replayer, outcome)
            except BayeuxError as e:
                await ws.close(code=1002, message=f"relay: {e}"[:120].encode())
                break
            except Exception as e:  # the socket is upgraded: no HTTP 500 can be sent on it
                replayer.log(f"internal error on WebSocket {request.path}: {e!r}")
                await ws.close(code=1011, message=b"relay: internal error")
                break
    finally:
        for task in list(holding):
            task.cancel()
        writing.cancel()
        replayer.sockets.discard(ws)
        for cid in mine:
            conn = replayer.conns.get(cid)
            if conn is not None and conn.ws_out is out:
                conn.ws_out = None
    return ws
