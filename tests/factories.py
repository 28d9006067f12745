"""Small keyword-only builders for the cassette model, shared by the core's unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relay import cassette as cm

ROOT = Path(__file__).resolve().parent.parent
SEED_PATH = ROOT / "cassettes" / "two-step-transfer.json"

CALL = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
CONSULT = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000006"


def body(*, json: Any = None, text: str | None = None, base64: str | None = None) -> cm.Body | None:
    """One body from exactly one of its kinds; ``None`` (no body) when none is given."""
    if text is not None:
        return cm.Body("text", text)
    if base64 is not None:
        return cm.Body("base64", base64)
    if json is not None:
        return cm.Body.json(json)
    return None


def request(
    *,
    method: str = "POST",
    path: str = CALL,
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | None = None,
    json: Any = None,
    text: str | None = None,
    base64: str | None = None,
) -> cm.Request:
    return cm.Request(
        method=method,
        path=path,
        query=list(query or []),
        headers=list(headers or []),
        body=body(json=json, text=text, base64=base64),
    )


def exchange(
    *,
    id: str = "x1",
    at_ms: int = 0,
    method: str = "POST",
    path: str = CALL,
    query: list[tuple[str, str]] | None = None,
    json: Any = None,
    text: str | None = None,
    answer: Any = None,
    status: int = 200,
) -> cm.Exchange:
    """An exchange; ``answer`` is the response's JSON body (default ``{"statusCode": 0}``)."""
    return cm.Exchange(
        id=id,
        at_ms=at_ms,
        request=request(method=method, path=path, query=query, json=json, text=text),
        response=cm.Response(
            status=status,
            reason="OK",
            headers=[("Content-Type", "application/json")],
            body=cm.Body.json({"statusCode": 0} if answer is None else answer),
        ),
        response_ms=at_ms + 50,
    )


def notification(
    *,
    id: str = "n1",
    at_ms: int = 0,
    channel: str = "/v2/me/calls",
    state: str = "Ringing",
    cause: str | None = None,
) -> cm.Notification:
    return cm.Notification(
        id=id,
        at_ms=at_ms,
        channel=channel,
        message={
            "channel": channel,
            "data": {"messageType": "CallStateChangeMessage", "call": {"state": state}},
        },
        cause=cause,
    )


def desktop(*, name: str = "agent", events: list[cm.Event] | None = None) -> cm.Desktop:
    return cm.Desktop(name=name, events=list(events or []))


def seed_desktop() -> cm.Desktop:
    """The only desktop of ``cassettes/two-step-transfer.json`` (loaded fresh each time)."""
    return cm.load(SEED_PATH).desktop()
