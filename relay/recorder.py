"""Pure builders for the recorder: what to record from a flow, Bayeux scanning, and the
cassette built from a journal. No mitmproxy, no files, no clock: the addon passes values in.

What is recorded (issue 3):

- ``route()``: a request to the Bayeux path (``/api/v2/notifications``, any sub-path) is
  *Bayeux*: never an exchange, only scanned for notifications and the handshake advice. Any
  other request under ``/api/`` and any non-GET is an *exchange*. Every other GET is an *asset*
  (the desktop's own pages, scripts and images) kept in the content-addressed store. CONNECT
  and OPTIONS (CORS preflights) pass unrecorded.
- ``scan_bayeux()``: events ride on ANY Bayeux response or server-to-client WebSocket frame
  (``shared/reference/bayeux.md``): every non-meta message that carries ``data`` is a
  notification, except publish acknowledgements (they carry ``successful``). Bodies are a JSON
  array, a single object, or JSONP ``cb([...]);`` (callback-polling), with or without a UTF-8
  byte order mark. orjson parses them; when it refuses a body (a lone surrogate ``"\\ud800"``)
  the standard library's parser does, so that one odd value loses no notification. Integers
  beyond 64 bits become floats either way: the journal and the cassette are written by orjson,
  which cannot hold them (a known limitation, never a crash).

Records are made journal-safe by :func:`sanitise` (the journal calls it when orjson refuses a
record): a string holding undecodable bytes (mitmproxy keeps them as lone surrogates, e.g. a
query ``%FF`` or a Latin-1 header) gets them as ``\\xNN`` text (Python's ``backslashreplace``:
valid UTF-8 around them is kept), and an integer orjson cannot write becomes a float.

Journal records (JSON objects, one per line, see ``relay.journal``), ``at`` in epoch seconds:

- ``{"t": "start", "at", "upstream", "relay_version", "desktop", "bayeux_path"}``
- ``{"t": "request", "id": "x1", "at", "request": {...}}`` when the request is sent upstream
- ``{"t": "response", "id", "at", "response": {...}}`` or ``{"t": "error", "id", "at",
  "error"}`` when it is answered or fails
- ``{"t": "notification", "id": "n1", "at", "channel", "message"}``
- ``{"t": "advice", "advice": {...}}`` from a successful handshake reply
- ``{"t": "asset", "path", "query", "status", "headers", "sha256"}``

:func:`cassette_from_records` joins requests with their answers, links notifications to their
causes (``relay.link``), and makes times relative to the first event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson

from relay.cassette import (
    DEFAULT_ADVICE,
    DEFAULT_BAYEUX_PATH,
    Asset,
    BayeuxParams,
    Body,
    Cassette,
    Desktop,
    Event,
    Exchange,
    Meta,
    Notification,
    Pairs,
    Request,
    Response,
)
from relay.link import Linker, Operation

#: Headers that describe the wire encoding of a body, not the body: the cassette stores the
#: decoded body, so these would lie on replay.
WIRE_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})
#: Conditional request headers stripped on the way upstream so that no body-less 304 is
#: recorded (issue 3, "Everything the desktop loads").
CONDITIONAL_HEADERS = ("if-none-match", "if-modified-since")


class Route(Enum):
    BAYEUX = "bayeux"
    EXCHANGE = "exchange"
    ASSET = "asset"
    PASS = "pass"  # forwarded, not recorded


#: Proxy and CORS mechanics, not part of the session: CONNECT (regular proxy mode, HTTPS) and
#: OPTIONS (CORS preflights, which ``relay replay`` answers by itself).
UNRECORDED_METHODS = frozenset({"CONNECT", "OPTIONS"})


def route(method: str, path: str, bayeux_path: str = DEFAULT_BAYEUX_PATH) -> Route:
    """How a request is recorded (see the module docstring)."""
    if method.upper() in UNRECORDED_METHODS:
        return Route.PASS
    base = bayeux_path.rstrip("/")
    bare = path.split("?", 1)[0]
    if bare == base or bare.startswith(base + "/"):
        return Route.BAYEUX
    if bare.startswith("/api/") or method.upper() != "GET":
        return Route.EXCHANGE
    return Route.ASSET


def keep_headers(headers: Iterable[tuple[str, str]]) -> Pairs:
    """Header pairs without the wire-encoding ones."""
    return [(k, v) for k, v in headers if k.lower() not in WIRE_HEADERS]


def build_request(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    content: bytes | None,
) -> Request:
    """A cassette Request from decoded request parts (``path`` without its query)."""
    pairs = keep_headers(headers)
    ctype = _header(pairs, "content-type")
    return Request(
        method=method,
        path=path,
        query=list(query),
        headers=pairs,
        body=Body.from_bytes(content or b"", ctype),
    )


def build_response(
    *, status: int, reason: str, headers: Iterable[tuple[str, str]], content: bytes | None
) -> Response:
    """A cassette Response from decoded response parts."""
    pairs = keep_headers(headers)
    ctype = _header(pairs, "content-type")
    return Response(
        status=status, reason=reason, headers=pairs, body=Body.from_bytes(content or b"", ctype)
    )


def _header(pairs: Pairs, name: str) -> str | None:
    return next((v for k, v in pairs if k.lower() == name), None)


# --- Bayeux scanning ------------------------------------------------------------------------

_JSONP = re.compile(rb"^\s*(?:/\*\*/)?\s*[A-Za-z_$][\w$.]*\s*\((.*)\)\s*;?\s*$", re.DOTALL)


@dataclass(slots=True)
class BayeuxScan:
    """What a Bayeux response body or server frame holds for the recorder."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    advice: dict[str, Any] | None = None


def parse_bayeux(content: bytes) -> list[dict[str, Any]]:
    """The messages of a Bayeux body (array, object or JSONP); ``[]`` when it is none of these."""
    data = content.removeprefix(b"\xef\xbb\xbf")
    m = _JSONP.match(data)
    if m is not None and not data.lstrip().startswith((b"[", b"{")):
        data = m.group(1)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:  # orjson refuses lone surrogates ("\ud800"); the standard library keeps them
            value = json.loads(data, parse_int=_int)
        except ValueError:  # UnicodeDecodeError and json.JSONDecodeError alike
            return []
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def _int(text: str) -> int | float:
    """Like orjson: an integer beyond 64 bits becomes a float."""
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(value)


_OTHER_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def sanitise(value: Any) -> Any:
    """A copy of a record that orjson can write (see the module docstring); pure."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # \udc80-\udcff: an undecodable byte (surrogateescape); any other: as \uXXXX text
            text = _OTHER_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return value
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else float(value)
    if isinstance(value, dict):
        return {sanitise(k): sanitise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitise(v) for v in value]
    return value


def scan_bayeux(content: bytes) -> BayeuxScan:
    """Notifications and handshake advice in a server-to-client Bayeux body or frame."""
    scan = BayeuxScan()
    for msg in parse_bayeux(content):
        channel = msg.get("channel")
        if not isinstance(channel, str):
            continue
        if channel == "/meta/handshake":
            advice = msg.get("advice")
            if msg.get("successful") is True and isinstance(advice, dict):
                scan.advice = advice
        elif not channel.startswith("/meta/") and "data" in msg and "successful" not in msg:
            scan.notifications.append(msg)
    return scan


# --- journal records ------------------------------------------------------------------------


def start_record(
    *,
    at: float,
    upstream: str,
    relay_version: str,
    desktop: str,
    bayeux_path: str,
    title: str = "",
    notes: str = "",
) -> dict[str, Any]:
    return {
        "t": "start",
        "at": at,
        "upstream": upstream,
        "relay_version": relay_version,
        "desktop": desktop,
        "bayeux_path": bayeux_path,
        "title": title,
        "notes": notes,
    }


def request_record(exchange_id: str, at: float, request: Request) -> dict[str, Any]:
    return {"t": "request", "id": exchange_id, "at": at, "request": _request_out(request)}


def response_record(exchange_id: str, at: float, response: Response) -> dict[str, Any]:
    return {"t": "response", "id": exchange_id, "at": at, "response": _response_out(response)}


def error_record(exchange_id: str, at: float, error: str) -> dict[str, Any]:
    return {"t": "error", "id": exchange_id, "at": at, "error": error}


def notification_record(notification_id: str, at: float, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "t": "notification",
        "id": notification_id,
        "at": at,
        "channel": message["channel"],
        "message": message,
    }


def advice_record(advice: dict[str, Any]) -> dict[str, Any]:
    return {"t": "advice", "advice": advice}


def asset_record(asset: Asset) -> dict[str, Any]:
    return {
        "t": "asset",
        "path": asset.path,
        "query": [list(p) for p in asset.query],
        "status": asset.status,
        "headers": [list(p) for p in asset.headers],
        "sha256": asset.sha256,
    }


def _body_out(body: Body | None) -> Any:
    return None if body is None else body.to_dict()


def _body_in(raw: Any) -> Body | None:
    return Body.from_dict(raw, "journal body")


def _request_out(r: Request) -> dict[str, Any]:
    return {
        "method": r.method,
        "path": r.path,
        "query": [list(p) for p in r.query],
        "headers": [list(p) for p in r.headers],
        "body": _body_out(r.body),
    }


def _response_out(r: Response) -> dict[str, Any]:
    return {
        "status": r.status,
        "reason": r.reason,
        "headers": [list(p) for p in r.headers],
        "body": _body_out(r.body),
    }


def _pairs(raw: Any) -> Pairs:
    return [(str(k), str(v)) for k, v in raw or []]


def _request_in(raw: dict[str, Any]) -> Request:
    return Request(
        method=raw["method"],
        path=raw["path"],
        query=_pairs(raw.get("query")),
        headers=_pairs(raw.get("headers")),
        body=_body_in(raw.get("body")),
    )


def _response_in(raw: dict[str, Any]) -> Response:
    return Response(
        status=int(raw["status"]),
        reason=raw.get("reason") or "",
        headers=_pairs(raw.get("headers")),
        body=_body_in(raw.get("body")),
    )


# --- journal -> cassette --------------------------------------------------------------------

#: What an exchange whose answer never made it into the journal says (killed mid-request).
UNANSWERED = "no answer recorded (the recording stopped first)"


def _ms(at: float, t0: float) -> int:
    return max(0, round((at - t0) * 1000))


def cassette_from_records(records: Iterable[dict[str, Any]]) -> Cassette:
    """Build the cassette from journal records (in the order they were written)."""
    meta = Meta()
    desktop = Desktop(name="agent", bayeux=BayeuxParams(DEFAULT_BAYEUX_PATH, dict(DEFAULT_ADVICE)))
    linker = Linker()
    requests: dict[str, tuple[int, float, Request]] = {}
    answers: dict[str, tuple[float, Response | None, str | None]] = {}
    notifications: list[tuple[int, str, float, str, dict[str, Any]]] = []
    assets: dict[tuple[str, tuple[tuple[str, str], ...]], Asset] = {}
    advice_seen = False
    t0: float | None = None
    for seq, rec in enumerate(records):
        kind = rec.get("t")
        at = rec.get("at")
        if isinstance(at, int | float) and kind != "start":
            t0 = at if t0 is None else min(t0, at)
        if kind == "start":
            meta.upstream = str(rec.get("upstream") or "")
            meta.relay_version = str(rec.get("relay_version") or "")
            meta.recorded_at = _iso(float(rec["at"]))
            meta.title = str(rec.get("title") or "")
            meta.notes = str(rec.get("notes") or "")
            desktop.name = str(rec.get("desktop") or "agent")
            desktop.bayeux.path = str(rec.get("bayeux_path") or DEFAULT_BAYEUX_PATH)
        elif kind == "request":
            request = _request_in(rec["request"])
            requests[rec["id"]] = (seq, float(rec["at"]), request)
            linker.request(Operation(rec["id"], request.method, request.path, request.json))
        elif kind == "response":
            response = _response_in(rec["response"])
            answers[rec["id"]] = (float(rec["at"]), response, None)
            body = response.body
            linker.response(rec["id"], body.value if body and body.kind == "json" else None)
        elif kind == "error":
            answers[rec["id"]] = (float(rec["at"]), None, str(rec["error"]))
        elif kind == "notification":
            message = rec["message"]
            notifications.append((seq, rec["id"], float(rec["at"]), rec["channel"], message))
            linker.notification(rec["id"], message)
        elif kind == "advice" and not advice_seen:
            desktop.bayeux.advice = dict(rec["advice"])
            advice_seen = True
        elif kind == "asset":
            asset = Asset(
                path=rec["path"],
                sha256=rec["sha256"],
                status=int(rec.get("status") or 200),
                query=_pairs(rec.get("query")),
                headers=_pairs(rec.get("headers")),
            )
            assets[(asset.path, tuple(asset.query))] = asset
    base = t0 if t0 is not None else 0.0
    causes = linker.causes()
    events: list[tuple[int, int, Event]] = []
    for xid, (seq, at, request) in requests.items():
        answered_at, answer, error = answers.get(xid, (None, None, UNANSWERED))
        exchange = Exchange(
            id=xid,
            at_ms=_ms(at, base),
            request=request,
            response=answer,
            response_ms=None if answered_at is None else _ms(answered_at, base),
            error=error,
        )
        events.append((exchange.at_ms, seq, exchange))
    for seq, nid, at, channel, message in notifications:
        note = Notification(nid, _ms(at, base), channel, message, causes.get(nid))
        events.append((note.at_ms, seq, note))
    events.sort(key=lambda e: (e[0], e[1]))  # journal order breaks ties
    desktop.events = [e for _, _, e in events]
    return Cassette(meta=meta, desktops=[desktop], assets=list(assets.values()))


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
