"""The replay server's REST side: recorded responses made ready for the client's origin, the
no-match reports, recorded assets, and the handler of every path outside Bayeux and control.
"""

from __future__ import annotations

import asyncio
import difflib
from typing import Any

import orjson
from aiohttp import hdrs, web

from relay.cassette import Asset, Body, Exchange, Request
from relay.matching import describe_request, explain
from relay.redact import PLACEHOLDER_RE
from relay.replay_state import (
    ASSETS_DIR,
    REPLAYER,
    SESSION_COOKIE,
    Answer,
    Replayer,
    Session,
    _json_response,
    client_origin,
)
from relay.timeline import Served

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


async def _incoming(request: web.Request) -> Request:
    data = await request.read() if request.body_exists else b""
    # The header as sent, None when absent (``request.content_type`` would say
    # application/octet-stream): a JSON body without one is sniffed, as the recorder does.
    return Request(
        method=request.method,
        path=request.path,
        query=list(request.query.items()),
        body=Body.from_bytes(data, request.headers.get(hdrs.CONTENT_TYPE) if data else None),
    )


def _set_cookie_value(value: str) -> str:
    # A redacted cookie value is not a valid cookie-octet string: give the desktop a token.
    return PLACEHOLDER_RE.sub(lambda m: f"relay-redacted-{m.group(1)}-{m.group(2)}", value)


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
        # The session for which this request is the next step takes it; only when there is
        # none, one that would answer it again (a repeat, a GET).
        peeked = [(s, s.timeline.peek(incoming)) for s in replayer.live()]
        able = [s for s, p in peeked if p.kind == "hit"] or [s for s, p in peeked if p.ok]
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
