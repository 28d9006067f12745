"""Presenter controls: step mode, pause/resume, speed, reset, loop and the /_relay/ API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from rawbayeux import collect, connect, handshake, states, subscribe
from relayproc import relay_server

from relay import cassette as cas
from relay.replay import REPLAYER, ReplayOptions, create_app

ROOT = Path(__file__).resolve().parent.parent
SEED_PATH = ROOT / "cassettes" / "two-step-transfer.json"
SEED = cas.load(SEED_PATH)
CALL = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
CONSULT = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000006"
ANSWER = {"operationName": "Answer"}
TRANSFER = {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}}
COMPLETE = {"operationName": "CompleteTransfer"}


async def start(aiohttp_client: Any, **options: Any) -> TestClient:  # type: ignore[type-arg]
    app = create_app(SEED, ReplayOptions(timeout_ms=300, **{"speed": 0, **options}))
    client: TestClient = await aiohttp_client(app)  # type: ignore[type-arg]
    return client


async def desktop(client: TestClient) -> str:  # type: ignore[type-arg]
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/*")
    return cid


async def status(client: TestClient) -> dict[str, Any]:  # type: ignore[type-arg]
    resp = await client.get("/_relay/status")
    assert resp.status == 200
    result: dict[str, Any] = await resp.json()
    return result


async def nothing_comes(client: TestClient, cid: str) -> None:  # type: ignore[type-arg]
    """A held connect that ends at the (short) timeout with no event."""
    assert states(await connect(client, cid)) == []


async def test_step_mode_releases_one_group_per_click(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client, step=True)
    cid = await desktop(client)
    await nothing_comes(client, cid)
    (s,) = (await status(client))["sessions"]
    assert s["waiting_for"] == "presenter"
    assert s["next"]["state"] == "Ringing"
    assert (await client.post("/_relay/release")).status == 200
    assert states(await collect(client, cid, 1)) == ["Ringing"]
    assert (await client.post(CALL, json=ANSWER)).status == 200
    await nothing_comes(client, cid)
    await client.post("/_relay/release", json={"session": s["id"]})
    assert states(await collect(client, cid, 1)) == ["Established"]
    assert (await client.post(CALL, json=TRANSFER)).status == 200
    (s,) = (await status(client))["sessions"]
    assert s["next_group"] == ["n3", "n4"]  # what the page shows will go with the next click
    await client.post("/_relay/release")
    # One click releases the whole group the InitiateTransfer caused.
    assert states(await collect(client, cid, 2)) == ["Held", "Dialing"]
    (s,) = (await status(client))["sessions"]
    assert s["waiting_for"] == "request"
    assert s["next"]["operation"] == "CompleteTransfer"
    assert s["next_group"] == []


async def test_pause_holds_notifications_until_resume(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    assert (await client.post("/_relay/pause")).status == 200
    cid = await desktop(client)
    await nothing_comes(client, cid)
    (s,) = (await status(client))["sessions"]
    assert s["waiting_for"] == "resume"
    assert (await status(client))["paused"] is True
    assert (await client.post("/_relay/resume")).status == 200
    assert states(await collect(client, cid, 1)) == ["Ringing"]


async def test_speed_change_and_bad_bodies(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client, speed=1)
    resp = await client.post("/_relay/speed", json={"speed": 4})
    assert resp.status == 200
    assert (await status(client))["speed"] == 4
    for bad in ({"speed": -1}, {"speed": "fast"}, {"speed": True}, {}):
        resp = await client.post("/_relay/speed", json=bad)
        assert resp.status == 400
        assert "speed" in (await resp.json())["error"]
    resp = await client.post("/_relay/speed", data=b"{nope", headers={"Content-Type": "x"})
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["error"]


async def test_reset_starts_the_scenario_again(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    cid = await desktop(client)
    assert states(await collect(client, cid, 1)) == ["Ringing"]
    assert (await client.post(CALL, json=ANSWER)).status == 200
    assert states(await collect(client, cid, 1)) == ["Established"]
    (s,) = (await status(client))["sessions"]
    assert (await client.post(f"/_relay/sessions/{s['id']}/reset")).status == 200
    assert states(await collect(client, cid, 1)) == ["Ringing"]
    assert (await client.post(CALL, json=ANSWER)).status == 200
    assert (await client.post("/_relay/sessions/nope/reset")).status == 404


async def test_loop_starts_again_after_the_whole_cassette(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client, loop=True)
    cid = await desktop(client)
    for _ in range(2):
        assert states(await collect(client, cid, 1)) == ["Ringing"]
        assert (await client.post(CALL, json=ANSWER)).status == 200
        assert states(await collect(client, cid, 1)) == ["Established"]
        assert (await client.post(CALL, json=TRANSFER)).status == 200
        assert states(await collect(client, cid, 2)) == ["Held", "Dialing"]
        assert (await client.post(CONSULT, json=COMPLETE)).status == 200
        assert states(await collect(client, cid, 2)) == ["Released", "Released"]


async def test_without_loop_a_finished_session_stays_finished(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    cid = await desktop(client)
    await collect(client, cid, 1)
    for path, body, n in ((CALL, ANSWER, 1), (CALL, TRANSFER, 2), (CONSULT, COMPLETE, 2)):
        assert (await client.post(path, json=body)).status == 200
        await collect(client, cid, n)
    await nothing_comes(client, cid)
    (s,) = (await status(client))["sessions"]
    assert s["finished"] is True and s["waiting_for"] is None


async def test_status_lists_misses_and_the_api_is_outside_the_timeline(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    assert (await client.get("/_relay/status")).status == 200
    assert (await client.get("/_relay/timeline")).status == 200
    assert client.app[REPLAYER].sessions == {}
    assert (await client.post(CALL, json={"operationName": "Hold"})).status == 404
    st = await status(client)
    assert st["unmatched_total"] == 1
    assert st["unmatched"][0]["request"] == f"POST {CALL} (Hold)"
    timeline = await (await client.get("/_relay/timeline")).json()
    assert [e["id"] for e in timeline["events"]] == [
        "n1",
        "x1",
        "n2",
        "x2",
        "n3",
        "n4",
        "x3",
        "n5",
        "n6",
    ]
    assert timeline["events"][2]["cause_operation"] == "Answer"


@pytest.mark.parametrize("path", ["/_relay/", "/_relay"])
async def test_control_page_is_served(aiohttp_client: Any, path: str) -> None:
    client = await start(aiohttp_client)
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = await resp.text()
    assert "<title>relay: control</title>" in page
    assert 'fetch("/_relay/"' in page  # it drives the control API of the server it came from
    # Demos are offline: nothing is loaded from elsewhere.
    assert re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) is None


async def test_enter_in_the_terminal_releases_the_next_group() -> None:
    import aiohttp
    import orjson

    async with relay_server(
        "replay",
        str(SEED_PATH),
        *("--port", "0", "--speed", "0", "--step", "--timeout", "500"),
        stdin=asyncio.subprocess.PIPE,
    ) as relay:
        url = relay.url.replace("127.0.0.1", "localhost")
        stdin = relay.process.stdin
        async with aiohttp.ClientSession() as http:
            bx = url + "/api/v2/notifications"

            async def post(messages: Any) -> Any:
                async with http.post(bx, data=orjson.dumps(messages)) as resp:
                    return await resp.json()

            (hs,) = await post([{"channel": "/meta/handshake", "version": "1.0"}])
            cid = hs["clientId"]
            conn = {"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}
            await post([conn])
            await post([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/**"}])
            assert [m["channel"] for m in await post([conn])] == ["/meta/connect"]
            held = asyncio.ensure_future(post([conn]))
            await asyncio.sleep(0.1)
            assert not held.done()
            assert stdin is not None
            stdin.write(b"\n")
            await stdin.drain()
            replies = await asyncio.wait_for(held, 5)
            assert [m["data"]["call"]["state"] for m in replies if "data" in m] == ["Ringing"]


async def test_a_release_while_the_desktop_must_act_says_nothing_was_released(
    aiohttp_client: Any,
) -> None:
    client = await start(aiohttp_client, step=True)
    cid = await desktop(client)
    resp = await client.post("/_relay/release")
    (s,) = (await status(client))["sessions"]
    assert await resp.json() == {"released": [s["id"]]}
    assert states(await collect(client, cid, 1)) == ["Ringing"]
    for body in (None, {"session": s["id"]}):  # the desktop has to answer first
        resp = await client.post("/_relay/release", json=body)
        assert resp.status == 200
        assert await resp.json() == {"released": []}
    assert (await client.post(CALL, json=ANSWER)).status == 200
    await nothing_comes(client, cid)  # those presses were not kept for the Established
    assert (await status(client))["sessions"][0]["waiting_for"] == "presenter"


async def test_release_with_a_session_that_is_not_a_string_is_a_400(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client, step=True)
    await desktop(client)
    for bad in ([], {}, 5, True, ["s1"]):
        resp = await client.post("/_relay/release", json={"session": bad})
        assert resp.status == 400, bad
        assert "session" in (await resp.json())["error"]
    assert (await client.post("/_relay/release", json={"session": None})).status == 200
    assert (await client.post("/_relay/release", json={"session": "nope"})).status == 404
