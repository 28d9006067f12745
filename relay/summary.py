"""What a person wants to know about an event, as plain data.

One place digs into GWS payloads (``data.call.id``, ``data.notificationType``, ...) for every
view: the replay console, the control API and page, the HTML timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.cassette import Cassette, Event, Exchange


def call_of(data: Any) -> dict[str, Any] | None:
    """The ``call`` object of a GWS notification's data, if it has one."""
    if isinstance(data, dict) and isinstance(data.get("call"), dict):
        call: dict[str, Any] = data["call"]
        return call
    return None


def operations_of(cassette: Cassette) -> dict[str, str]:
    """Each exchange's id -> its operationName (those that have one): build once, look up
    often."""
    return {
        e.id: e.request.operation_name
        for d in cassette.desktops
        for e in d.exchanges()
        if e.request.operation_name
    }


def summarize(event: Event, operations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A flat, JSON-ready description of an event (keys absent when unknown).

    ``operations`` (from :func:`operations_of`) names a notification's cause."""
    out: dict[str, Any] = {"id": event.id, "at_ms": event.at_ms}
    if isinstance(event, Exchange):
        out["kind"] = "exchange"
        out["method"] = event.request.method
        out["path"] = event.request.path
        if event.request.operation_name:
            out["operation"] = event.request.operation_name
        if event.response is not None:
            out["status"] = event.response.status
        if event.error:
            out["error"] = event.error
        return out
    out["kind"] = "notification"
    out["channel"] = event.channel
    data = event.data
    if isinstance(data, dict):
        for key, name in (
            ("messageType", "message_type"),
            ("notificationType", "notification_type"),
        ):
            if isinstance(data.get(key), str):
                out[name] = data[key]
    call = call_of(data)
    if call is not None:
        for key, name in (("id", "call_id"), ("state", "state"), ("callType", "call_type")):
            if isinstance(call.get(key), str):
                out[name] = call[key]
        if isinstance(call.get("capabilities"), list):
            out["capabilities"] = [c for c in call["capabilities"] if isinstance(c, str)]
    out["cause"] = event.cause
    if event.cause is not None and operations is not None and event.cause in operations:
        out["cause_operation"] = operations[event.cause]
    return out


def one_line(event: Event, operations: Mapping[str, str] | None = None) -> str:
    """``n2 /v2/me/calls StatusChange 011DJ…005 Established (caused by x1 Answer)``."""
    s = summarize(event, operations)
    if isinstance(event, Exchange):
        parts = [s["id"], s["method"], s["path"]]
        if "operation" in s:
            parts.append(f"({s['operation']})")
        parts.append(str(s.get("status", s.get("error", "?"))))
        return " ".join(parts)
    parts = [s["id"], s["channel"]]
    parts += [s[k] for k in ("notification_type", "call_id", "state") if k in s]
    if event.cause is None:
        parts.append("(unsolicited)")
    else:
        op = f" {s['cause_operation']}" if "cause_operation" in s else ""
        parts.append(f"(caused by {event.cause}{op})")
    return " ".join(parts)
