"""The presenter's control API and page under ``/_relay/``: never part of the timeline.

    GET  /_relay/                      the control page (HTML, no external resources)
    GET  /_relay/status                sessions, cursors, what is next, what waits, misses
    GET  /_relay/timeline              the sequence view's model of the replayed desktop
                                       (``relay.html.model``: events summarised, in time order)
    GET  /_relay/static/{name}         the shared renderer (timeline.js, timeline.css)
    POST /_relay/release               step mode: release the next group ({"session": sid}
                                       for one session; all sessions without a body);
                                       answers the sessions that had one to release
    POST /_relay/pause                 hold every notification
    POST /_relay/resume                go on at the recorded pace from now
    POST /_relay/speed                 {"speed": 2}
    POST /_relay/sessions/{sid}/reset  start that session's scenario again from the top

Answers are JSON; a bad body or an unknown session is a 400/404 with ``{"error": ...}``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from relay.cassette import Exchange
from relay.html import model as timeline_model
from relay.replay import CONTROL_PREFIX, REPLAYER, Replayer, Session, guarded
from relay.summary import summarize
from relay.timeline import Timeline


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def _waiting_for(t: Timeline) -> str | None:
    """What the next chain event waits for: the desktop, a subscription, the presenter..."""
    nxt = t.next_event
    if nxt is None:
        return None
    if isinstance(nxt, Exchange):
        return "request"
    if t.waiting_for_subscription is not None:
        return "subscription"
    if t.paused:
        return "resume"
    return "presenter" if t.step else "clock"


def session_status(replayer: Replayer, session: Session) -> dict[str, Any]:
    t = session.timeline
    nxt = t.next_event
    waiting = t.waiting_for_subscription
    return {
        "id": session.sid,
        "origin": session.origin,
        "position": t.release_index,
        "length": len(t.chain),
        "next_index": None if nxt is None else replayer.desktop.events.index(nxt),
        "next": None if nxt is None else summarize(nxt, replayer.operations),
        "waiting_for": _waiting_for(t),
        "waiting_for_subscription": None if waiting is None else summarize(waiting),
        "next_group": [n.id for n in t.next_group],
        "released": [e.id for e in t.chain[: t.release_index]],
        "gets_served": list(t.gets_served),
        "served": t.served,
        "misses": t.misses,
        "finished": t.finished,
        "clients": sum(1 for c in session.clients if c in replayer.bayeux.clients),
    }


def status(replayer: Replayer) -> dict[str, Any]:
    """Everything the control page shows, as JSON."""
    return {
        "cassette": replayer.cassette.meta.title,
        "desktop": replayer.desktop.name,
        "speed": replayer.speed,
        "paused": replayer.paused,
        "step": replayer.step,
        "loop": replayer.options.loop,
        "sessions": [session_status(replayer, s) for s in replayer.sessions.values()],
        "unmatched": list(replayer.unmatched)[-50:],
        "unmatched_total": replayer.unmatched_total,
    }


async def _body(request: web.Request) -> dict[str, Any]:
    data = await request.read()
    if not data.strip():
        return {}
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": f"body is not valid JSON ({e})"}).decode(),
            content_type="application/json",
        ) from e
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": "body must be a JSON object"}).decode(),
            content_type="application/json",
        )
    return value


async def status_handler(request: web.Request) -> web.Response:
    return _json(status(request.app[REPLAYER]))


async def timeline_handler(request: web.Request) -> web.Response:
    replayer = request.app[REPLAYER]
    view = timeline_model(replayer.cassette, [replayer.desktop])
    return _json({**view, "desktop": replayer.desktop.name})


async def release_handler(request: web.Request) -> web.Response:
    replayer = request.app[REPLAYER]
    body = await _body(request)
    sid = body.get("session")
    if sid is not None and not isinstance(sid, str):
        return _json({"error": "'session' must be a session id (a string) or null"}, 400)
    if sid is not None and sid not in replayer.sessions:
        return _json({"error": f"no session {sid!r}"}, 404)
    return _json({"released": replayer.release_next(sid)})


async def pause_handler(request: web.Request) -> web.Response:
    request.app[REPLAYER].set_paused(True)
    return _json({"paused": True})


async def resume_handler(request: web.Request) -> web.Response:
    request.app[REPLAYER].set_paused(False)
    return _json({"paused": False})


async def speed_handler(request: web.Request) -> web.Response:
    body = await _body(request)
    speed = body.get("speed")
    if isinstance(speed, bool) or not isinstance(speed, int | float) or speed < 0:
        return _json({"error": "'speed' must be a number >= 0"}, 400)
    request.app[REPLAYER].set_speed(float(speed))
    return _json({"speed": float(speed)})


async def reset_handler(request: web.Request) -> web.Response:
    replayer = request.app[REPLAYER]
    sid = request.match_info["sid"]
    session = replayer.sessions.get(sid)
    if session is None:
        return _json({"error": f"no session {sid!r}"}, 404)
    replayer.reset(session)
    return _json({"reset": sid})


async def page_handler(request: web.Request) -> web.StreamResponse:
    try:
        page = resources.files("relay").joinpath("static/control.html").read_bytes()
    except FileNotFoundError:
        return _json({"error": "the control page is not installed"}, 404)
    return web.Response(body=page, content_type="text/html", charset="utf-8")


#: What ``GET /_relay/static/{name}`` serves: the renderer the control page shares with
#: ``relay show --html`` (which inlines it instead).
STATIC = {"timeline.js": "text/javascript", "timeline.css": "text/css"}


async def static_handler(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        return _json({"error": f"no static file {name!r}"}, 404)
    try:
        data = resources.files("relay").joinpath("static", name).read_bytes()
    except FileNotFoundError:
        return _json({"error": f"{name} is not installed"}, 404)
    return web.Response(body=data, content_type=STATIC[name], charset="utf-8")


def add_routes(app: web.Application) -> None:
    """Mount the control API; call before the replay's catch-all route."""
    p = CONTROL_PREFIX
    app.router.add_get(p, guarded(page_handler))
    app.router.add_get(p + "/", guarded(page_handler))
    app.router.add_get(p + "/status", guarded(status_handler))
    app.router.add_get(p + "/timeline", guarded(timeline_handler))
    app.router.add_get(p + "/static/{name}", guarded(static_handler))
    app.router.add_post(p + "/release", guarded(release_handler))
    app.router.add_post(p + "/pause", guarded(pause_handler))
    app.router.add_post(p + "/resume", guarded(resume_handler))
    app.router.add_post(p + "/speed", guarded(speed_handler))
    app.router.add_post(p + "/sessions/{sid}/reset", guarded(reset_handler))
