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
- URIs and paths keep their shape; the origin becomes ``<origin>`` and the id parts are renamed
  (``http://host:8080/api/v2/me/calls/X`` -> ``<origin>/api/v2/me/calls/<call-1>``).
- ``duration`` and timestamp fields (``DROPPED_KEYS``, keys ending in ``Timestamp``, ``Date``,
  ``DateTime`` or ``At``) are dropped; any other string that reads as an ISO 8601 date-time
  becomes ``<time>``.
- Phone numbers (``NUMBER_KEYS``, including a request's ``destination``) become ``<number>``, or,
  with ``keep_numbers``, are renamed like ids (``<number-N>``).

Everything here is pure: values in, new values out; the input is never modified.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    }
)

#: Keys dropped from every document: durations and timestamps always differ.
DROPPED_KEYS = frozenset(
    {"duration", "timestamp", "time", "date", "startTime", "endTime", "creationTime"}
)
_DROPPED_SUFFIXES = ("Timestamp", "Date", "DateTime")

NUMBER_PLACEHOLDER = "<number>"
TIME_PLACEHOLDER = "<time>"
ORIGIN_PLACEHOLDER = "<origin>"

_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_ID_SEGMENT = re.compile(r"^(?=.*\d)[A-Za-z0-9_.~-]{8,}$")
_AT_SUFFIX = re.compile(r"[a-z]At$")

#: Keys that refer to another object rather than name their own (see the module docstring).
REFERENCE_PREFIXES = ("parent", "previous")


def is_uri_key(key: str) -> bool:
    """Whether a key's string value is read as a URI or path whose id parts are renamed."""
    return key in URI_KEYS or key.endswith(_URI_SUFFIXES)


def is_dropped_key(key: str) -> bool:
    """Whether a key is a duration or timestamp, dropped before any comparison."""
    return key in DROPPED_KEYS or key.endswith(_DROPPED_SUFFIXES) or bool(_AT_SUFFIX.search(key))


def looks_like_id(segment: str) -> bool:
    """A path segment that names something: a UUID, or 8+ id characters including a digit."""
    return bool(_UUID.match(segment) or _ID_SEGMENT.match(segment))


# (kind, raw value, whether it is only a reference) -> token
_Namer = Callable[[str, str, bool], str]


class _Walker:
    """One walk over a document; ``name`` decides what an identifier becomes."""

    __slots__ = ("keep_numbers", "name")

    def __init__(self, name: _Namer, *, keep_numbers: bool) -> None:
        self.name = name
        self.keep_numbers = keep_numbers

    def value(self, value: JSON, key: str | None, parent: str | None) -> JSON:
        if isinstance(value, dict):
            return {k: self.value(value[k], k, key) for k in sorted(value) if not is_dropped_key(k)}
        if isinstance(value, list):
            # Elements keep the list's key: `"calls": [{"id": ..}]` is a list of calls.
            return [self.value(v, key, parent) for v in value]
        if value is None or isinstance(value, bool) or key is None:
            return value
        if key in NUMBER_KEYS:
            return self.number(value)
        kind = ID_KEY_KINDS.get(key)
        if kind is None and key == "id":
            kind = ID_PARENT_KINDS.get(parent or "", "id")
        reference = key.startswith(REFERENCE_PREFIXES)
        if kind is not None:
            return self.ident(kind, value, reference)
        if isinstance(value, str):
            if is_uri_key(key):
                return self.uri(value, reference)
            if _ISO_TIME.match(value):
                return TIME_PLACEHOLDER
        return value

    def ident(self, kind: str, value: JSON, reference: bool = False) -> JSON:
        if isinstance(value, str | int | float) and value != "":
            return self.name(kind, str(value), reference)
        return value

    def number(self, value: JSON) -> JSON:
        if not self.keep_numbers:
            return NUMBER_PLACEHOLDER
        return self.ident("number", value)

    def uri(self, value: str, reference: bool = False) -> str:
        origin = _ORIGIN.match(value)
        rest = value[origin.end() :] if origin else value
        path, sep, tail = rest.partition("?")
        out: list[str] = []
        previous = ""
        for segment in path.split("/"):
            kind = COLLECTION_KINDS.get(previous)
            if segment and kind is not None:
                out.append(self.name(kind, segment, reference))
            elif looks_like_id(segment):
                out.append(self.name("id", segment, reference))
            else:
                out.append(segment)
            previous = segment
        return (ORIGIN_PLACEHOLDER if origin else "") + "/".join(out) + sep + tail


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

    def __call__(self, kind: str, raw: str, reference: bool = False) -> str:
        return self.tokens[kind, raw]


def renaming(docs: Iterable[JSON], *, keep_numbers: bool = False) -> Renaming:
    """Walk ``docs`` in order and build their shared renaming table."""
    seen: dict[tuple[str, str], bool] = {}

    def record(kind: str, raw: str, reference: bool) -> str:
        seen[kind, raw] = seen.get((kind, raw), False) or not reference
        return raw

    walker = _Walker(record, keep_numbers=keep_numbers)
    for doc in docs:
        walker.value(doc, None, None)
    return Renaming(seen)


def canonicalise(docs: Sequence[JSON], *, keep_numbers: bool = False) -> list[JSON]:
    """The canonical form of ``docs`` (one cassette's documents, in order), renamed together."""
    table = renaming(docs, keep_numbers=keep_numbers)
    walker = _Walker(table, keep_numbers=keep_numbers)
    return [walker.value(doc, None, None) for doc in docs]
