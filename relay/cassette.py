"""The cassette: what relay records and replays, and its file format (version 1).

A cassette is one JSON file, written deterministically (sorted keys, 2-space indent, trailing
newline, atomically) so that it reads well in a git diff::

    {
      "version": 1,
      "meta": {"title": ..., "recorded_at": ..., "upstream": "http://gws:8080",
               "relay_version": ..., "notes": ...},
      "desktops": [
        {"name": "agent",
         "bayeux": {"path": "/api/v2/notifications",
                    "advice": {"interval": 0, "reconnect": "retry", "timeout": 60000}},
         "events": [ <exchange or notification>, ... ]}
      ],
      "assets": [ <asset>, ... ]
    }

Events are ordered by ``at_ms``, the milliseconds since the recording started (one clock for
the whole cassette, so that several desktops of one scenario share it). Event ids are unique in
the whole cassette: a notification of one desktop may be caused by another desktop's exchange.

- exchange: ``{"type": "exchange", "id": "x1", "at_ms": .., "response_ms": .., "request": {
  "method", "path", "query": [[k, v], ..], "headers": [[k, v], ..], "body"}, "response": {
  "status", "reason", "headers", "body"} | null, "error": null | "why it failed"}``
- notification: ``{"type": "notification", "id": "n1", "at_ms": .., "channel": "/v2/me/calls",
  "message": <the Bayeux message as received>, "cause": "x1" | null}``
- body: ``null`` (empty), ``{"json": value}``, ``{"text": "..."}`` or ``{"base64": "..."}``.
- asset (a GET outside the API, served in any order any number of times):
  ``{"path", "query", "status", "headers", "sha256"}``; the content lives in the
  content-addressed store ``<cassette stem>.assets/<sha256>`` beside the cassette.

Older formats are upgraded on load by a chain of small functions (``MIGRATIONS``); a newer or
unknown version fails loudly.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gc
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from relay.errors import CassetteError

CASSETTE_VERSION = 1
DEFAULT_BAYEUX_PATH = "/api/v2/notifications"
DEFAULT_ADVICE: dict[str, Any] = {"interval": 0, "reconnect": "retry", "timeout": 60000}

Pairs = list[tuple[str, str]]
JSON = Any


# --- bodies ---------------------------------------------------------------------------------

_TEXTUAL = ("text/", "javascript", "xml", "html", "x-www-form-urlencoded", "css", "svg")


@dataclass(frozen=True, slots=True)
class Body:
    """A message body: JSON stored as JSON, text as text, anything else as base64."""

    kind: str  # "json" | "text" | "base64"
    value: JSON

    @classmethod
    def from_bytes(cls, data: bytes, content_type: str | None = None) -> Body | None:
        """Classify raw bytes for storage; ``None`` for an empty body."""
        if not data:
            return None
        ctype = (content_type or "").lower()
        jsonish = "json" in ctype or (not ctype and data.lstrip()[:1] in (b"{", b"["))
        if jsonish:
            try:
                return cls("json", orjson.loads(data))
            except orjson.JSONDecodeError:
                pass
        if not ctype or jsonish or any(t in ctype for t in _TEXTUAL):
            try:
                return cls("text", data.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        return cls("base64", base64.b64encode(data).decode("ascii"))

    @classmethod
    def json(cls, value: JSON) -> Body:
        return cls("json", value)

    def to_bytes(self) -> bytes:
        """The bytes to send on the wire."""
        if self.kind == "json":
            return orjson.dumps(self.value)
        if self.kind == "text":
            return str(self.value).encode("utf-8")
        return base64.b64decode(self.value)

    def to_dict(self) -> dict[str, JSON]:
        return {self.kind: self.value}

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Body | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or len(raw) != 1:
            raise _bad(where, 'expected null or one of {"json": ..}, {"text": ..}, {"base64": ..}')
        ((kind, value),) = raw.items()
        if kind == "json":
            return cls(kind, value)
        if kind in ("text", "base64") and isinstance(value, str):
            if kind == "base64":
                try:
                    base64.b64decode(value, validate=True)
                except binascii.Error as e:
                    raise _bad(where, f"invalid base64 ({e})") from e
            return cls(kind, value)
        raise _bad(where, f"unknown body kind {kind!r} or value not a string")


# --- the model ------------------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: Pairs = field(default_factory=list)
    headers: Pairs = field(default_factory=list)
    body: Body | None = None

    @property
    def json(self) -> JSON:
        """The body's JSON value, or ``None`` when the body is not JSON."""
        return self.body.value if self.body is not None and self.body.kind == "json" else None

    @property
    def operation_name(self) -> str | None:
        value = self.json
        if isinstance(value, dict) and isinstance(value.get("operationName"), str):
            return str(value["operationName"])
        return None

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(slots=True)
class Response:
    status: int
    reason: str = ""
    headers: Pairs = field(default_factory=list)
    body: Body | None = None

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(slots=True)
class Exchange:
    """A REST request and its answer (``response`` is ``None`` when the upstream failed)."""

    id: str
    at_ms: int
    request: Request
    response: Response | None
    response_ms: int | None = None
    error: str | None = None


@dataclass(slots=True)
class Notification:
    """A Bayeux message the server pushed, and the exchange that caused it (if any)."""

    id: str
    at_ms: int
    channel: str
    message: dict[str, JSON]
    cause: str | None = None

    @property
    def data(self) -> JSON:
        return self.message.get("data")


Event = Exchange | Notification


@dataclass(slots=True)
class BayeuxParams:
    """What the recorded server advertised at handshake."""

    path: str = DEFAULT_BAYEUX_PATH
    advice: dict[str, JSON] = field(default_factory=lambda: dict(DEFAULT_ADVICE))

    @property
    def timeout_ms(self) -> int:
        value = self.advice.get("timeout", DEFAULT_ADVICE["timeout"])
        return int(value) if isinstance(value, int | float) else int(DEFAULT_ADVICE["timeout"])


@dataclass(slots=True)
class Desktop:
    """One desktop's session in the recording: its own timeline."""

    name: str
    events: list[Event] = field(default_factory=list)
    bayeux: BayeuxParams = field(default_factory=BayeuxParams)

    def exchanges(self) -> Iterator[Exchange]:
        return (e for e in self.events if isinstance(e, Exchange))

    def notifications(self) -> Iterator[Notification]:
        return (e for e in self.events if isinstance(e, Notification))


@dataclass(slots=True)
class Asset:
    """A GET outside the API (the desktop's pages, scripts, images), content-addressed."""

    path: str
    sha256: str
    status: int = 200
    query: Pairs = field(default_factory=list)
    headers: Pairs = field(default_factory=list)


@dataclass(slots=True)
class Meta:
    title: str = ""
    recorded_at: str = ""
    upstream: str = ""
    relay_version: str = ""
    notes: str = ""
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(slots=True)
class Cassette:
    meta: Meta = field(default_factory=Meta)
    desktops: list[Desktop] = field(default_factory=list)
    assets: list[Asset] = field(default_factory=list)

    def events(self) -> Iterator[Event]:
        """Every event of every desktop, in time order (stable across desktops)."""
        merged = [e for d in self.desktops for e in d.events]
        return iter(sorted(merged, key=lambda e: e.at_ms))

    def find(self, event_id: str) -> Event | None:
        for desktop in self.desktops:
            for event in desktop.events:
                if event.id == event_id:
                    return event
        return None

    def desktop(self, name: str | None = None) -> Desktop:
        """The desktop called ``name``, or the first one."""
        if not self.desktops:
            raise CassetteError("the cassette has no desktop session")
        if name is None:
            return self.desktops[0]
        for d in self.desktops:
            if d.name == name:
                return d
        names = ", ".join(d.name for d in self.desktops)
        raise CassetteError(f"no desktop called {name!r} (the cassette has: {names})")


def _header(headers: Pairs, name: str) -> str | None:
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


# --- to and from JSON -----------------------------------------------------------------------


def to_dict(cassette: Cassette) -> dict[str, JSON]:
    """The cassette as the JSON value written to disk (current version)."""
    meta = cassette.meta
    return {
        "version": CASSETTE_VERSION,
        "meta": {
            "title": meta.title,
            "recorded_at": meta.recorded_at,
            "upstream": meta.upstream,
            "relay_version": meta.relay_version,
            "notes": meta.notes,
            **meta.extra,
        },
        "desktops": [
            {
                "name": d.name,
                "bayeux": {"path": d.bayeux.path, "advice": d.bayeux.advice},
                "events": [_event_to_dict(e) for e in d.events],
            }
            for d in cassette.desktops
        ],
        "assets": [
            {
                "path": a.path,
                "query": _pairs_out(a.query),
                "status": a.status,
                "headers": _pairs_out(a.headers),
                "sha256": a.sha256,
            }
            for a in cassette.assets
        ],
    }


def _pairs_out(pairs: Pairs) -> list[list[str]]:
    return [[k, v] for k, v in pairs]


def _body_out(body: Body | None) -> dict[str, JSON] | None:
    return body.to_dict() if body is not None else None


def _event_to_dict(event: Event) -> dict[str, JSON]:
    if isinstance(event, Notification):
        return {
            "type": "notification",
            "id": event.id,
            "at_ms": event.at_ms,
            "channel": event.channel,
            "message": event.message,
            "cause": event.cause,
        }
    req, resp = event.request, event.response
    return {
        "type": "exchange",
        "id": event.id,
        "at_ms": event.at_ms,
        "response_ms": event.response_ms,
        "request": {
            "method": req.method,
            "path": req.path,
            "query": _pairs_out(req.query),
            "headers": _pairs_out(req.headers),
            "body": _body_out(req.body),
        },
        "response": None
        if resp is None
        else {
            "status": resp.status,
            "reason": resp.reason,
            "headers": _pairs_out(resp.headers),
            "body": _body_out(resp.body),
        },
        "error": event.error,
    }


def _bad(where: str, problem: str) -> CassetteError:
    return CassetteError(f"{where}: {problem}")


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if type(value) is kind:  # the usual case, checked first (loading is mostly this)
        return value
    if key not in obj:
        raise _bad(where, f"missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _bad(f"{where}.{key}", f"expected {names}, got {type(value).__name__}")
    return value


def _opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if obj.get(key) is None:
        return None
    return _get(obj, key, kind, where)


def _pairs_in(raw: Any, where: str) -> Pairs:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad(where, "expected a list of [name, value] pairs")
    out: Pairs = []
    for i, pair in enumerate(raw):
        if type(pair) is list and len(pair) == 2:
            name, value = pair
            if type(name) is str and type(value) is str:
                out.append((name, value))
                continue
        raise _bad(f"{where}[{i}]", "expected a [name, value] pair of strings")
    return out


def _event_from_dict(raw: Any, where: str) -> Event:
    if not isinstance(raw, dict):
        raise _bad(where, "expected an object")
    kind = _get(raw, "type", str, where)
    event_id = _get(raw, "id", str, where)
    at_ms = _get(raw, "at_ms", int, where)
    if kind == "notification":
        channel = _get(raw, "channel", str, where)
        message = _get(raw, "message", dict, where)
        if message.get("channel", channel) != channel:
            raise _bad(f"{where}.message.channel", f"differs from the event's channel {channel!r}")
        return Notification(
            id=event_id,
            at_ms=at_ms,
            channel=channel,
            message=message,
            cause=_opt(raw, "cause", str, where),
        )
    if kind == "exchange":
        rq = _get(raw, "request", dict, where)
        w = f"{where}.request"
        request = Request(
            method=_get(rq, "method", str, w),
            path=_get(rq, "path", str, w),
            query=_pairs_in(rq.get("query"), f"{w}.query"),
            headers=_pairs_in(rq.get("headers"), f"{w}.headers"),
            body=Body.from_dict(rq.get("body"), f"{w}.body"),
        )
        response = None
        rs = _opt(raw, "response", dict, where)
        if rs is not None:
            w = f"{where}.response"
            response = Response(
                status=_get(rs, "status", int, w),
                reason=_opt(rs, "reason", str, w) or "",
                headers=_pairs_in(rs.get("headers"), f"{w}.headers"),
                body=Body.from_dict(rs.get("body"), f"{w}.body"),
            )
        error = _opt(raw, "error", str, where)
        if response is None and error is None:
            raise _bad(where, "an exchange needs a response or an error")
        return Exchange(
            id=event_id,
            at_ms=at_ms,
            request=request,
            response=response,
            response_ms=_opt(raw, "response_ms", int, where),
            error=error,
        )
    raise _bad(f"{where}.type", f"unknown event type {kind!r} (expected exchange or notification)")


_META_KEYS = ("title", "recorded_at", "upstream", "relay_version", "notes")


def from_dict(raw: Any) -> Cassette:
    """Build a cassette from its JSON value, upgrading old versions; raises CassetteError."""
    raw = upgrade(raw)
    meta_raw = _opt(raw, "meta", dict, "cassette") or {}
    for key in _META_KEYS:
        _opt(meta_raw, key, str, "meta")
    meta = Meta(
        **{k: meta_raw.get(k) or "" for k in _META_KEYS},
        extra={k: v for k, v in meta_raw.items() if k not in _META_KEYS},
    )
    desktops: list[Desktop] = []
    seen: set[str] = set()
    for i, d in enumerate(_get(raw, "desktops", list, "cassette")):
        where = f"desktops[{i}]"
        if not isinstance(d, dict):
            raise _bad(where, "expected an object")
        bx = _opt(d, "bayeux", dict, where) or {}
        advice = _opt(bx, "advice", dict, f"{where}.bayeux")
        bayeux = BayeuxParams(
            path=_opt(bx, "path", str, f"{where}.bayeux") or DEFAULT_BAYEUX_PATH,
            advice=advice if advice is not None else dict(DEFAULT_ADVICE),
        )
        events = [
            _event_from_dict(e, f"{where}.events[{j}]")
            for j, e in enumerate(_get(d, "events", list, where))
        ]
        for j, e in enumerate(events):
            if e.id in seen:
                raise _bad(f"{where}.events[{j}].id", f"duplicate event id {e.id!r}")
            seen.add(e.id)
            if j and e.at_ms < events[j - 1].at_ms:
                raise _bad(f"{where}.events[{j}].at_ms", "events are not in time order")
        desktops.append(Desktop(name=_get(d, "name", str, where), events=events, bayeux=bayeux))
    exchange_ids = {e.id for d in desktops for e in d.exchanges()}
    for i, d in enumerate(desktops):
        for j, e in enumerate(d.events):
            if isinstance(e, Notification) and e.cause is not None and e.cause not in exchange_ids:
                where = f"desktops[{i}].events[{j}].cause"
                raise _bad(where, f"{e.cause!r} is not the id of an exchange")
    assets = []
    for i, a in enumerate(_opt(raw, "assets", list, "cassette") or []):
        where = f"assets[{i}]"
        if not isinstance(a, dict):
            raise _bad(where, "expected an object")
        assets.append(
            Asset(
                path=_get(a, "path", str, where),
                sha256=_get(a, "sha256", str, where),
                status=_opt(a, "status", int, where) or 200,
                query=_pairs_in(a.get("query"), f"{where}.query"),
                headers=_pairs_in(a.get("headers"), f"{where}.headers"),
            )
        )
    return Cassette(meta=meta, desktops=desktops, assets=assets)


# --- format migrations ----------------------------------------------------------------------

#: MIGRATIONS[n] turns a version-n cassette into a version n+1 one. Each is small and pure.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upgrade(raw: Any) -> dict[str, Any]:
    """Bring a cassette's JSON value to the current version, or fail clearly."""
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise CassetteError(f"not a cassette: the top level is a {kind}, not an object")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CassetteError("not a cassette: no integer 'version' field")
    if version > CASSETTE_VERSION:
        raise CassetteError(
            f"cassette version {version} is newer than this relay understands "
            f"(up to {CASSETTE_VERSION}); upgrade relay"
        )
    while version < CASSETTE_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise CassetteError(f"unknown cassette version {version}")
        raw = step(raw)
        version = raw["version"]
    result: dict[str, Any] = raw
    return result


# --- files ----------------------------------------------------------------------------------


def dumps(cassette: Cassette) -> bytes:
    """The file's bytes: sorted keys, 2-space indent, trailing newline."""
    options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    return orjson.dumps(to_dict(cassette), option=options) + b"\n"


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Loading or comparing a cassette allocates hundreds of thousands of dicts, lists and events;
    each few hundred allocations the collector would rescan all of them (a third of the time
    of loading a 10,000-event cassette, 40 % of diffing two). Nothing built here is cyclic, so
    nothing is left for the collector; its previous state is restored on the way out."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def loads(data: bytes, *, path: str | None = None) -> Cassette:
    with collector_paused():
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise CassetteError(f"not valid JSON ({e})", path=path) from e
        try:
            return from_dict(raw)
        except CassetteError as e:
            if path is None:
                raise
            raise CassetteError(str(e), path=path) from e


def load(path: str | os.PathLike[str]) -> Cassette:
    """Read a cassette file; every problem is a CassetteError naming the file."""
    p = os.fspath(path)
    try:
        data = Path(p).read_bytes()
    except OSError as e:
        raise CassetteError(f"cannot read ({e.strerror or e})", path=p) from e
    return loads(data, path=p)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a part."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        keep_mode = None
    fd, tmp = _create_beside(target)
    try:
        with os.fdopen(fd, "wb") as f:
            if keep_mode is not None:
                os.chmod(tmp, keep_mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_beside(target: Path) -> tuple[int, str]:
    """A new, empty temporary file beside ``target``, created with the mode ``open()`` gives.

    Not ``tempfile.mkstemp``: its files are 0600, which would leave every cassette readable by
    its writer only.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), os.fspath(tmp)  # less the umask
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {target}")


def save(cassette: Cassette, path: str | os.PathLike[str]) -> None:
    """Write a cassette file atomically."""
    try:
        write_atomic(path, dumps(cassette))
    except OSError as e:
        raise CassetteError(f"cannot write ({e.strerror or e})", path=os.fspath(path)) from e


def assets_dir(cassette_path: str | os.PathLike[str]) -> Path:
    """The content-addressed asset store beside a cassette: ``NAME.assets/``."""
    p = Path(cassette_path)
    return p.with_name(p.stem + ".assets")
