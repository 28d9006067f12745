"""A cassette as a person reads it: a header, then one aligned line per event in time order.

Pure: ``render(cassette)`` returns the lines; the ``relay show`` command prints them. Every
event line shows its id, so that a notification's cause (an exchange id) can be followed::

      TIME  DESKTOP  ID  KIND    EVENT
     0.000  agent    n1  notify  /v2/me/calls  CallStateChangeMessage StatusChange  call C1  Ringing
    10.000  agent    x1  POST    /api/v2/me/calls/C1  Answer  200 OK (+50 ms)
    10.100  agent    n2  notify  /v2/me/calls  CallStateChangeMessage StatusChange  call C1  ...

An exchange shows its path, operationName and answer (status, delay) or error; a notification
its channel, messageType and notificationType, call id and state, and its cause ("caused by"
the exchange's id and operation, or "unsolicited").

Text taken from the cassette is shown with control characters escaped, so that a cassette can
neither break the one-line-per-event layout nor send escape sequences to the terminal.
"""

from __future__ import annotations

import textwrap

from relay.cassette import Cassette, Desktop, Event, Exchange, Notification

#: The columns every event line shares; what follows depends on the kind of event and is aligned
#: among the events of that kind (a REST path is long, a channel short: one shared column would
#: pad every notification line with the width of the longest path).
COLUMNS = ("TIME", "DESKTOP", "ID", "KIND", "EVENT")
_GAP = "  "
_WRAP = 100  # long header values (the notes) wrap at this width
_NONE = "-"


def render(cassette: Cassette) -> list[str]:
    """The cassette's header and event lines, ready to print."""
    lines = _header(cassette)
    timeline = _timeline(cassette)
    lines.append("")
    if not timeline:
        lines.append("(no events)")
        return lines
    # One index of the exchanges: looking each cause up with Cassette.find made render
    # quadratic (10 s for a 10,000-event cassette).
    exchanges = {x.id: x for d in cassette.desktops for x in d.exchanges()}
    rows: list[Row] = [(COLUMNS[:4], "header", COLUMNS[4:])]
    rows += [_row(exchanges, desktop, event) for desktop, event in timeline]
    lines.extend(_table(rows))
    return lines


def format_ms(ms: int) -> str:
    """Milliseconds since the start as ``seconds.millis``."""
    sign = "-" if ms < 0 else ""
    seconds, millis = divmod(abs(ms), 1000)
    return f"{sign}{seconds}.{millis:03d}"


# --- header ---------------------------------------------------------------------------------


def _header(cassette: Cassette) -> list[str]:
    meta = cassette.meta
    exchanges = [e for d in cassette.desktops for e in d.exchanges()]
    notifications = [n for d in cassette.desktops for n in d.notifications()]
    failed = sum(1 for x in exchanges if x.response is None)
    caused = sum(1 for n in notifications if n.cause is not None)
    times = [e.at_ms for d in cassette.desktops for e in d.events]
    span = f" over {format_ms(max(times) - min(times))} s" if times else ""
    recorded = _clean(meta.recorded_at) or "at an unknown time"
    by = f" by relay {_clean(meta.relay_version)}" if meta.relay_version else ""
    fields: list[tuple[str, list[str]]] = [
        ("upstream", [_clean(meta.upstream) or _NONE]),
        ("recorded", [f"{recorded}{by}"]),
        ("desktops", [_desktop_summary(d) for d in cassette.desktops] or ["none"]),
        (
            "events",
            [
                f"{len(exchanges) + len(notifications)}{span}: "
                f"{_count(len(exchanges), 'exchange')} ({failed} failed), "
                f"{_count(len(notifications), 'notification')} "
                f"({caused} caused, {len(notifications) - caused} unsolicited)"
            ],
        ),
        ("assets", [str(len(cassette.assets))]),
    ]
    if meta.notes:
        fields.append(("notes", [_clean(meta.notes)]))
    width = max(len(name) for name, _ in fields)
    lines = [_clean(meta.title) or "(untitled cassette)"]
    for name, values in fields:
        label = f"  {name.ljust(width)}  "
        wrapped = [
            line
            for value in values
            for line in textwrap.wrap(value, _WRAP - len(label), break_on_hyphens=False) or [""]
        ]
        lines.append(label + wrapped[0])
        lines.extend(" " * len(label) + more for more in wrapped[1:])
    return lines


def _desktop_summary(desktop: Desktop) -> str:
    n_x = sum(1 for _ in desktop.exchanges())
    n_n = sum(1 for _ in desktop.notifications())
    return (
        f"{_clean(desktop.name)} ({_count(n_x, 'exchange')}, {_count(n_n, 'notification')}, "
        f"CometD at {_clean(desktop.bayeux.path)})"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --- events ---------------------------------------------------------------------------------


def _timeline(cassette: Cassette) -> list[tuple[str, Event]]:
    """Every event with its desktop's name, in time order (stable: desktop order, then file)."""
    tagged = [(d.name, e) for d in cassette.desktops for e in d.events]
    return sorted(tagged, key=lambda pair: pair[1].at_ms)


Row = tuple[tuple[str, ...], str, tuple[str, ...]]  # shared cells, kind of event, its cells


def _row(exchanges: dict[str, Exchange], desktop: str, event: Event) -> Row:
    if isinstance(event, Exchange):
        kind, cells = _clean(event.request.method), _exchange_cells(event)
        group = "exchange"
    else:
        kind, cells = "notify", _notification_cells(exchanges, event)
        group = "notification"
    return (format_ms(event.at_ms), _clean(desktop), _clean(event.id), kind), group, cells


def _exchange_cells(x: Exchange) -> tuple[str, ...]:
    """Path, operationName, answer (status and delay, or the error)."""
    req = x.request
    target = req.path
    if req.query:
        target += "?" + "&".join(f"{k}={v}" for k, v in req.query)
    if x.response is not None:
        result = f"{x.response.status} {x.response.reason}".strip()
        if x.response_ms is not None:
            result += f" (+{x.response_ms - x.at_ms} ms)"
        if x.error:
            result += f"; {x.error}"
    else:
        result = f"error: {x.error or 'no response'}"
    return _clean(target), _clean(req.operation_name or _NONE), _clean(result)


def _notification_cells(exchanges: dict[str, Exchange], n: Notification) -> tuple[str, ...]:
    """Channel, messageType and notificationType, call id, call state, cause."""
    data = n.data if isinstance(n.data, dict) else {}
    kinds = [data.get("messageType"), data.get("notificationType")]
    message = " ".join(str(k) for k in kinds if isinstance(k, str | int)) or _NONE
    call = data.get("call")
    call_id = state = _NONE
    if isinstance(call, dict):
        call_id = f"call {call.get('id', '?')}"
        state = str(call.get("state", "?"))
    return tuple(
        _clean(cell) for cell in (n.channel, message, call_id, state, _cause(exchanges, n))
    )


def _cause(exchanges: dict[str, Exchange], n: Notification) -> str:
    if n.cause is None:
        return "unsolicited"
    cause = exchanges.get(n.cause)
    if cause is not None:
        what = cause.request.operation_name or f"{cause.request.method} {cause.request.path}"
        return f"caused by {n.cause} {what}"
    return f"caused by {n.cause}"


# --- layout ---------------------------------------------------------------------------------


def _table(rows: list[Row]) -> list[str]:
    """Align the shared cells across all rows, and each kind's cells across rows of that kind."""
    shared = _widths([head for head, _, _ in rows])
    groups = {group for _, group, _ in rows}  # once per kind, not once per row (quadratic)
    own = {group: _widths([cells for _, g, cells in rows if g == group]) for group in groups}
    out = []
    for head, group, cells in rows:
        parts = [head[0].rjust(shared[0])]  # the time, right-aligned
        parts += [cell.ljust(w) for cell, w in zip(head[1:], shared[1:], strict=True)]
        parts += [cell.ljust(w) for cell, w in zip(cells, own[group], strict=False)]
        out.append(_GAP.join(parts).rstrip())
    return out


def _widths(rows: list[tuple[str, ...]]) -> list[int]:
    return [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]


def _clean(text: str) -> str:
    """``text`` with every non-printable character escaped (newlines, tabs, ESC, ...)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
