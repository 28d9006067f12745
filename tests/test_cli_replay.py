"""`relay replay` as a user runs it: a subprocess on loopback, its output, its exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest
from relayproc import Served, relay_server, run_relay

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "cassettes" / "two-step-transfer.json"


def replaying(*args: str) -> contextlib.AbstractAsyncContextManager[Served]:
    return relay_server("replay", *args)


async def run(*args: str) -> tuple[int, str, str]:
    return await run_relay(*args)


async def test_listening_line_then_a_line_per_exchange_and_a_quick_stop() -> None:
    async with replaying(str(SEED), "--port", "0", "--speed", "0", "--timeout", "60000") as relay:
        base = relay.url
        async with aiohttp.ClientSession() as http:
            url = base + "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
            async with http.post(url, json={"operationName": "Answer"}) as resp:
                assert resp.status == 200
                assert await resp.json() == {"statusCode": 0}
            hs = [{"channel": "/meta/handshake", "version": "1.0", "id": "1"}]
            async with http.post(base + "/api/v2/notifications", data=orjson.dumps(hs)) as resp:
                cid = (await resp.json())[0]["clientId"]
            connect = [
                {
                    "channel": "/meta/connect",
                    "clientId": cid,
                    "id": "2",
                    "connectionType": "long-polling",
                }
            ]
            async with http.post(base + "/api/v2/notifications", data=orjson.dumps(connect)):
                pass
            # This connect is held for up to 60 s; SIGTERM must release it and stop at once.
            held = asyncio.ensure_future(
                http.post(base + "/api/v2/notifications", data=orjson.dumps(connect))
            )
            await asyncio.sleep(0.2)
            assert not held.done()
            relay.process.send_signal(signal.SIGTERM)
            resp = await asyncio.wait_for(held, 10)
            assert resp.status == 200
            (reply,) = await resp.json()
            assert reply["channel"] == "/meta/connect"
            assert reply["advice"]["reconnect"] == "none"
            resp.release()
        assert await relay.wait(timeout=10) == 0
        rest = relay.stdout.text
        assert "-> POST /api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005 (Answer) 200 [x1]" in rest


async def test_quiet_prints_only_the_listening_line_and_errors() -> None:
    async with replaying(str(SEED), "--port", "0", "--quiet") as relay:
        base = relay.url
        async with aiohttp.ClientSession() as http:
            url = base + "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
            async with http.post(url, json={"operationName": "Answer"}) as resp:
                assert resp.status == 200
            async with http.post(url, json={"operationName": "Hold"}) as resp:
                assert resp.status == 404
        assert await relay.stop(signal.SIGINT, timeout=10) == 0
        lines = relay.stdout.lines[1:]  # after the listening line
        assert len(lines) == 1, lines
        assert "NO MATCH POST /api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005 (Hold)" in lines[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"version": 99, "desktops": []}', "cassette version 99 is newer"),
        (b'{"version": 1, "desktops": [{"name": "a", "events": [{"type": "x"}]}]}', "missing 'id'"),
        (b"[]", "not a cassette"),
    ],
)
async def test_bad_cassette_is_one_line_and_exit_2(
    tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    code, _, err = await run("replay", str(bad), "--port", "0")
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(bad) in lines[0] and message in lines[0]


async def test_missing_cassette(tmp_path: Path) -> None:
    code, _, err = await run("replay", str(tmp_path / "nope.json"))
    assert code == 2
    assert "cannot read" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["--speed", "-1"],
        ["--port", "70000"],
        ["--timeout", "soon"],
        ["--no-such-flag"],
    ],
)
async def test_wrong_arguments_are_usage_errors(args: list[str]) -> None:
    code, _, err = await run("replay", str(SEED), *args)
    assert code == 2
    assert "Usage:" in err and "Traceback" not in err


async def test_unknown_desktop(tmp_path: Path) -> None:
    code, _, err = await run("replay", str(SEED), "--desktop", "bob", "--port", "0")
    assert code == 2
    assert "no desktop called 'bob'" in err and "agent" in err


async def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run("replay", str(SEED), "--port", str(port))
    assert code == 2
    assert err == f"Error: cannot listen on 127.0.0.1:{port}: address already in use\n"
