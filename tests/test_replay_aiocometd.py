"""A real asyncio CometD client (aiocometd-noloop) against the replay server on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiocometd_noloop import Client, ConnectionType

from relay import cassette as cas
from relay.replay import REPLAYER, ReplayOptions, create_app

ROOT = Path(__file__).resolve().parent.parent
SEED_PATH = ROOT / "cassettes" / "two-step-transfer.json"
SEED = cas.load(SEED_PATH)

TRANSPORTS = {"long-polling": ConnectionType.LONG_POLLING, "websocket": ConnectionType.WEBSOCKET}


def expected_messages(origin: str) -> list[dict[str, Any]]:
    """The seed's notifications as a client at ``origin`` must see them."""
    raw = orjson.dumps([n.message for n in SEED.desktops[0].notifications()])
    result: list[dict[str, Any]] = orjson.loads(
        raw.replace(b"http://127.0.0.1:8080", origin.encode())
    )
    return result


def operation_for(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """What an agent does on a notification (the seed's Sample 2)."""
    call = data["call"]
    path = f"/api/v2/me/calls/{call['id']}"
    if call["state"] == "Ringing":
        return path, {"operationName": "Answer"}
    if call["state"] == "Established" and call["callType"] != "Consult":
        return path, {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}}
    if call["state"] == "Dialing" and call["callType"] == "Consult":
        return path, {"operationName": "CompleteTransfer"}
    return None


async def run_desktop(base: str, transport: str) -> list[dict[str, Any]]:
    """An agent desktop: one cookie jar for REST and CometD, like a browser."""
    http = aiohttp.ClientSession()  # closed by the CometD client on exit
    client = Client(f"{base}/api/v2/notifications", connection_types=[TRANSPORTS[transport]])
    # aiocometd makes its own session lazily; give it ours so both kinds share the cookies.
    client._http_session = http
    received: list[dict[str, Any]] = []
    async with client:
        await client.subscribe("/v2/me/*")
        async for message in client:
            received.append(message)
            op = operation_for(message["data"])
            if op is not None:
                async with http.post(base + op[0], json=op[1]) as resp:
                    assert resp.status == 200, await resp.text()
            if len(received) == 6:
                break
    return received


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    return await aiohttp_server(create_app(SEED, ReplayOptions(speed=0, timeout_ms=5000)))


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_aiocometd_receives_the_seed_notifications(server: Any, transport: str) -> None:
    base = f"http://localhost:{server.port}"
    received = await asyncio.wait_for(run_desktop(base, transport), 30)
    assert received == expected_messages(base)


async def test_two_desktops_replay_at_once_independently(server: Any) -> None:
    base = f"http://localhost:{server.port}"
    a, b = await asyncio.wait_for(
        asyncio.gather(run_desktop(base, "long-polling"), run_desktop(base, "websocket")), 40
    )
    assert a == expected_messages(base)
    assert b == expected_messages(base)
    assert len(server.app[REPLAYER].sessions) == 2
