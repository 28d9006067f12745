"""The official CometD JavaScript client (npm cometd + cometd-nodejs-client) against
`relay replay`: the issue's acceptance test, over long-polling and over WebSocket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import jspeers
import pytest
from relayproc import relay_server

pytestmark = jspeers.node_marks

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "cassettes" / "two-step-transfer.json"


def expected(base: str) -> list[dict[str, object]]:
    """The seed's notifications as a client of relay at ``base`` must see them."""
    import json

    raw = json.dumps(jspeers.cassette_notifications(SEED))
    return json.loads(raw.replace("http://127.0.0.1:8080", base))  # type: ignore[no-any-return]


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_official_client_gets_exactly_the_seed_notifications(transport: str) -> None:
    async with relay_server("replay", str(SEED), "--port", "0", "--speed", "0") as relay:
        url = relay.url.replace("127.0.0.1", "localhost")
        result = await jspeers.run_desktop(url, transport=transport, count=6)
    assert result.notifications == expected(url)
    # The REST operations were sent as the notifications arrived, and all answered.
    assert [
        (r["path"].rsplit("/", 1)[1][-1], r["body"]["operationName"], r["status"])
        for r in result.rest
    ] == [
        ("5", "Answer", 200),
        ("5", "InitiateTransfer", 200),
        ("6", "CompleteTransfer", 200),
    ]


async def test_two_official_desktops_at_once() -> None:
    async with relay_server("replay", str(SEED), "--port", "0", "--speed", "0") as relay:
        url = relay.url.replace("127.0.0.1", "localhost")
        a, b = await asyncio.gather(
            jspeers.run_desktop(url, transport="long-polling", count=6),
            jspeers.run_desktop(url, transport="websocket", count=6),
        )
    assert a.notifications == expected(url)
    assert b.notifications == expected(url)


async def test_recorded_pace_at_high_speed() -> None:
    # --speed 100: the 100 ms gaps become 1 ms; order and content are unchanged.
    async with relay_server("replay", str(SEED), "--port", "0", "--speed", "100") as relay:
        url = relay.url.replace("127.0.0.1", "localhost")
        result = await jspeers.run_desktop(url, transport="websocket", count=6)
    assert result.notifications == expected(url)
