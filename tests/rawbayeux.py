"""A raw Bayeux client for tests: exact messages over HTTP, nothing hidden."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import TestClient

BAYEUX = "/api/v2/notifications"


async def bayeux(client: TestClient, messages: Any, **kw: Any) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    resp = await client.post(BAYEUX, data=orjson.dumps(messages), **kw)
    assert resp.status == 200, await resp.text()
    result: list[dict[str, Any]] = await resp.json()
    return result


async def handshake(client: TestClient, **kw: Any) -> str:  # type: ignore[type-arg]
    (reply,) = await bayeux(
        client,
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "id": "1",
                "supportedConnectionTypes": ["long-polling"],
            }
        ],
        **kw,
    )
    assert reply["successful"] is True
    client_id: str = reply["clientId"]
    return client_id


async def connect(client: TestClient, client_id: str, **kw: Any) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    return await bayeux(
        client,
        [
            {
                "channel": "/meta/connect",
                "clientId": client_id,
                "connectionType": "long-polling",
                "id": "c",
            }
        ],
        **kw,
    )


async def subscribe(client: TestClient, client_id: str, *subs: str) -> None:  # type: ignore[type-arg]
    replies = await bayeux(
        client,
        [
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": s, "id": str(i)}
            for i, s in enumerate(subs)
        ],
    )
    assert [r["subscription"] for r in replies if r["channel"] == "/meta/subscribe"] == list(subs)


def events(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if not m["channel"].startswith("/meta/")]


def states(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["call"]["state"] for m in events(messages)]


async def collect(client: TestClient, client_id: str, count: int) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    got: list[dict[str, Any]] = []
    for _ in range(count + 5):
        got += events(await connect(client, client_id))
        if len(got) >= count:
            break
    return got


async def ws_handshake(ws: Any) -> dict[str, Any]:
    """Handshake over an open WebSocket; the reply."""
    message = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "id": "1",
        "supportedConnectionTypes": ["websocket"],
    }
    await ws.send_str(orjson.dumps([message]).decode())
    (reply,) = orjson.loads(await ws.receive_str())
    result: dict[str, Any] = reply
    return result
