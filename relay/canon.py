"""Canonical JSON: two recordings of one scenario made comparable.

Two recordings never agree on call ids, connIds, device ids, clientIds, durations or timestamps,
nor, when recorded in another lab, on phone numbers (see ``shared/reference/gws.md``, "Calls").
``canonicalise`` rewrites the documents of one cassette so that only what a desktop depends on
is left to compare:

- identifier-like values are renamed by order of first appearance, one renaming table per
  cassette shared by every document (REST paths, bodies, notifications), so that ``id``,
  ``callUuid``, ``uri``, ``path``, ``parentCallUri`` and the REST path of one call all become the
  same ``<call-N>``. Documents are walked in order and each object in sorted-key order, so the
  numbering does not depend on how a server ordered its keys. A notification now about another
  call still shows (``<call-1>`` became ``<call-2>``); raw values do not.
- A value that is only ever referred to (under a key starting with ``parent`` or ``previous``:
  ``parentCallUri``, ``parentCallPath``, ``parentConnId``, ...) and never appears as the thing
  itself is a dangling reference, such as Sample 1's ``parentCallPath`` that names a call
  appearing nowhere else: it becomes ``<KIND-?>`` and takes no number, so it cannot shift the
  numbering of the others.
- A string under any other key (``userData``, ``extensions``) that equals one of those
  identifiers (of 8+ characters, any case), or contains one (``"call 051DJ.. transferred"``,
  ``"051DJ.._rec"``), gets the same name in its place: a call id copied into attached data is
  renamed with the call. Keys ending in ``ConnId`` are conn ids (``otherConnId`` only refers);
  other camelCase keys ending in ``Id`` (``recordingId``) are ids when their value looks like one.
- URIs and paths keep their shape; the origin becomes ``<origin>`` and the id parts are renamed
  (``http://host:8080/api/v2/me/calls/X`` -> ``<origin>/api/v2/me/calls/<call-1>``).
- ``duration`` and timestamp fields (``DROPPED_KEYS``, keys ending in ``Timestamp``, ``Date``,
  ``DateTime`` or ``At``, camelCase keys ending in ``Time`` or ``Duration`` such as
  ``startedTime`` and ``holdDuration``; not ``WrapUpTime``, an agent setting) are dropped; any
  other string that reads as an ISO 8601 date-time, a date alone or an RFC 1123 date becomes
  ``<time>``.
- Phone numbers (``NUMBER_KEYS``, including a request's ``destination`` and the number strings
  of older 8.5 ``participants``) become ``<number>``, or,
  with ``keep_numbers``, are renamed like ids (``<number-N>``).

Everything here is pure: values in, new values out; the input is never modified.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

JSON = Any

#: Keys whose scalar value is an identifier of a known kind.
ID_KEY_KINDS: Mapping[str, str] = {
    "callUuid": "call",
    "callId": "call",
    "parentCallId": "call",
    "connId": "conn",
    "parentConnId": "conn",
    "previousConnId": "conn",
    "deviceId": "device",
    "clientId": "client",
    "referenceId": "ref",
    "userId": "user",
    "sessionId": "session",
}

#: ``id`` takes its kind from the object (or list) it sits in; elsewhere it is a plain ``id``.
ID_PARENT_KINDS: Mapping[str, str] = {
    "call": "call",
    "calls": "call",
    "consultCall": "call",
    "parentCall": "call",
    "device": "device",
    "devices": "device",
    "user": "user",
    "users": "user",
    "chat": "chat",
    "chats": "chat",
    "email": "email",
    "emails": "email",
    "workitem": "workitem",
    "workitems": "workitem",
    "interaction": "interaction",
    "interactions": "interaction",
}

#: In a URI or path, the segment after one of these is an identifier of that kind.
COLLECTION_KINDS: Mapping[str, str] = {
    "calls": "call",
    "devices": "device",
    "users": "user",
    "chats": "chat",
    "emails": "email",
    "workitems": "workitem",
    "interactions": "interaction",
    "contacts": "contact",
}

#: Keys whose string value is a URI or a path (``uri``, ``path``, ``deviceUri``,
#: ``parentCallUri``, ``parentCallPath``, ...): see ``is_uri_key``.
URI_KEYS = frozenset({"uri", "path", "url", "href"})
_URI_SUFFIXES = ("Uri", "Path", "Url")

#: Keys holding a phone number; ``destination`` counts only when it is a scalar (GWS also sends
#: ``"destination": {"phoneNumber": ..}``, whose inner key is then the number).
NUMBER_KEYS = frozenset(
    {
        "phoneNumber",
        "formattedPhoneNumber",
        "e164Number",
        "dnis",
        "ani",
        "digits",
        "otherDN",
        "destination",
        "number",
        "participants",  # older 8.5 builds: a list of number strings (objects are walked)
    }
)

#: Keys dropped from every document: durations and timestamps always differ (``ts``: a
#: request's cache-busting clock reading).
DROPPED_KEYS = frozenset(
    {"duration", "timestamp", "time", "date", "startTime", "endTime", "creationTime", "ts"}
)
_DROPPED_SUFFIXES = ("Timestamp", "Date", "DateTime")
#: Dropped too when the key is camelCase (``startedTime``, ``holdDuration``). A capitalised key
#: (``WrapUpTime`` in ``extensions`` or user data) is an agent setting, not a clock reading, and
#: is kept.
_CAMEL_DROPPED_SUFFIXES = ("Time", "Duration")

NUMBER_PLACEHOLDER = "<number>"
TIME_PLACEHOLDER = "<time>"
ORIGIN_PLACEHOLDER = "<origin>"

_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_ISO_TIME = re.compile(
    r"^(?:\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}|$)"  # ISO 8601 date-time, or a date alone
    r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2})"  # RFC 1123
)
_DIGIT = re.compile(r"\d")
#: Runs of a string that could be an id inside it (``call 051DJ... transferred``, ``051DJ..._rec``).
_ID_RUN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_ID_SEGMENT = re.compile(r"^(?=.*\d)[A-Za-z0-9_.~-]{8,}$")
_AT_SUFFIX = re.compile(r"[a-z]At$")

#: Keys that refer to another object rather than name their own (see the module docstring).
REFERENCE_PREFIXES = ("parent", "previous", "other")


def is_uri_key(key: str) -> bool:
    """Whether a key's string value is read as a URI or path whose id parts are renamed."""
    return key in URI_KEYS or key.endswith(_URI_SUFFIXES)


def is_dropped_key(key: str) -> bool:
    """Whether a key is a duration or timestamp, dropped before any comparison."""
    return (
        key in DROPPED_KEYS
        or key.endswith(_DROPPED_SUFFIXES)
        or bool(_AT_SUFFIX.search(key))
        or (key[:1].islower() and key.endswith(_CAMEL_DROPPED_SUFFIXES))
    )


def looks_like_id(segment: str) -> bool:
    """A path segment that names something: a UUID, or 8+ id characters including a digit."""
    return bool(_UUID.match(segment) or _ID_SEGMENT.match(segment))


# What a key's scalar value is (decided once per key name, see ``_rule``).
_PLAIN, _DROP, _NUMBER, _ID, _ID_BY_PARENT, _URI, _ID_IF_LIKE = range(7)

#: A URI taken apart: whether it had an origin, its path segments (literal, or (kind, raw) for
#: an id), what followed the path (``?query``), and the ids alone.
_ParsedUri = tuple[bool, tuple[str | tuple[str, str], ...], str, tuple[tuple[str, str], ...]]


@functools.lru_cache(maxsize=4096)
def _rule(key: str) -> tuple[int, str, bool]:
    """(what the key holds, the id kind if known, whether it only refers to another object)."""
    reference = key.startswith(REFERENCE_PREFIXES)
    if is_dropped_key(key):
        return _DROP, "", False
    if key in NUMBER_KEYS:
        return _NUMBER, "number", False
    if key in ID_KEY_KINDS:
        return _ID, ID_KEY_KINDS[key], reference
    if key.endswith("ConnId"):  # otherConnId, consultConnId, ...
        return _ID, "conn", reference
    if len(key) > 2 and key.endswith("Id") and key[-3].islower():  # recordingId, ...
        return _ID_IF_LIKE, key[:-2].lower(), reference
    if key == "id":
        return _ID_BY_PARENT, "", False
    if is_uri_key(key):
        return _URI, "", reference
    return _PLAIN, "", False


@functools.lru_cache(maxsize=65536)
def _parse_uri(value: str) -> _ParsedUri:
    origin = _ORIGIN.match(value)
    rest = value[origin.end() :] if origin else value
    path, sep, tail = rest.partition("?")
    segments: list[str | tuple[str, str]] = []
    previous = ""
    for segment in path.split("/"):
        kind = COLLECTION_KINDS.get(previous)
        if segment and kind is not None:
            segments.append((kind, segment))
        elif looks_like_id(segment):
            segments.append(("id", segment))
        else:
            segments.append(segment)
        previous = segment
    ids = tuple(s for s in segments if not isinstance(s, str))
    return origin is not None, tuple(segments), sep + tail, ids


def _render_uri(parsed: _ParsedUri, table: Renaming) -> str:
    has_origin, segments, tail, _ = parsed
    path = "/".join(s if isinstance(s, str) else table.tokens[s] for s in segments)
    return (ORIGIN_PLACEHOLDER if has_origin else "") + path + tail


class Renaming:
    """The renaming table of one cassette: (kind, raw value) -> ``<kind-N>`` or ``<kind-?>``."""

    def __init__(self, seen: Mapping[tuple[str, str], bool]) -> None:
        """``seen``: every (kind, raw value) in order of first appearance -> whether it was
        ever the thing itself rather than only a reference to it."""
        numbers: dict[str, int] = {}
        self.tokens: dict[tuple[str, str], str] = {}
        for (kind, raw), defined in seen.items():
            if not defined:
                self.tokens[kind, raw] = f"<{kind}-?>"
                continue
            numbers[kind] = numbers.get(kind, 0) + 1
            self.tokens[kind, raw] = f"<{kind}-{numbers[kind]}>"


# A slot to fill once the table is known: (container, key or index, what goes there).
_IdSlot = tuple[Any, Any, tuple[str, str]]
_UriSlot = tuple[Any, Any, _ParsedUri]


class _Walker:
    """One walk over a cassette's documents: copies them, folding noise, and notes every
    identifier (in order of first appearance) and the slot it must be written to."""

    __slots__ = ("id_slots", "keep_numbers", "maybe_slots", "seen", "uri_slots")

    def __init__(self, *, keep_numbers: bool) -> None:
        self.keep_numbers = keep_numbers
        self.seen: dict[tuple[str, str], bool] = {}
        self.id_slots: list[_IdSlot] = []
        self.uri_slots: list[_UriSlot] = []
        # Id-like strings under other keys (userData, extensions): renamed at the end if they
        # are one of the identifiers seen elsewhere.
        self.maybe_slots: list[tuple[Any, Any, str]] = []

    def see(self, kind: str, raw: str, reference: bool) -> None:
        if not self.seen.get((kind, raw), False):
            self.seen[kind, raw] = not reference

    def value(self, value: JSON, key: str | None, parent: str | None) -> JSON:
        if isinstance(value, dict):
            return self.obj(value, key)
        if isinstance(value, list):
            return self.array(value, key, parent)
        return value  # a scalar outside any object: nothing says what it is

    def obj(self, value: dict[str, JSON], key: str | None) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        for k in sorted(value):
            v = value[k]
            rule = _rule(k)
            code = rule[0]
            if code == _DROP:
                continue
            kind = type(v)
            if kind is dict:
                out[k] = self.obj(v, k)
            elif kind is list:
                out[k] = self.array(v, k, key)
            elif code == _PLAIN and (kind is not str or len(v) < 8 or not _DIGIT.search(v)):
                # The common case, kept fast: a plain value that cannot be a time or an id
                # (both need a digit) is kept as it is.
                out[k] = v
            else:
                out[k] = self.scalar(v, rule, key, out, k)
        return out

    def array(self, value: list[JSON], key: str | None, parent: str | None) -> list[JSON]:
        # Elements keep the list's key: `"calls": [{"id": ..}]` is a list of calls.
        out: list[JSON] = []
        rule = _rule(key) if key is not None else (_PLAIN, "", False)
        plain = rule[0] == _PLAIN
        for v in value:
            if plain and type(v) is str and (len(v) < 8 or not _DIGIT.search(v)):
                out.append(v)  # capability names and the like: nothing to rename
            elif isinstance(v, dict):
                out.append(self.obj(v, key))
            elif isinstance(v, list):
                out.append(self.array(v, key, parent))
            else:
                out.append(self.scalar(v, rule, parent, out, len(out)))
        return out

    def scalar(
        self, value: JSON, rule: tuple[int, str, bool], parent: str | None, into: Any, slot: Any
    ) -> JSON:
        if value is None or isinstance(value, bool):
            return value
        code, kind, reference = rule
        if code == _NUMBER:
            if not self.keep_numbers:
                return NUMBER_PLACEHOLDER
            code = _ID
        elif code == _ID_BY_PARENT:
            code, kind = _ID, ID_PARENT_KINDS.get(parent or "", "id")
        elif code == _ID_IF_LIKE:
            code = _ID if isinstance(value, str) and looks_like_id(value) else _PLAIN
        if code == _ID:
            if isinstance(value, str | int | float) and value != "":
                raw = str(value)
                self.see(kind, raw, reference)
                self.id_slots.append((into, slot, (kind, raw)))
            return value
        if isinstance(value, str):
            if code == _URI:
                parsed = _parse_uri(value)
                if not parsed[3] and not parsed[0]:
                    return value
                for kind_raw in parsed[3]:
                    self.see(*kind_raw, reference)
                self.uri_slots.append((into, slot, parsed))
                return value
            if _ISO_TIME.match(value):
                return TIME_PLACEHOLDER
            if len(value) >= 8 and _DIGIT.search(value):
                self.maybe_slots.append((into, slot, value))
        return value


def canonicalise(docs: Sequence[JSON], *, keep_numbers: bool = False) -> list[JSON]:
    """The canonical form of ``docs`` (one cassette's documents, in order), renamed together."""
    walker = _Walker(keep_numbers=keep_numbers)
    out = [walker.value(doc, None, None) for doc in docs]
    table = Renaming(walker.seen)
    for into, slot, kind_raw in walker.id_slots:
        into[slot] = table.tokens[kind_raw]
    for into, slot, parsed in walker.uri_slots:
        into[slot] = _render_uri(parsed, table)
    if walker.maybe_slots:
        # Ids of 8+ characters (as ``looks_like_id``), case folded: an id copied into attached
        # data is renamed with it, whole or inside a longer string, in upper or lower case.
        by_value: dict[str, str] = {}
        for (_, raw), token in table.tokens.items():
            if len(raw) >= 8 and looks_like_id(raw):
                by_value.setdefault(raw.lower(), token)
        if by_value:
            for into, slot, raw in walker.maybe_slots:
                whole = by_value.get(raw.lower())
                if whole is not None:
                    into[slot] = whole
                else:
                    renamed = _ID_RUN.sub(lambda m: _inner(m.group(0), by_value), raw)
                    if renamed != raw:
                        into[slot] = renamed
    return out


def _inner(run: str, by_value: Mapping[str, str]) -> str:
    """A run of id characters inside a longer string, renamed if it is (or its ``-``-separated
    parts are) a known id."""
    token = by_value.get(run.lower())
    if token is not None:
        return token
    if "-" not in run:
        return run
    return "-".join(by_value.get(part.lower(), part) for part in run.split("-"))
