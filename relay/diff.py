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

Alignment (``relay.diff_align``). The steps of A and B are aligned as sequences by a longest
common subsequence of their keys (method, canonical path, operationName), so a missing or extra
step is one finding, not a cascade. Within a pair of aligned steps, notifications are aligned
the same way by channel, messageType, notificationType, the call they are about and its state.
Items left over on both sides with the same key were reordered; items left over in the same gap
with the same key but for the call (or, for steps, the path) are compared field by field, so a
notification now about another call shows as ``data.call.id`` changed.

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

import re
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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
_INDEX = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A dotted JSON path to ignore; ``*`` matches one segment, ``[0]`` is the same as ``.0``."""

    segments: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> PathPattern:
        segments = tuple(_INDEX.sub(r".\1", text.strip()).split("."))
        if any(not s for s in segments):
            raise DiffError(
                f"--ignore {text!r}: expected a dotted JSON path such as data.call.monitoring "
                "('*' matches one segment)"
            )
        return cls(segments)

    def matches(self, path: Path) -> bool:
        return len(path) == len(self.segments) and all(
            p == "*" or p == str(s) for p, s in zip(self.segments, path, strict=True)
        )

    def reaches_below(self, path: Path) -> bool:
        """Whether this pattern could match something strictly inside ``path``."""
        return len(self.segments) > len(path) and all(
            p == "*" or p == str(s) for p, s in zip(self.segments, path, strict=False)
        )

    def __str__(self) -> str:
        return ".".join(self.segments)


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

    def identity(self) -> tuple[str, str, str, str, str]:
        """What noise learning matches on: (step, notification, kind, path, capability)."""
        element = ""
        if self.kind is Kind.CAPABILITY_GAINED:
            element = str(self.b)
        elif self.kind is Kind.CAPABILITY_LOST:
            element = str(self.a)
        return (self.step, self.notification or "", self.kind.value, self.path or "", element)

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


@dataclass(frozen=True, slots=True)
class Step:
    """A canonical step: an exchange (``None`` for unsolicited) and its notifications."""

    key: tuple[Hashable, ...]
    relaxed: tuple[Hashable, ...]
    label: str
    operation: str | None
    exchange: JSON
    notes: tuple[Note, ...]

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
        key=lambda t: (t[0], t[1], t[2]),
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
        Note(key=key, relaxed=key[:3] + key[4:], label=label, doc=doc)
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
    built: list[tuple[tuple[Hashable, ...], tuple[Hashable, ...], str, str | None, JSON]] = []
    all_notes: list[tuple[Note, ...]] = []
    for s in raw:
        exchange = next(it) if s.exchange is not None else None
        notes = _notes([next(it) for _ in s.notifications])
        prefix = f"[{cassette.desktops[s.desktop].name}] " if several else ""
        if s.exchange is not None:
            method = json_at(exchange, "request", "method")
            path = json_at(exchange, "request", "path")
            op = json_at(exchange, "request", "body", "operationName")
            key: tuple[Hashable, ...] = ("exchange", s.desktop, _h(method), _h(path), _h(op))
            relaxed: tuple[Hashable, ...] = ("exchange", s.desktop, _h(method), _h(op))
            label = " ".join(str(v) for v in (op, method, path) if v is not None)
            operation = s.exchange.request.operation_name
        else:
            key = ("unsolicited", s.desktop, notes[0].key if notes else None)
            relaxed = ("unsolicited", s.desktop)
            label, operation = "unsolicited", None
        built.append((key, relaxed, prefix + (label or "exchange"), operation, exchange))
        all_notes.append(notes)
    labels = _numbered([b[2] for b in built])
    return [
        Step(key=k, relaxed=r, label=label, operation=op, exchange=x, notes=notes)
        for (k, r, _, op, x), label, notes in zip(built, labels, all_notes, strict=True)
    ]


# --- comparison -----------------------------------------------------------------------------

_Change = tuple[Kind, Path, JSON, JSON]


def render_path(path: Path) -> str:
    """``("data", "call", "participants", 0, "digits")`` -> ``data.call.participants[0].digits``."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        else:
            out += f".{segment}" if out else segment
    return out


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


def _fields(step: str, note: str | None, a: JSON, b: JSON) -> Iterator[Finding]:
    for kind, path, va, vb in compare(a, b):
        yield Finding(step, note, kind, render_path(path), va, vb)


def align_notes(sa: Step, sb: Step) -> list[Pair]:
    """The notifications of two matched steps, aligned (the text and HTML views share it)."""
    return align(
        [n.key for n in sa.notes],
        [n.key for n in sb.notes],
        [n.relaxed for n in sa.notes],
        [n.relaxed for n in sb.notes],
    )


def _compare_steps(sa: Step, sb: Step) -> Iterator[Finding]:
    step = sa.label
    yield from _fields(step, None, sa.exchange, sb.exchange)
    pairs = align_notes(sa, sb)
    for p in pairs:
        if p.b is None:
            assert p.a is not None
            na = sa.notes[p.a]
            yield Finding(step, na.label, Kind.NOTIFICATION_MISSING, None, na.doc, None)
        elif p.a is None:
            nb = sb.notes[p.b]
            yield Finding(step, nb.label, Kind.NOTIFICATION_EXTRA, None, None, nb.doc)
        else:
            na, nb = sa.notes[p.a], sb.notes[p.b]
            if p.moved:
                yield Finding(step, na.label, Kind.NOTIFICATION_REORDERED, None, p.a + 1, p.b + 1)
            yield from _fields(step, na.label, na.doc, nb.doc)


def diff_steps(a: Sequence[Step], b: Sequence[Step]) -> list[Finding]:
    """The findings of steps ``a`` vs steps ``b``, in step order."""
    pairs = align(
        [s.key for s in a], [s.key for s in b], [s.relaxed for s in a], [s.relaxed for s in b]
    )
    out: list[Finding] = []
    for p in pairs:
        if p.b is None:
            assert p.a is not None
            out.append(Finding(a[p.a].label, None, Kind.STEP_MISSING, None, a[p.a].summary(), None))
        elif p.a is None:
            out.append(Finding(b[p.b].label, None, Kind.STEP_EXTRA, None, None, b[p.b].summary()))
        else:
            if p.moved:
                out.append(Finding(a[p.a].label, None, Kind.STEP_REORDERED, None, p.a + 1, p.b + 1))
            out.extend(_compare_steps(a[p.a], b[p.b]))
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
        a_steps, b_steps = steps_of(a, options), steps_of(b, options)
        findings = diff_steps(a_steps, b_steps)
        dropped = 0
        if noise is not None:
            learned = {f.identity() for f in diff_steps(a_steps, steps_of(noise, options))}
            kept = [f for f in findings if f.identity() not in learned]
            dropped = len(findings) - len(kept)
            findings = kept
    return DiffResult(tuple(findings), len(a_steps), len(b_steps), dropped)
