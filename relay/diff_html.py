"""``relay diff A B --format html``: the two recordings side by side, the differences highlighted.

Pure: ``page(...)`` returns the HTML as a string, self-contained like ``relay show --html``
(``static/timeline.css`` and ``static/diff.css`` inlined, a few lines of inline script for a
filter, nothing fetched; it works from file://).

It draws what ``relay.diff`` computed, from its public objects: the steps of each side
(``steps_of``, canonical, ignored paths dropped), named and aligned as ``diff`` does
(``named_like``, ``align_steps``, ``align_notes``), and the findings of the ``DiffResult``
attached by position (``Finding.at``, ``Finding.note_at``) to their step and notification (so
``--noise`` and ``--only`` show here as in the text). Two columns, A | B, one band per aligned
step:

- a step only in A is red on the left with a gap on the right ("not in B"); only in B, green on
  the right; a notification missing or extra inside a step, the same;
- a field removed is listed red under A's notification, added green under B's, changed amber on
  both sides with each side's value, each with its JSON path (``data.call.capabilities``);
- capabilities lost are red chips on A's side, gained green chips on B's;
- a step or notification out of order says where it is in each.

A finding that cannot be placed (it should not happen) is listed at the end rather than lost.
Every text from the cassettes goes through ``html.escape``.
"""

from __future__ import annotations

import html
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import orjson

from relay.diff import (
    DiffResult,
    Finding,
    Kind,
    Note,
    Step,
    align_notes,
    align_steps,
    extra_label,
    json_at,
    named_like,
)
from relay.html import document, static_text

_VALUE_WIDTH = 90  # longest JSON value shown before it is cut (the whole is in the tooltip)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _state_class(state: str) -> str:
    token = "".join(ch if ch.isalnum() else "-" for ch in state.lower())[:40]
    return f"rt-state rt-state-{token}"


_At = tuple[int | None, int | None]


class _Findings:
    """The result's findings by where they are (the step's positions in A and B, the
    notification's within it), each handed out once. Labels can repeat; positions cannot."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self._by: dict[tuple[_At, _At | None], deque[Finding]] = defaultdict(deque)
        for f in findings:
            self._by[(f.at, f.note_at)].append(f)

    def take(self, step: _At, note: _At | None) -> list[Finding]:
        queue = self._by.pop((step, note), None)
        return list(queue) if queue else []

    def rest(self) -> list[Finding]:
        return [f for queue in self._by.values() for f in queue]


# --- cells ----------------------------------------------------------------------------------


def _value(value: Any) -> str:
    text = _json(value)
    short = text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"
    return f'<code class="d-val" title="{_e(text)}">{_e(short)}</code>'


def _field_lines(findings: list[Finding], side: str) -> str:
    """The field findings shown on one side: removed on A, added on B, changed on both."""
    out = []
    for f in findings:
        if f.kind in (Kind.FIELD_CHANGED, Kind.STATUS_CHANGED):
            cls, sign, value = "d-changed", "~", f.a if side == "a" else f.b
        elif f.kind is Kind.FIELD_REMOVED and side == "a":
            cls, sign, value = "d-removed", "\u2212", f.a
        elif f.kind is Kind.FIELD_ADDED and side == "b":
            cls, sign, value = "d-added", "+", f.b
        else:
            continue
        out.append(
            f'<li class="{cls}"><span class="d-sign">{sign}</span>'
            f'<code class="d-path">{_e(f.path)}</code> {_value(value)}</li>'
        )
    if not out:
        return ""
    return '<ul class="d-fields">' + "".join(out) + "</ul>"


def _moved(findings: list[Finding], side: str) -> str:
    for f in findings:
        if f.kind in (Kind.STEP_REORDERED, Kind.NOTIFICATION_REORDERED):
            here, there = (f.a, f.b) if side == "a" else (f.b, f.a)
            other = "B" if side == "a" else "A"
            return f'<span class="d-moved">moved: #{_e(here)} here, #{_e(there)} in {other}</span>'
    return ""


def _caps(doc: Any, findings: list[Finding], side: str) -> str:
    caps = json_at(doc, "data", "call", "capabilities")
    if not isinstance(caps, list):
        return ""
    lost = {str(f.a) for f in findings if f.kind is Kind.CAPABILITY_LOST}
    gained = {str(f.b) for f in findings if f.kind is Kind.CAPABILITY_GAINED}
    chips = []
    for c in caps:
        name = str(c)
        if side == "a" and name in lost:
            chips.append(
                f'<span class="rt-chip d-cap-lost" title="lost in B">\u2212{_e(name)}</span>'
            )
        elif side == "b" and name in gained:
            chips.append(f'<span class="rt-chip rt-gained" title="gained in B">+{_e(name)}</span>')
        else:
            chips.append(f'<span class="rt-chip">{_e(name)}</span>')
    return '<div class="d-caps">' + "".join(chips) + "</div>"


def _note_card(note: Note, findings: list[Finding], side: str, status: str) -> str:
    doc = note.doc
    parts = []
    state = json_at(doc, "data", "call", "state")
    if state is not None:
        parts.append(f'<span class="{_state_class(str(state))}">{_e(state)}</span>')
    call = json_at(doc, "data", "call", "id")
    if call is not None:
        parts.append(f'<span class="d-call">{_e(call)}</span>')
    call_type = json_at(doc, "data", "call", "callType")
    if call_type is not None:
        parts.append(f'<span class="d-calltype">{_e(call_type)}</span>')
    channel = json_at(doc, "channel")
    kind = json_at(doc, "data", "notificationType") or json_at(doc, "data", "messageType")
    what = " · ".join(str(x) for x in (channel, kind) if x is not None)
    parts.append(f'<span class="d-channel">{_e(what or note.label)}</span>')
    parts.append(_moved(findings, side))
    return (
        f'<div class="d-note d-{status}" title="{_e(note.label)}">'
        f'<div class="d-note-head"><span class="d-arrow">←</span>{"".join(parts)}</div>'
        f"{_caps(doc, findings, side)}{_field_lines(findings, side)}</div>"
    )


def _step_head(step: Step, findings: list[Finding], side: str, status: str) -> str:
    x = step.exchange
    if x is None:
        head = '<span class="d-unsolicited">unsolicited</span>'
    else:
        method = json_at(x, "request", "method")
        path = json_at(x, "request", "path")
        op = json_at(x, "request", "body", "operationName")
        answer = json_at(x, "response", "status")
        head = (
            f'<span class="d-arrow">→</span><span class="d-method">{_e(method)}</span>'
            + (f'<span class="d-op">{_e(op)}</span>' if op is not None else "")
            + f'<code class="d-target">{_e(path)}</code>'
        )
        if answer is not None:
            changed = any(f.kind is Kind.STATUS_CHANGED for f in findings)
            cls = "d-status d-status-changed" if changed else "d-status"
            head += f'<span class="{cls}">{_e(answer)}</span>'
        elif json_at(x, "error") is not None:
            head += f'<span class="d-status d-status-failed">{_e(json_at(x, "error"))}</span>'
    return (
        f'<div class="d-step-head d-{status}" title="{_e(step.label)}">{head}'
        f"{_moved(findings, side)}{_field_lines(findings, side)}</div>"
    )


def _gap(text: str) -> str:
    return f'<div class="d-gap">{_e(text)}</div>'


# --- bands ----------------------------------------------------------------------------------


def _band(sa: Step | None, sb: Step | None, at: _At, found: _Findings) -> tuple[str, str]:
    """One aligned step as HTML (A and B side by side) and its status."""
    if sa is not None:
        label = sa.label
    else:
        assert sb is not None and at[1] is not None
        label = extra_label(sb, at[1])
    step_findings = found.take(at, None)
    cells: list[tuple[str, str]] = []
    if sa is None or sb is None:
        status = "removed" if sb is None else "added"
        side, step = ("a", sa) if sb is None else ("b", sb)
        assert step is not None
        inner = (
            '<div class="d-stack">'
            + _step_head(step, step_findings, side, status)
            + "".join(_note_card(n, [], side, status) for n in step.notes)
            + "</div>"
        )
        missing = "not in B" if side == "a" else "not in A"
        left, right = (inner, _gap(missing)) if side == "a" else (_gap(missing), inner)
        return _pair_html(label, status, [(left, right)]), status
    changed = bool(step_findings)
    cells.append(
        (
            _step_head(sa, step_findings, "a", "changed" if changed else "same"),
            _step_head(sb, step_findings, "b", "changed" if changed else "same"),
        )
    )
    pairs = align_notes(sa, sb)
    for p in pairs:
        na = sa.notes[p.a] if p.a is not None else None
        nb = sb.notes[p.b] if p.b is not None else None
        fs = found.take(at, (p.a, p.b))
        changed = changed or bool(fs)
        if na is None and nb is not None:
            cells.append((_gap("not in A"), _note_card(nb, fs, "b", "added")))
        elif nb is None and na is not None:
            cells.append((_note_card(na, fs, "a", "removed"), _gap("not in B")))
        elif na is not None and nb is not None:
            status = "changed" if fs else "same"
            cells.append((_note_card(na, fs, "a", status), _note_card(nb, fs, "b", status)))
    status = "changed" if changed else "same"
    return _pair_html(label, status, cells), status


def _pair_html(label: str, status: str, cells: list[tuple[str, str]]) -> str:
    rows = "".join(f'<div class="d-cell">{a}</div><div class="d-cell">{b}</div>' for a, b in cells)
    return (
        f'<section class="d-band d-band-{status}" data-status="{status}">'
        f'<h2 class="d-band-title"><span class="d-badge d-badge-{status}">{status}</span>'
        f"{_e(label)}</h2>"
        f'<div class="d-grid">{rows}</div></section>'
    )


def _leftovers(findings: list[Finding]) -> str:
    if not findings:
        return ""
    items = "".join(
        f"<li><b>{_e(f.kind.value)}</b> {_e(f.step)}"
        + (f" / {_e(f.notification)}" if f.notification else "")
        + (f" <code>{_e(f.path)}</code>" if f.path else "")
        + f" {_value(f.a)} → {_value(f.b)}</li>"
        for f in findings
    )
    head = '<section class="d-band d-band-changed"><h2>Other differences</h2>'
    return f"{head}<ul>{items}</ul></section>"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def page(
    result: DiffResult,
    steps_a: Sequence[Step],
    steps_b: Sequence[Step],
    *,
    a_name: str,
    b_name: str,
    a_title: str = "",
    b_title: str = "",
) -> str:
    """The HTML page of a comparison: ``steps_*`` are ``steps_of`` with the options it used."""
    found = _Findings(result.findings)
    steps_b = named_like(steps_a, steps_b)  # as relay.diff.diff compares them
    bands: list[str] = []
    counts: dict[str, int] = defaultdict(int)
    for p in align_steps(steps_a, steps_b):
        band, status = _band(
            steps_a[p.a] if p.a is not None else None,
            steps_b[p.b] if p.b is not None else None,
            (p.a, p.b),
            found,
        )
        bands.append(band)
        counts[status] += 1
    noise = f" ({result.noise_dropped} learned as noise)" if result.noise_dropped else ""
    if result.equivalent:
        summary = f"equivalent: no differences in {_plural(result.steps_a, 'step')}{noise}"
    else:
        steps = len({(f.at, f.step) for f in result.findings})
        summary = f"{_plural(len(result.findings), 'difference')} in {_plural(steps, 'step')}"
        summary += noise
    tally = " · ".join(
        f'<span class="d-badge d-badge-{s}">{counts[s]} {s}</span>'
        for s in ("changed", "removed", "added", "same")
        if counts[s]
    )
    side = (
        '<div class="d-side"><span class="d-letter">{letter}</span><code>{name}</code>'
        '<span class="d-title">{title}</span></div>'
    )
    body = _BODY.format(
        a=side.format(letter="A", name=_e(a_name), title=_e(a_title)),
        b=side.format(letter="B", name=_e(b_name), title=_e(b_title)),
        summary=_e(summary),
        tally=tally,
        bands="\n".join(bands) + _leftovers(found.rest()),
    )
    return document(
        title=f"relay diff {a_name} {b_name}",
        generator="relay diff --format html",
        css=static_text("timeline.css") + static_text("diff.css"),
        body_class="d-page",
        body=body,
    )


_BODY = """<header class="d-header">
<h1>relay diff</h1>
<div class="d-sides">{a}{b}</div>
<p class="d-summary"><b>{summary}</b> {tally}</p>
<p class="d-legend"><span class="d-removed">&minus; only in A</span>
<span class="d-added">+ only in B</span> <span class="d-changed">~ changed</span>
<label><input type="checkbox" id="d-only"> only steps with differences</label></p>
</header>
<div class="d-columns"><div>A</div><div>B</div></div>
<main id="d-bands">
{bands}
</main>
<script>
document.getElementById("d-only").addEventListener("change", function (e) {{
  document.getElementById("d-bands").classList.toggle("d-only", e.target.checked);
}});
</script>
"""
