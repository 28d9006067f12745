"""Render a diff: text a person reads in a terminal, JSON for CI.

Text is grouped by step, then by notification, one line per finding::

    InitiateTransfer POST /api/v2/me/calls/<call-1>
      /v2/me/calls StatusChange Held <call-1>
        - capability-lost        data.call.capabilities  SwapCalls
        + field-added            data.extensions  {"BusinessCall":0,"WrapUpTime":0}

and ends with a summary line. ``+`` is only in B, ``-`` only in A, ``~`` in both but different.
Every string from the cassettes (labels, paths, names, values) is shown with its non-printable
characters escaped, as ``relay show`` does, so that a recorded newline or ESC cannot forge a
line or drive the terminal. Colour (ANSI) is added only when asked for; the CLI asks and lets
click strip it when standard output is not a terminal.

JSON is ``{"differences": [{"step", "notification", "kind", "path", "a", "b"}, ...]}``, findings
in step order, keys sorted, two-space indent: the same inputs give the same bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from relay.diff import DiffResult, Finding, Kind
from relay.show import _clean as clean

_SIGNS: dict[Kind, str] = {
    Kind.STEP_MISSING: "-",
    Kind.STEP_EXTRA: "+",
    Kind.STEP_REORDERED: "~",
    Kind.NOTIFICATION_MISSING: "-",
    Kind.NOTIFICATION_EXTRA: "+",
    Kind.NOTIFICATION_REORDERED: "~",
    Kind.FIELD_ADDED: "+",
    Kind.FIELD_REMOVED: "-",
    Kind.FIELD_CHANGED: "~",
    Kind.CAPABILITY_GAINED: "+",
    Kind.CAPABILITY_LOST: "-",
    Kind.STATUS_CHANGED: "~",
}
_COLOURS = {"+": "32", "-": "31", "~": "33"}  # green, red, yellow
_BOLD = "1"
_WIDTH = 80  # longest value shown before it is cut


def _style(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def _value(value: Any) -> str:
    text = clean(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _detail(f: Finding) -> str:
    path = clean(f.path or "")
    match f.kind:
        case Kind.STEP_MISSING:
            return "only in A" + _held(f.a)
        case Kind.STEP_EXTRA:
            return "only in B" + _held(f.b)
        case Kind.NOTIFICATION_MISSING:
            return "only in A"
        case Kind.NOTIFICATION_EXTRA:
            return "only in B"
        case Kind.STEP_REORDERED | Kind.NOTIFICATION_REORDERED:
            return f"position {f.a} in A, {f.b} in B"
        case Kind.CAPABILITY_GAINED:
            return f"{path}  {clean(str(f.b))}"
        case Kind.CAPABILITY_LOST:
            return f"{path}  {clean(str(f.a))}"
        case Kind.FIELD_ADDED:
            return f"{path}  {_value(f.b)}"
        case Kind.FIELD_REMOVED:
            return f"{path}  {_value(f.a)}"
        case _:
            return f"{path}  {_value(f.a)} -> {_value(f.b)}"


def _held(summary: Any) -> str:
    """What a missing or extra step held: its notifications."""
    notes = summary.get("notifications") if isinstance(summary, dict) else None
    return f" (notifications: {'; '.join(clean(str(n)) for n in notes)})" if notes else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render_text(result: DiffResult, *, a_name: str, b_name: str, color: bool = False) -> str:
    """The findings grouped by step and notification, then a summary line."""
    lines = [f"a: {clean(a_name)}", f"b: {clean(b_name)}"]
    # Grouped by where the step and notification are, not by label: labels can repeat.
    step: tuple[object, ...] | None = None
    note: tuple[object, ...] | None = None
    for f in result.findings:
        if (f.at, f.step) != step:
            step, note = (f.at, f.step), None
            lines.append(_style(clean(f.step), _BOLD, color))
        where = (f.note_at, f.notification)
        if f.notification is not None and where != note:
            lines.append("  " + clean(f.notification))
        note = where
        indent = "    " if f.notification is not None else "  "
        sign = _SIGNS[f.kind]
        head = _style(f"{sign} {f.kind.value:<22}", _COLOURS[sign], color)
        lines.append(f"{indent}{head} {_detail(f)}")
    steps = len({(f.at, f.step) for f in result.findings})
    noise = f" ({result.noise_dropped} learned as noise)" if result.noise_dropped else ""
    if result.equivalent:
        summary = f"equivalent: no differences in {_plural(result.steps_a, 'step')}{noise}"
    else:
        summary = (
            f"{_plural(len(result.findings), 'difference')} in {_plural(steps, 'step')}{noise}"
        )
    lines.append(summary)
    return "\n".join(lines) + "\n"


def render_json(result: DiffResult) -> str:
    """``{"differences": [...]}``: deterministic, for CI."""
    data = {"differences": [f.to_dict() for f in result.findings]}
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n"
