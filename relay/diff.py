"""Compare two cassettes: what changed in the behaviour a desktop depends on.

Users record one scenario on two GWS builds and ask what changed. Payloads drift between
versions (``shared/reference/gws.md``): fields appear and disappear, capability lists change,
notifications are added, dropped or reordered; ids, durations and timestamps always differ and
are noise (``relay.canon``).

Steps. A step is a REST exchange plus the notifications it caused (``Notification.cause``). A
run of notifications nobody caused (an inbound call ringing) is a step of its own,
"unsolicited", placed where it happened; an exchange ends the run. ``DiffOptions.only`` keeps
the steps of the named operations (and drops the unsolicited ones). Each cassette's steps are
canonicalised together (one renaming table per cassette), then ``DiffOptions.ignore`` drops
paths.

Naming (``named_like``). Each cassette numbers its ids by first appearance, so one extra call
early in B would shift every later ``<call-N>`` of B. The steps and notifications are first
aligned on keys blind to these names; where a matched pair has a B name at the place A has
another, B's name becomes A's; B's ids that A never had are numbered past A's highest.

Alignment (``relay.diff_align``). The steps of A and B are aligned as sequences by a longest
common subsequence of their whole content (method, canonical path, operationName, HTTP status
and their notifications' keys), then, in each gap, by (method, canonical path, operationName),
and last by the operation alone, in order: a missing, extra or failed attempt of a step is one
finding, not a cascade nor a pairing with the wrong attempt. Steps are told apart by desktop
name (not by the desktops' order in the file). Within a pair of aligned steps, notifications are
aligned by channel, messageType, notificationType, the call they are about and its state. Items
left over on both sides with the same key were reordered; items left over in the same gap with
the same key but for the call (or, for steps, the path) are compared field by field, so a
notification now about another call shows as ``data.call.id`` changed.

Findings carry where they are (``Finding.at``: the step's index in A and in B;
``Finding.note_at``: the notification's): labels can repeat, positions cannot. A step only in B
is labelled with its position in B (``Hold POST ... (B step 2)``).

Kinds of finding (``Kind``):

==========================  ================================================================
step-missing                a step of A has no counterpart in B (``a``: what it held)
step-extra                  a step of B has no counterpart in A (``b``: what it held)
step-reordered              the step is in both but out of order (``a``/``b``: 1-based positions)
notification-missing        a notification of A's step is not in B's
notification-extra          a notification of B's step is not in A's
notification-reordered      the notification is in both steps but out of order (positions)
field-added                 ``path`` is only in B (``b``: its value)
field-removed               ``path`` is only in A (``a``: its value)
field-changed               ``path`` differs (``a`` -> ``b``); REST bodies too (``response.body..``)
capability-gained           a name in a set-like list (``SET_KEYS``) only in B
capability-lost             a name in a set-like list only in A
status-changed              the REST answer's HTTP status differs (``response.status``)
==========================  ================================================================

Paths are dotted JSON paths inside the notification's Bayeux message (``data.call.monitoring``)
or inside the step's exchange (``request.body.destination``, ``response.body.statusCode``,
``response.status``), list indexes as ``[0]``.

Noise learning, after Diffy: with a second recording A2 of A's version, every finding of A vs A2
is noise; a finding of A vs B with the same (step, notification, kind, path) is dropped (for
capabilities the name counts too, so that one flapping capability does not hide the others).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from relay.canon import canonicalise
from relay.cassette import Body, Cassette, Exchange, Notification, Pairs, collector_paused
from relay.diff_align import Pair, align
from relay.errors import DiffError

JSON = Any
Path = tuple[str | int, ...]

#: Keys whose value is a list of names whose order means nothing: compared as sets, reported
#: as capability-gained / capability-lost by name (GWS ``capabilities``: the operations valid
#: now, from which desktops enable their buttons).
SET_KEYS = frozenset({"capabilities"})

#: Bayeux envelope fields of a pushed message that are noise: ``id`` is the server's message
#: counter (Bayeux 1.0, 5.3.6), not something a desktop acts on.
ENVELOPE_NOISE = frozenset({"id"})


class Kind(StrEnum):
    """What a finding says; see the table in the module docstring."""

    STEP_MISSING = "step-missing"
    STEP_EXTRA = "step-extra"
    STEP_REORDERED = "step-reordered"
    NOTIFICATION_MISSING = "notification-missing"
    NOTIFICATION_EXTRA = "notification-extra"
    NOTIFICATION_REORDERED = "notification-reordered"
    FIELD_ADDED = "field-added"
    FIELD_REMOVED = "field-removed"
    FIELD_CHANGED = "field-changed"
    CAPABILITY_GAINED = "capability-gained"
    CAPABILITY_LOST = "capability-lost"
    STATUS_CHANGED = "status-changed"


_STATUS_PATH: Path = ("response", "status")


# A path segment: ``.name``, ``[0]`` or ``[*]``, or a quoted key ``["a.b"]`` (JSON string).
_SEGMENT = re.compile(r'\.?([^.\[\]"]+)|\[(\d+|\*)\]|\[("(?:[^"\\]|\\.)*")\]')
_PLAIN_KEY = re.compile(r'[^.\[\]"*]+')


def _key(segment: str | int) -> str:
    """One path segment as written in a rendered path or an ``--ignore`` pattern."""
    if isinstance(segment, int):
        return f"[{segment}]"
    if _PLAIN_KEY.fullmatch(segment) and not segment.isdigit():
        return "." + segment
    return "[" + orjson.dumps(segment).decode() + "]"


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A dotted JSON path to ignore; ``*`` matches one segment, ``[0]`` is the same as ``.0``,
    and a key with a dot, bracket, quote or star in it is written quoted: ``userData["a.b"]``."""

    segments: tuple[str, ...]
    #: Which segments were quoted: those match their key literally, ``["*"]`` included.
    literal: tuple[bool, ...] = ()

    @classmethod
    def parse(cls, text: str) -> PathPattern:
        text = text.strip()
        segments: list[str] = []
        literal: list[bool] = []
        at = 0
        while at < len(text):
            m = _SEGMENT.match(text, at)
            if m is None or (m.group(1) is not None and at > 0 and text[at] != "."):
                m = None
            if m is None or (m.group(1) is not None and at == 0 and text[0] == "."):
                raise DiffError(
                    f"--ignore {text!r}: expected a dotted JSON path such as data.call.monitoring "
                    "('*' matches one segment; quote a key with a dot: data.userData[\"a.b\"])"
                )
            plain, index, quoted = m.groups()
            if quoted is not None:
                segments.append(orjson.loads(quoted))
                literal.append(True)
            else:
                segments.append(plain if plain is not None else index)
                literal.append(False)
            at = m.end()
        if not segments:
            raise DiffError(
                f"--ignore {text!r}: expected a dotted JSON path such as data.call.monitoring "
                "('*' matches one segment)"
            )
        return cls(tuple(segments), tuple(literal))

    def _is(self, k: int, segment: str | int) -> bool:
        p = self.segments[k]
        if p == "*" and not (self.literal and self.literal[k]):
            return True
        return p == str(segment)

    def matches(self, path: Path) -> bool:
        return len(path) == len(self.segments) and all(self._is(k, s) for k, s in enumerate(path))

    def reaches_below(self, path: Path) -> bool:
        """Whether this pattern could match something strictly inside ``path``."""
        return len(self.segments) > len(path) and all(self._is(k, s) for k, s in enumerate(path))

    def __str__(self) -> str:
        out = []
        for k, p in enumerate(self.segments):
            quoted = bool(self.literal) and self.literal[k]
            out.append(("." + p) if p == "*" and not quoted else _key(p))
        return "".join(out).removeprefix(".")


@dataclass(frozen=True, slots=True)
class DiffOptions:
    """How to compare: paths to ignore, whether numbers count, which operations to keep."""

    ignore: tuple[PathPattern, ...] = ()
    keep_numbers: bool = False
    only: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference between A and B, located by step, notification and JSON path."""

    step: str
    notification: str | None
    kind: Kind
    path: str | None = None
    a: JSON = None
    b: JSON = None
    #: Where the step is: its 0-based index in A's steps and in B's (None on the side it is
    #: not on). Labels can repeat; this cannot.
    at: tuple[int | None, int | None] = (None, None)
    #: The same for the notification within the step (None for a finding about the step).
    note_at: tuple[int | None, int | None] | None = None

    def identity(self) -> tuple[str, str, str, str, str]:
        """What noise learning matches on: (step, notification, kind, path, capability).

        The step and notification are A's positions when they are in A (A is the same
        recording in A vs B and in A vs A2), else B's labels."""
        element = ""
        if self.kind is Kind.CAPABILITY_GAINED:
            element = str(self.b)
        elif self.kind is Kind.CAPABILITY_LOST:
            element = str(self.a)
        step = f"A{self.at[0]}" if self.at[0] is not None else f"B {self.step}"
        note = ""
        if self.note_at is not None:
            i = self.note_at[0]
            note = f"A{i}" if i is not None else f"B {self.notification}"
        return (step, note, self.kind.value, self.path or "", element)

    def to_dict(self) -> dict[str, JSON]:
        return {
            "step": self.step,
            "notification": self.notification,
            "kind": self.kind.value,
            "path": self.path,
            "a": self.a,
            "b": self.b,
        }


@dataclass(frozen=True, slots=True)
class DiffResult:
    """The findings of A vs B, in step order, and what was left out as noise."""

    findings: tuple[Finding, ...]
    steps_a: int
    steps_b: int
    noise_dropped: int = 0

    @property
    def equivalent(self) -> bool:
        return not self.findings


# --- steps ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    """A notification of a step, canonical, with its alignment keys and its label."""

    key: tuple[Hashable, ...]
    relaxed: tuple[Hashable, ...]
    label: str
    doc: JSON
    #: ``key`` blind to which call (``<call-N>`` as ``<call>``), for ``named_like``.
    blind: tuple[Hashable, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """A canonical step: an exchange (``None`` for unsolicited) and its notifications."""

    key: tuple[Hashable, ...]
    relaxed: tuple[Hashable, ...]
    label: str
    operation: str | None
    exchange: JSON
    notes: tuple[Note, ...]
    #: Between ``key`` (the whole content: status and notifications too) and ``relaxed``:
    #: method, canonical path and operationName.
    middle: tuple[Hashable, ...] = ()
    #: The desktop's name and the label's prefix (``[name] `` when the cassette has several).
    desktop: str = ""
    prefix: str = ""
    #: ``key`` and ``middle`` blind to which call, for ``named_like``.
    blind: tuple[Hashable, ...] = ()
    blind_middle: tuple[Hashable, ...] = ()

    def summary(self) -> dict[str, JSON]:
        return {"exchange": self.exchange, "notifications": [n.label for n in self.notes]}


@dataclass(slots=True)
class _RawStep:
    desktop: int
    exchange: Exchange | None
    notifications: list[Notification] = field(default_factory=list)


def _raw_steps(cassette: Cassette) -> list[_RawStep]:
    timeline = sorted(
        (
            (event.at_ms, d, k, event)
            for d, desktop in enumerate(cassette.desktops)
            for k, event in enumerate(desktop.events)
        ),
        # Simultaneous events of two desktops in the order of their names, not of the
        # desktops in the file: the same desktops listed in another order give the same steps.
        key=lambda t: (t[0], cassette.desktops[t[1]].name, t[1], t[2]),
    )
    steps: list[_RawStep] = []
    by_id: dict[str, _RawStep] = {}
    early: dict[str, list[Notification]] = {}  # caused by an exchange not yet seen
    runs: dict[int, _RawStep] = {}  # the open unsolicited run of each desktop
    for _, d, _, event in timeline:
        if isinstance(event, Exchange):
            step = _RawStep(d, event, early.pop(event.id, []))
            steps.append(step)
            by_id[event.id] = step
            runs.clear()
        elif event.cause is not None:
            owner = by_id.get(event.cause)
            if owner is None:
                early.setdefault(event.cause, []).append(event)
            else:
                owner.notifications.append(event)
        else:
            run = runs.get(d)
            if run is None:
                run = runs[d] = _RawStep(d, None)
                steps.append(run)
            run.notifications.append(event)
    return steps


def _query(pairs: Pairs) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for k, v in pairs:
        if k not in out:
            out[k] = v
        elif isinstance(out[k], list):
            out[k].append(v)
        else:
            out[k] = [out[k], v]
    return out


def _body(body: Body | None) -> JSON:
    if body is None:
        return None
    if body.kind in ("json", "text"):
        return body.value
    return {body.kind: body.value}


def _exchange_doc(x: Exchange) -> dict[str, JSON]:
    # Headers are left out: secrets and transport detail (dates, lengths, cookies).
    req, resp = x.request, x.response
    doc: dict[str, JSON] = {
        "request": {
            "method": req.method,
            "path": req.path,
            "query": _query(req.query),
            "body": _body(req.body),
        },
        "response": None if resp is None else {"status": resp.status, "body": _body(resp.body)},
    }
    if x.error is not None:
        doc["error"] = x.error
    return doc


def _notification_doc(n: Notification) -> dict[str, JSON]:
    doc = {k: v for k, v in n.message.items() if k not in ENVELOPE_NOISE}
    doc.setdefault("channel", n.channel)
    return doc


def json_at(doc: JSON, *keys: str) -> JSON:
    """``doc[k1][k2]...``, or None where a key or an object is missing."""
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _h(value: JSON) -> Hashable:
    """A JSON value as a hashable key part (objects and lists frozen, tagged by kind)."""
    if isinstance(value, dict):
        return ("{}", tuple(sorted((str(k), _h(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("[]", tuple(_h(v) for v in value))
    scalar: Hashable = value  # None, bool, int, float or str
    return scalar


def _numbered(labels: list[str]) -> list[str]:
    """Labels made unique: a label that occurs more than once gets ``#1``, ``#2``, ..."""
    total: dict[str, int] = {}
    for label in labels:
        total[label] = total.get(label, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        if total[label] == 1:
            out.append(label)
            continue
        seen[label] = seen.get(label, 0) + 1
        out.append(f"{label} #{seen[label]}")
    return out


def drop_ignored(doc: JSON, patterns: Sequence[PathPattern], path: Path = ()) -> JSON:
    """``doc`` without the values at paths matched by ``patterns`` (the input is not changed)."""
    if not any(p.reaches_below(path) for p in patterns):
        return doc
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            sub = (*path, k)
            if not any(p.matches(sub) for p in patterns):
                out[k] = drop_ignored(v, patterns, sub)
        return out
    if isinstance(doc, list):
        return [
            drop_ignored(v, patterns, (*path, i))
            for i, v in enumerate(doc)
            if not any(p.matches((*path, i)) for p in patterns)
        ]
    return doc


def _notes(docs: list[JSON]) -> tuple[Note, ...]:
    parts = []
    for doc in docs:
        channel = json_at(doc, "channel")
        message_type = json_at(doc, "data", "messageType")
        notification_type = json_at(doc, "data", "notificationType")
        call = json_at(doc, "data", "call", "id")
        state = json_at(doc, "data", "call", "state")
        key = tuple(_h(v) for v in (channel, message_type, notification_type, call, state))
        label = " ".join(
            str(v)
            for v in (channel, notification_type or message_type, state, call)
            if v is not None
        )
        parts.append((key, label or "notification", doc))
    labels = _numbered([label for _, label, _ in parts])
    return tuple(
        Note(key=key, relaxed=key[:3] + key[4:], label=label, doc=doc, blind=_blind_key(key))
        for (key, _, doc), label in zip(parts, labels, strict=True)
    )


def steps_of(cassette: Cassette, options: DiffOptions = DiffOptions()) -> list[Step]:
    """The cassette's steps in time order, canonicalised together, ignored paths dropped."""
    raw = _raw_steps(cassette)
    if options.only:
        raw = [
            s
            for s in raw
            if s.exchange is not None and s.exchange.request.operation_name in options.only
        ]
    docs: list[JSON] = []
    for s in raw:
        if s.exchange is not None:
            docs.append(_exchange_doc(s.exchange))
        docs.extend(_notification_doc(n) for n in s.notifications)
    canon = canonicalise(docs, keep_numbers=options.keep_numbers)
    if options.ignore:
        canon = [drop_ignored(doc, options.ignore) for doc in canon]
    it = iter(canon)
    several = len(cassette.desktops) > 1
    built: list[Step] = []
    for s in raw:
        exchange = next(it) if s.exchange is not None else None
        note_docs = [next(it) for _ in s.notifications]
        name = cassette.desktops[s.desktop].name
        operation = s.exchange.request.operation_name if s.exchange is not None else None
        built.append(_step(name, f"[{name}] " if several else "", operation, exchange, note_docs))
    return _numbered_steps(built)


def _step(
    desktop: str, prefix: str, operation: str | None, exchange: JSON, docs: list[JSON]
) -> Step:
    """A step from its canonical documents (its label not yet numbered)."""
    notes = _notes(docs)
    note_keys = tuple(n.key for n in notes)
    if exchange is not None:
        method = json_at(exchange, "request", "method")
        path = json_at(exchange, "request", "path")
        op = json_at(exchange, "request", "body", "operationName")
        status = json_at(exchange, "response", "status")
        middle: tuple[Hashable, ...] = ("exchange", desktop, _h(method), _h(path), _h(op))
        answer = (_h(status), _h(json_at(exchange, "error")))
        key: tuple[Hashable, ...] = (*middle, *answer, note_keys)
        blind_middle = _blind_key(middle)
        blind: tuple[Hashable, ...] = (*blind_middle, *answer, tuple(n.blind for n in notes))
        relaxed: tuple[Hashable, ...] = ("exchange", desktop, _h(method), _h(op))
        label = " ".join(str(v) for v in (op, method, path) if v is not None) or "exchange"
    else:
        middle = ("unsolicited", desktop, notes[0].key if notes else None)
        key = (*middle, note_keys)
        blind_middle = ("unsolicited", desktop, notes[0].blind if notes else None)
        blind = (*blind_middle, tuple(n.blind for n in notes))
        relaxed = ("unsolicited", desktop)
        label = "unsolicited"
    return Step(
        key=key,
        relaxed=relaxed,
        label=prefix + label,
        operation=operation,
        exchange=exchange,
        notes=notes,
        middle=middle,
        desktop=desktop,
        prefix=prefix,
        blind=blind,
        blind_middle=blind_middle,
    )


def _numbered_steps(steps: list[Step]) -> list[Step]:
    labels = _numbered([s.label for s in steps])
    return [
        s if s.label == label else dataclasses.replace(s, label=label)
        for s, label in zip(steps, labels, strict=True)
    ]


# --- one naming for both sides ----------------------------------------------------------------

_TOKEN = re.compile(r"<([a-z]+)-(\d+)>")


@functools.lru_cache(maxsize=65536)
def _blind_str(value: str) -> str:
    return _TOKEN.sub(r"<\1>", value)


def _blind(value: Hashable) -> Hashable:
    """A key part with every ``<kind-N>`` made ``<kind>``: keys that ignore which call."""
    if isinstance(value, str):
        return _blind_str(value) if "<" in value else value
    if isinstance(value, tuple):
        return tuple(_blind(v) for v in value)
    return value


def _blind_key(key: tuple[Hashable, ...]) -> tuple[Hashable, ...]:
    return tuple(_blind(v) for v in key)


def _tokens(doc: JSON, out: list[str]) -> None:
    if isinstance(doc, str):
        if "<" in doc:
            out.extend(m.group(0) for m in _TOKEN.finditer(doc))
    elif isinstance(doc, dict):
        for v in doc.values():
            _tokens(v, out)
    elif isinstance(doc, list):
        for v in doc:
            _tokens(v, out)


def _correspond(a: JSON, b: JSON, found: list[tuple[str, str]], skip_equal: bool) -> None:
    """The tokens of ``b`` that stand where ``a`` has tokens (same path, same place); with
    ``skip_equal``, not those of equal parts (a quick look for any difference)."""
    if skip_equal and (a is b or a == b):
        return
    if isinstance(a, str):
        if isinstance(b, str) and "<" in a and "<" in b:
            ta = [m.group(0) for m in _TOKEN.finditer(a)]
            tb = [m.group(0) for m in _TOKEN.finditer(b)]
            if len(ta) == len(tb):
                found.extend(zip(ta, tb, strict=True))
    elif isinstance(a, dict):
        if isinstance(b, dict):
            for k, v in a.items():
                if k in b:
                    _correspond(v, b[k], found, skip_equal)
    elif isinstance(a, list) and isinstance(b, list):
        for x, y in zip(a, b, strict=False):
            _correspond(x, y, found, skip_equal)


def _rename(doc: JSON, table: dict[str, str]) -> JSON:
    if isinstance(doc, str):
        if "<" not in doc:
            return doc
        return _TOKEN.sub(lambda m: table.get(m.group(0), m.group(0)), doc)
    if isinstance(doc, dict):
        return {k: _rename(v, table) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_rename(v, table) for v in doc]
    return doc


def _token_kind(token: str) -> str:
    return token[1 : token.rindex("-")]


def named_like(a: Sequence[Step], b: Sequence[Step]) -> list[Step]:
    """B's steps with B's ``<kind-N>`` names replaced by the names of A's counterparts.

    Each cassette numbers its ids by first appearance, so one extra call early in B (a Dial)
    would shift every later ``<call-N>`` of B. The steps and, within matched steps, the
    notifications are aligned first on keys blind to these names; a token of B standing where
    A has another token in a matched pair (same JSON path) takes A's name (see ``_table``; of
    the readings tried, the one giving the fewest findings is kept). B's other tokens (ids A
    never had) are numbered past A's highest number of their kind, so that they cannot collide
    with a name of A."""
    pairs = align(
        [s.blind for s in a],
        [s.blind for s in b],
        [s.relaxed for s in a],  # method and operation only: no names in it
        [s.relaxed for s in b],
        [s.blind_middle for s in a],
        [s.blind_middle for s in b],
    )
    matched: list[tuple[JSON, JSON]] = []
    for p in pairs:
        if p.a is None or p.b is None:
            continue
        sa, sb = a[p.a], b[p.b]
        matched.append((sa.exchange, sb.exchange))
        if sa.notes == sb.notes:
            matched.extend((n.doc, n.doc) for n in sa.notes)
            continue
        note_pairs = align(
            [n.blind for n in sa.notes],
            [n.blind for n in sb.notes],
            [_blind_key(n.relaxed) for n in sa.notes],
            [_blind_key(n.relaxed) for n in sb.notes],
        )
        matched.extend(
            (sa.notes[q.a].doc, sb.notes[q.b].doc)
            for q in note_pairs
            if q.a is not None and q.b is not None
        )
    found: list[tuple[str, str]] = []
    for x, y in matched:
        _correspond(x, y, found, True)
    if all(ta == tb for ta, tb in found):
        return list(b)  # the same names already: the usual case
    found.clear()
    for x, y in matched:
        _correspond(x, y, found, False)
    in_a: list[str] = []
    for s in a:
        _tokens(s.exchange, in_a)
        for n in s.notes:
            _tokens(n.doc, in_a)
    in_b: list[str] = []
    for s in b:
        _tokens(s.exchange, in_b)
        for n in s.notes:
            _tokens(n.doc, in_b)
    # Which of 50 look-alike notifications is the missing one is arbitrary to an LCS on blind
    # keys, so the pairs it gives can be off by one. Two readings: the first correspondence
    # seen wins, or the one seen most often (the rest of the recording outvotes a run aligned
    # off by one). B's own naming is the third candidate. Kept: the one under which most of
    # B's keys and pairs of keys in a row are also A's (``_scored_keys``), counted as
    # multisets, so without aligning again (ties: in this order).
    a_keys = Counter(_scored_keys(a, None))
    best: dict[str, str] | None = None
    score = _overlap(a_keys, Counter(_scored_keys(b, None)))
    for by_votes in (False, True):
        table = _table(found, by_votes, in_a, in_b)
        here = _overlap(a_keys, Counter(_scored_keys(b, table)))
        if here > score:
            best, score = table, here
    if best is None:
        return list(b)
    renamed = [
        _step(
            s.desktop,
            s.prefix,
            s.operation,
            _rename(s.exchange, best),
            [_rename(n.doc, best) for n in s.notes],
        )
        for s in b
    ]
    return _numbered_steps(renamed)


def _scored_keys(steps: Sequence[Step], table: dict[str, str] | None) -> Iterator[Hashable]:
    """The keys ``named_like`` scores a naming by, renamed through ``table``: each step's
    (method, path, operation) and notification key, and each two in a row (so that the order
    counts: calls that all go through the same states are told apart by what follows what)."""
    previous: Hashable = None
    for s in steps:
        for key in (s.middle, *(n.key for n in s.notes)):
            current = _renamed_key(key, table)
            yield current
            yield (previous, current)
            previous = current


def _renamed_key(key: tuple[Hashable, ...], table: dict[str, str] | None) -> Hashable:
    if table is None:
        return key
    return tuple(
        _TOKEN.sub(lambda m: table.get(m.group(0), m.group(0)), v)
        if isinstance(v, str) and "<" in v
        else v
        for v in key
    )


def _overlap(a: Counter[Hashable], b: Counter[Hashable]) -> int:
    return sum((a & b).values())


def _table(
    found: list[tuple[str, str]], by_votes: bool, in_a: list[str], in_b: list[str]
) -> dict[str, str]:
    """B's token -> its new name, from the (A, B) correspondences ``found`` in order: first
    seen wins, or most often seen (then first seen); each A name is taken once; B's other
    tokens are numbered past A's highest number of their kind."""
    order: Sequence[tuple[str, str]] = found
    if by_votes:
        votes: dict[tuple[str, str], int] = {}
        for pair in found:
            votes[pair] = votes.get(pair, 0) + 1
        order = sorted(votes, key=lambda pair: -votes[pair])  # stable: first seen among equals
    table: dict[str, str] = {}
    taken: set[str] = set()
    for ta, tb in order:
        if tb not in table and ta not in taken and _token_kind(ta) == _token_kind(tb):
            table[tb] = ta
            taken.add(ta)
    highest: dict[str, int] = {}
    for t in (*in_a, *table.values()):
        m = _TOKEN.fullmatch(t)
        if m is not None:
            highest[m.group(1)] = max(highest.get(m.group(1), 0), int(m.group(2)))
    for t in in_b:
        if t not in table:
            kind = _token_kind(t)
            highest[kind] = highest.get(kind, 0) + 1
            table[t] = f"<{kind}-{highest[kind]}>"
    return table


# --- comparison -----------------------------------------------------------------------------

_Change = tuple[Kind, Path, JSON, JSON]


def render_path(path: Path) -> str:
    """``("data", "call", "participants", 0, "digits")`` -> ``data.call.participants[0].digits``;
    a key that is not a plain name is quoted: ``("data", "userData", "a.b")`` ->
    ``data.userData["a.b"]`` (``--ignore`` reads the same form)."""
    return "".join(_key(segment) for segment in path).removeprefix(".")


def compare(a: JSON, b: JSON, path: Path = ()) -> list[_Change]:
    """The field changes from ``a`` to ``b`` (canonical JSON), in sorted-key order."""
    out: list[_Change] = []
    _compare(a, b, path, out)
    return out


def _compare(a: JSON, b: JSON, path: Path, out: list[_Change]) -> None:
    if type(a) is type(b) and a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            if k not in b:
                out.append((Kind.FIELD_REMOVED, (*path, k), a[k], None))
            elif k not in a:
                out.append((Kind.FIELD_ADDED, (*path, k), None, b[k]))
            else:
                _compare(a[k], b[k], (*path, k), out)
        return
    if isinstance(a, list) and isinstance(b, list):
        if path and path[-1] in SET_KEYS and _strings(a) and _strings(b):
            set_a, set_b = set(a), set(b)
            out.extend((Kind.CAPABILITY_LOST, path, x, None) for x in sorted(set_a - set_b))
            out.extend((Kind.CAPABILITY_GAINED, path, None, x) for x in sorted(set_b - set_a))
            return
        for i in range(max(len(a), len(b))):
            if i >= len(b):
                out.append((Kind.FIELD_REMOVED, (*path, i), a[i], None))
            elif i >= len(a):
                out.append((Kind.FIELD_ADDED, (*path, i), None, b[i]))
            else:
                _compare(a[i], b[i], (*path, i), out)
        return
    kind = Kind.STATUS_CHANGED if path == _STATUS_PATH else Kind.FIELD_CHANGED
    out.append((kind, path, a, b))


def _strings(values: list[JSON]) -> bool:
    return all(isinstance(v, str) for v in values)


def _fields(
    step: str,
    note: str | None,
    a: JSON,
    b: JSON,
    at: tuple[int | None, int | None],
    note_at: tuple[int | None, int | None] | None,
) -> Iterator[Finding]:
    for kind, path, va, vb in compare(a, b):
        yield Finding(step, note, kind, render_path(path), va, vb, at, note_at)


def align_notes(sa: Step, sb: Step) -> list[Pair]:
    """The notifications of two matched steps, aligned (the text and HTML views share it)."""
    return align(
        [n.key for n in sa.notes],
        [n.key for n in sb.notes],
        [n.relaxed for n in sa.notes],
        [n.relaxed for n in sb.notes],
    )


def align_steps(a: Sequence[Step], b: Sequence[Step]) -> list[Pair]:
    """The steps of A and B aligned: an LCS of their whole content (``Step.key``), then, in
    each gap, an LCS of (method, path, operationName), then the same operation in order."""
    return align(
        [s.key for s in a],
        [s.key for s in b],
        [s.relaxed for s in a],
        [s.relaxed for s in b],
        [s.middle for s in a],
        [s.middle for s in b],
    )


def extra_label(step: Step, index: int) -> str:
    """The label of a step only in B: B's position in it, so that it cannot be read as A's."""
    return f"{step.label} (B step {index + 1})"


def _compare_steps(sa: Step, sb: Step, at: tuple[int, int]) -> Iterator[Finding]:
    step = sa.label
    yield from _fields(step, None, sa.exchange, sb.exchange, at, None)
    pairs = align_notes(sa, sb)
    for p in pairs:
        where = (p.a, p.b)
        if p.b is None:
            assert p.a is not None
            na = sa.notes[p.a]
            yield Finding(step, na.label, Kind.NOTIFICATION_MISSING, None, na.doc, None, at, where)
        elif p.a is None:
            nb = sb.notes[p.b]
            yield Finding(step, nb.label, Kind.NOTIFICATION_EXTRA, None, None, nb.doc, at, where)
        else:
            na, nb = sa.notes[p.a], sb.notes[p.b]
            if p.moved:
                yield Finding(
                    step, na.label, Kind.NOTIFICATION_REORDERED, None, p.a + 1, p.b + 1, at, where
                )
            yield from _fields(step, na.label, na.doc, nb.doc, at, where)


def diff_steps(a: Sequence[Step], b: Sequence[Step]) -> list[Finding]:
    """The findings of steps ``a`` vs steps ``b`` (``b`` already ``named_like(a, ...)``), in
    step order."""
    out: list[Finding] = []
    for p in align_steps(a, b):
        if p.b is None:
            assert p.a is not None
            sa = a[p.a]
            out.append(
                Finding(sa.label, None, Kind.STEP_MISSING, None, sa.summary(), None, (p.a, None))
            )
        elif p.a is None:
            sb = b[p.b]
            label = extra_label(sb, p.b)
            out.append(Finding(label, None, Kind.STEP_EXTRA, None, None, sb.summary(), (None, p.b)))
        else:
            at = (p.a, p.b)
            if p.moved:
                out.append(
                    Finding(a[p.a].label, None, Kind.STEP_REORDERED, None, p.a + 1, p.b + 1, at)
                )
            out.extend(_compare_steps(a[p.a], b[p.b], at))
    return out


def _operations(cassette: Cassette) -> set[str]:
    return {
        op
        for desktop in cassette.desktops
        for x in desktop.exchanges()
        if (op := x.request.operation_name) is not None
    }


def diff(
    a: Cassette,
    b: Cassette,
    options: DiffOptions = DiffOptions(),
    *,
    noise: Cassette | None = None,
) -> DiffResult:
    """Compare A with B; with ``noise`` (a second recording of A's version), drop whatever
    differs between A and it. Raises DiffError for an ``--only`` operation neither has."""
    if options.only:
        known = _operations(a) | _operations(b)
        unknown = sorted(options.only - known)
        if unknown:
            have = ", ".join(sorted(known)) or "none"
            raise DiffError(
                f"--only {', '.join(unknown)}: neither cassette has a step of this operation "
                f"(they have: {have})"
            )
    with collector_paused():
        a_steps = steps_of(a, options)
        b_steps = named_like(a_steps, steps_of(b, options))
        findings = diff_steps(a_steps, b_steps)
        dropped = 0
        if noise is not None:
            noise_steps = named_like(a_steps, steps_of(noise, options))
            learned = {f.identity() for f in diff_steps(a_steps, noise_steps)}
            kept = [f for f in findings if f.identity() not in learned]
            dropped = len(findings) - len(kept)
            findings = kept
    return DiffResult(tuple(findings), len(a_steps), len(b_steps), dropped)
