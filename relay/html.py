"""The cassette as a sequence view: the JSON model the renderer draws, and the self-contained page.

Pure: ``model(cassette)`` returns plain data; ``page(cassette)`` returns the HTML of
``relay show CASSETTE --html OUT.html`` as a string. One renderer draws the model, in plain
JavaScript (``relay/static/timeline.js`` and ``timeline.css``): the page inlines it, the control
page at ``/_relay/`` loads it from relay and feeds it ``GET /_relay/timeline`` (the same model).

The model::

    {"title", "upstream", "recorded_at", "relay_version", "notes",
     "lanes": [{"name": "agent", "kind": "desktop"}, ..., {"name": "server", "kind": "server"}],
     "stats": {"events", "exchanges", "failed", "notifications", "caused", "unsolicited",
               "span_ms"},
     "calls": [{"id": "011DJV5JI898NB2L04000VTAES000005", "short": "…0005"}, ...],
     "events": [<row>, ...],     # time order, across desktops
     "links": [{"cause": "x2", "rows": [3, 4, 5], "track": 0}, ...],
     "tracks": 1}

A row is ``relay.summary.summarize(event)`` (kind, method, path, operation, status, channel,
call_id, state, capabilities, cause, cause_operation, ...) plus what drawing needs: ``index``,
``desktop`` (its lane), ``time`` (seconds.millis), ``delta_ms``, ``label`` (the console's
line); for an exchange ``target``/``target_short`` (path and query, call ids shortened),
``reason``, ``latency_ms``, ``failed`` and ``caused`` (the ids of the notifications it caused);
for a notification ``call_short``, ``call_index``, ``unsolicited``, ``cause_index`` (the row of
the exchange that caused it, when drawn) and the capabilities ``gained``/``lost`` since the
previous notification about the same call.

A link joins an exchange's row to the rows of the notifications it caused; ``track`` is its
column in the gutter, given greedily in row order so that links that overlap in time sit side
by side (linear in rows x tracks, never quadratic in rows).

Cassette text reaches the page only as JSON data (the renderer writes it with ``textContent``)
or through ``html.escape``; the JSON is embedded with ``<``, ``>`` and ``&`` escaped, so that no
value can close the ``<script>`` element it sits in.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import orjson

from relay.cassette import Cassette, Desktop, Event, Exchange, Notification
from relay.show import format_ms
from relay.summary import call_of, one_line, operations_of, summarize

#: A call id is shown by the shortest suffix (at least this long) that tells the cassette's
#: calls apart; GWS call ids share a long prefix (011DJV5JI898NB2L04000VTAES00000{5,6}).
MIN_SHORT = 4
ELLIPSIS = "…"


def model(cassette: Cassette, desktops: Sequence[Desktop] | None = None) -> dict[str, Any]:
    """The JSON-ready model of the sequence view of ``desktops`` (default: all of them)."""
    chosen = list(cassette.desktops if desktops is None else desktops)
    tagged = sorted(
        ((i, e) for i, d in enumerate(chosen) for e in d.events), key=lambda t: t[1].at_ms
    )
    calls = _calls([e for _, e in tagged])
    short = {c["id"]: c["short"] for c in calls}
    call_index = {c["id"]: i for i, c in enumerate(calls)}
    operations = operations_of(cassette)
    rows: list[dict[str, Any]] = []
    row_of: dict[str, int] = {}
    last_caps: dict[str, list[str]] = {}
    previous: int | None = None
    for lane, event in tagged:
        row = summarize(event, operations)
        row.update(
            index=len(rows),
            desktop=lane,
            desktop_name=chosen[lane].name,
            time=format_ms(event.at_ms),
            delta_ms=None if previous is None else event.at_ms - previous,
            label=one_line(event, operations),
        )
        previous = event.at_ms
        if isinstance(event, Exchange):
            _exchange_row(row, event, short)
        else:
            _notification_row(row, event, short, call_index, last_caps)
        row_of[event.id] = row["index"]
        rows.append(row)
    links = _links(rows, row_of)
    tracks = 1 + max((link["track"] for link in links), default=-1)
    return {
        "title": cassette.meta.title,
        "upstream": cassette.meta.upstream,
        "recorded_at": cassette.meta.recorded_at,
        "relay_version": cassette.meta.relay_version,
        "notes": cassette.meta.notes,
        "lanes": [{"name": d.name, "kind": "desktop"} for d in chosen]
        + [{"name": "server", "kind": "server"}],
        "stats": _stats(rows),
        "calls": calls,
        "events": rows,
        "links": links,
        "tracks": tracks,
    }


def _exchange_row(row: dict[str, Any], x: Exchange, short: dict[str, str]) -> None:
    target = x.request.path
    if x.request.query:
        target += "?" + "&".join(f"{k}={v}" for k, v in x.request.query)
    row["target"] = target
    row["target_short"] = _shorten_in(target, short)
    if x.response is not None:
        row["reason"] = x.response.reason
    row["latency_ms"] = None if x.response_ms is None else x.response_ms - x.at_ms
    row["failed"] = x.response is None or x.response.status >= 400 or bool(x.error)
    row["caused"] = []


def _notification_row(
    row: dict[str, Any],
    n: Notification,
    short: dict[str, str],
    call_index: dict[str, int],
    last_caps: dict[str, list[str]],
) -> None:
    row["unsolicited"] = n.cause is None
    call_id = row.get("call_id")
    if call_id is None:
        return
    row["call_short"] = short.get(call_id, call_id)
    row["call_index"] = call_index.get(call_id)
    caps = row.get("capabilities")
    if caps is None:
        return
    before = last_caps.get(call_id)
    if before is not None:
        row["gained"] = [c for c in caps if c not in before]
        row["lost"] = [c for c in before if c not in caps]
    last_caps[call_id] = caps


def _calls(events: list[Event]) -> list[dict[str, str]]:
    """Every call id the events mention (notifications, then REST paths), with a short form."""
    ids: list[str] = []
    seen: set[str] = set()
    for e in events:
        found: list[str] = []
        if isinstance(e, Notification):
            call = call_of(e.data)
            if call is not None and isinstance(call.get("id"), str):
                found.append(call["id"])
        else:
            parts = e.request.path.split("/")
            found += [parts[i + 1] for i, p in enumerate(parts[:-1]) if p == "calls"]
        for c in found:
            if c and c not in seen:
                seen.add(c)
                ids.append(c)
    return [{"id": c, "short": s} for c, s in zip(ids, short_ids(ids), strict=True)]


def short_ids(ids: Sequence[str]) -> list[str]:
    """``…`` and the shortest common-length suffix (>= MIN_SHORT) that tells ``ids`` apart."""
    unique = set(ids)
    longest = max((len(i) for i in unique), default=0)
    n = MIN_SHORT
    while n < longest and len({i[-n:] for i in unique}) < len(unique):
        n += 1
    return [i if len(i) <= n + 2 else ELLIPSIS + i[-n:] for i in ids]


_TOKEN = re.compile(r"[^/?&=#;]+")


def _shorten_in(text: str, short: dict[str, str]) -> str:
    """``text`` (a path and query) with each segment or value that is a known call id shortened;
    one pass, whatever the number of calls."""
    return _TOKEN.sub(lambda m: short.get(m.group(0), m.group(0)), text)


def _links(rows: list[dict[str, Any]], row_of: dict[str, int]) -> list[dict[str, Any]]:
    """One link per exchange with caused notifications drawn, each in a gutter track."""
    members: dict[str, list[int]] = {}
    for row in rows:
        cause = row.get("cause")
        if row["kind"] != "notification" or cause is None or cause not in row_of:
            continue
        cause_row = rows[row_of[cause]]
        cause_row["caused"].append(row["id"])
        row["cause_index"] = cause_row["index"]
        members.setdefault(cause, [cause_row["index"]]).append(row["index"])
    groups = sorted(((sorted(idx), cause) for cause, idx in members.items()), key=lambda g: g[0][0])
    links: list[dict[str, Any]] = []
    track_end: list[int] = []  # the last row of each track's latest link
    for number, (members_rows, cause) in enumerate(groups):
        first, last = members_rows[0], members_rows[-1]
        track = next((t for t, end in enumerate(track_end) if end < first), len(track_end))
        if track == len(track_end):
            track_end.append(last)
        else:
            track_end[track] = last
        links.append({"cause": cause, "rows": members_rows, "track": track})
        for i in members_rows:
            rows[i]["link"] = number
    return links


def _stats(rows: list[dict[str, Any]]) -> dict[str, int]:
    exchanges = [r for r in rows if r["kind"] == "exchange"]
    notifications = [r for r in rows if r["kind"] == "notification"]
    times = [r["at_ms"] for r in rows]
    return {
        "events": len(rows),
        "exchanges": len(exchanges),
        "failed": sum(1 for r in exchanges if r["failed"]),
        "notifications": len(notifications),
        "caused": sum(1 for r in notifications if not r["unsolicited"]),
        "unsolicited": sum(1 for r in notifications if r["unsolicited"]),
        "span_ms": max(times) - min(times) if times else 0,
    }


# --- the page -------------------------------------------------------------------------------


def static_text(name: str) -> str:
    """A file of ``relay/static`` (the renderer's JS and CSS)."""
    return resources.files("relay").joinpath("static", name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` only occur inside JSON strings, where ``\\u003c`` means the same;
    so ``</script>`` and ``<!--`` in cassette text cannot end or confuse the element.
    """
    text = orjson.dumps(value).decode()
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def inline_script(source: str) -> str:
    """Our own JS, checked before it is inlined (it must not end its element early)."""
    if "</script" in source.lower() or "<!--" in source:
        raise ValueError("inlined script contains </script or <!--")
    return source


#: Nothing may be fetched: no fonts, images, scripts or connections (the page is a file).
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def document(*, title: str, generator: str, css: str, body_class: str, body: str) -> str:
    """A self-contained HTML page: the CSS inlined, nothing fetched (``CSP``). ``title`` is
    text (escaped here); ``css`` and ``body`` are markup the caller built safely."""
    return (
        "<!doctype html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{html.escape(generator)}">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{css}\n</style>\n"
        "</head>\n"
        f'<body class="{body_class}">\n{body}</body>\n'
        "</html>\n"
    )


_BODY = """<div id="rt-header"></div>
<div id="rt-view"></div>
<script type="application/json" id="rt-data">{data}</script>
<script>
{js}
(function () {{
  "use strict";
  const data = JSON.parse(document.getElementById("rt-data").textContent);
  const view = document.getElementById("rt-view");
  RelayTimeline.render(view, data);
  RelayTimeline.header(document.getElementById("rt-header"), data, view);
}})();
</script>
"""


def page(cassette: Cassette) -> str:
    """The self-contained HTML page of ``relay show --html``: no network, works from file://."""
    title = cassette.meta.title or "(untitled cassette)"
    body = _BODY.format(
        data=script_json(model(cassette)), js=inline_script(static_text("timeline.js"))
    )
    return document(
        title=f"{title} · relay show",
        generator="relay show --html",
        css=static_text("timeline.css"),
        body_class="rt-page",
        body=body,
    )
