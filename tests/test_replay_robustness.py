"""The replay server under odd input, dropped connections and races (real servers on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from rawbayeux import BAYEUX, collect, connect, handshake, states, subscribe, ws_handshake

from relay import cassette as cas
from relay.replay import REPLAYER, ReplayOptions, create_app, guarded

ROOT = Path(__file__).resolve().parent.parent
SEED = cas.load(ROOT / "cassettes" / "two-step-transfer.json")
CALL = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
CONSULT = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000006"
ANSWER = {"operationName": "Answer"}
TRANSFER = {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}}
COMPLETE = {"operationName": "CompleteTransfer"}


async def start(aiohttp_client: Any, logs: list[str] | None = None, **options: Any) -> TestClient:  # type: ignore[type-arg]
    opts = ReplayOptions(**{"speed": 0, "timeout_ms": 2000, **options})
    app = create_app(SEED, opts, log=None if logs is None else logs.append)
    client: TestClient = await aiohttp_client(app)  # type: ignore[type-arg]
    return client


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for a server-side condition the test cannot await directly."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def holding(client: TestClient, cid: str) -> Callable[[], bool]:  # type: ignore[type-arg]
    conns = client.app[REPLAYER].conns
    return lambda: cid in conns and conns[cid].holding > 0


@contextlib.asynccontextmanager
async def served_like_the_cli(
    app: web.Application,
) -> AsyncIterator[tuple[web.AppRunner, aiohttp.ClientSession]]:
    """The CLI's server, not the test server: aiohttp cancels no handler when its client goes
    away (the test server does), so a dropped long-poll lives on until it is woken. Yields the
    runner and a cookie-keeping client session on it."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(f"http://{host}:{port}", cookie_jar=jar) as http:
            yield runner, http
    finally:
        await runner.cleanup()


async def drop_a_held_connect(runner: web.AppRunner, cid: str) -> None:
    """Hold a connect of ``cid`` on a connection of its own, then close that connection (a
    reload, a network switch) and wait until the server saw it close."""
    app = runner.app
    host, port = runner.addresses[0][:2]
    (sid,) = app[REPLAYER].sessions
    body = orjson.dumps([{"channel": "/meta/connect", "clientId": cid}])
    _, raw = await asyncio.open_connection(host, port)
    raw.write(
        f"POST {BAYEUX} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nCookie: relay_session={sid}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    conns = app[REPLAYER].conns
    await until(lambda: conns[cid].holding > 0)
    server = runner.server
    assert server is not None
    raw.close()
    await until(lambda: any(h.transport is None for h in server.connections))


# --- bug 1
async def test_a_connect_held_as_loop_restarts_the_scenario_gets_the_first_event_at_once(
    aiohttp_client: Any,
) -> None:
    # The connect is held because the queue is empty; then the loop restarts the finished
    # scenario and delivers the Ringing: the connect must answer with it, not sit out the timeout.
    client = await start(aiohttp_client, loop=True, timeout_ms=30000)
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/*")
    assert states(await collect(client, cid, 1)) == ["Ringing"]
    assert (await client.post(CALL, json=ANSWER)).status == 200
    assert states(await collect(client, cid, 1)) == ["Established"]
    assert (await client.post(CALL, json=TRANSFER)).status == 200
    assert states(await collect(client, cid, 2)) == ["Held", "Dialing"]
    held = asyncio.create_task(connect(client, cid))
    await until(holding(client, cid))
    assert (await client.post(CONSULT, json=COMPLETE)).status == 200
    assert states(await asyncio.wait_for(held, 5)) == ["Released", "Released"]
    (session,) = client.app[REPLAYER].sessions.values()
    assert session.timeline.finished
    assert states(await asyncio.wait_for(connect(client, cid), 5)) == ["Ringing"]


# --- bug 2
async def test_a_long_poll_the_client_dropped_leaves_the_events_for_the_next_connect() -> None:
    app = create_app(SEED, ReplayOptions(speed=0, timeout_ms=30000))
    async with served_like_the_cli(app) as (runner, http):
        cid = await handshake(http)
        await connect(http, cid)
        await subscribe(http, cid, "/v2/me/calls")
        assert states(await collect(http, cid, 1)) == ["Ringing"]
        await drop_a_held_connect(runner, cid)
        assert (await http.post(CALL, json=ANSWER)).status == 200
        # The orphaned connect wakes on the Established; the next connect must get it.
        assert states(await asyncio.wait_for(connect(http, cid), 5)) == ["Established"]


# --- bug 3
async def test_a_json_body_without_a_content_type_matches_like_the_recorder_sniffs_it(
    aiohttp_client: Any,
) -> None:
    client = await start(aiohttp_client)
    resp = await client.post(CALL, data=orjson.dumps(ANSWER), skip_auto_headers=["Content-Type"])
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"statusCode": 0}


# --- bug 4
DEEP = b"[" * 300 + b"]" * 300


async def test_deeply_nested_json_is_a_400_or_a_no_match_never_a_500(
    aiohttp_client: Any,
) -> None:
    client = await start(aiohttp_client)
    cid = await handshake(client)
    for who in (cid, "unknown"):
        resp = await client.post(
            BAYEUX,
            data=b'[{"channel":"/meta/subscribe","clientId":"%s","subscription":%s}]'
            % (who.encode(), DEEP),
        )
        assert resp.status == 400, await resp.text()
        assert "subscription" in (await resp.json())["error"]
    for path in (CALL, "/api/v2/me/calls/xyz"):
        resp = await client.post(path, data=b'{"operationName":%s}' % DEEP)
        assert resp.status == 404, await resp.text()
        assert (await resp.json())["relay"] == "no-match"


async def test_a_deeply_nested_subscription_over_a_websocket_is_a_protocol_error(
    aiohttp_client: Any,
) -> None:
    client = await start(aiohttp_client)
    async with client.ws_connect(BAYEUX) as ws:
        cid = (await ws_handshake(ws))["clientId"]
        await ws.send_str(
            f'[{{"channel":"/meta/subscribe","clientId":"{cid}","subscription":{DEEP.decode()}}}]'
        )
        frame = await asyncio.wait_for(ws.receive(), 5)
        assert frame.type == WSMsgType.CLOSE
        assert ws.close_code == 1002


# --- bug 5
async def test_an_unexpected_error_on_a_websocket_closes_it_with_1011(
    aiohttp_client: Any,
) -> None:
    logs: list[str] = []
    client = await start(aiohttp_client, logs)

    def boom(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("boom")

    async with client.ws_connect(BAYEUX) as ws:
        client.app[REPLAYER].bayeux.process = boom  # type: ignore[method-assign]
        await ws.send_str(orjson.dumps([{"channel": "/meta/handshake"}]).decode())
        frame = await asyncio.wait_for(ws.receive(), 5)
        assert frame.type == WSMsgType.CLOSE, frame
        assert ws.close_code == 1011
    assert any("internal error" in line and "boom" in line for line in logs)


async def test_guarded_sends_nothing_more_once_a_response_has_started(
    aiohttp_client: Any,
) -> None:
    logs: list[str] = []
    app = create_app(SEED, ReplayOptions(speed=0), log=logs.append)

    async def streams_then_fails(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 7
        await resp.prepare(request)
        await resp.write(b"partial")
        raise RuntimeError("late failure")

    sub = web.Application()
    sub.router.add_get("/x", guarded(streams_then_fails))
    sub[REPLAYER] = app[REPLAYER]
    client = await aiohttp_client(sub)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET /x HTTP/1.1\r\nHost: {client.host}\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    writer.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"partial")
    assert b"internal-error" not in data
    assert any("late failure" in line for line in logs)


# --- bug 6
@pytest.mark.parametrize(
    "callback", ["alert(document.domain);//", "a b", "1abc", "x" * 65, "a-b", "é"]
)
async def test_a_jsonp_callback_that_is_not_a_plain_name_is_a_400(
    aiohttp_client: Any, callback: str
) -> None:
    client = await start(aiohttp_client)
    message = orjson.dumps([{"channel": "/meta/connect", "clientId": "x"}]).decode()
    resp = await client.get(BAYEUX, params={"message": message, "jsonp": callback})
    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert "jsonp" in (await resp.json())["error"]


async def test_a_jsonp_answer_is_the_named_callback_and_not_sniffed(
    aiohttp_client: Any,
) -> None:
    client = await start(aiohttp_client)
    message = orjson.dumps([{"channel": "/meta/connect", "clientId": "x"}]).decode()
    resp = await client.get(BAYEUX, params={"message": message, "jsonp": "jQuery$1.cometd._cb_2"})
    assert resp.status == 200
    assert resp.content_type == "text/javascript"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    text = await resp.text()
    assert text.startswith("jQuery$1.cometd._cb_2(") and text.endswith(");")
    assert orjson.loads(text[len("jQuery$1.cometd._cb_2(") : -2])[0]["error"].startswith("402")


# --- bug 7
async def test_the_sweep_drops_idle_sessions_without_clients(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client, session_idle=0.0)
    replayer = client.app[REPLAYER]
    for _ in range(3):  # desktops that came, disconnected and never returned
        client.session.cookie_jar.clear()
        cid = await handshake(client)
        await client.post(BAYEUX, json=[{"channel": "/meta/disconnect", "clientId": cid}])
    client.session.cookie_jar.clear()
    await handshake(client)  # one still connected: its session stays
    assert len(replayer.sessions) == 4
    replayer.sweep()
    assert len(replayer.sessions) == 1
    (session,) = replayer.sessions.values()
    assert len(session.clients) == 1


# --- bug 9
async def test_a_cookieless_request_goes_to_the_one_session_it_is_next_for(
    aiohttp_client: Any,
) -> None:
    client = await start(aiohttp_client)
    replayer = client.app[REPLAYER]
    assert (await client.post(CALL, json=ANSWER)).status == 200  # desktop A: Answer consumed
    client.session.cookie_jar.clear()
    await handshake(client)  # desktop B: a new session, Answer next
    a, b = replayer.sessions.values()
    client.session.cookie_jar.clear()
    # For A it would only be a repeat; for B it is the next step: B takes it.
    resp = await client.post(CALL, json=ANSWER, cookies={})
    assert resp.status == 200, await resp.text()
    assert (a.timeline.consumed, b.timeline.consumed) == (1, 1)
    assert "relay_session" not in resp.cookies
    # Now both have consumed Answer: a repeat for either is ambiguous.
    client.session.cookie_jar.clear()
    resp = await client.post(CALL, json=ANSWER)
    assert resp.status == 409
    assert sorted((await resp.json())["sessions"]) == sorted([a.sid, b.sid])


# --- bug 10
async def test_a_second_connect_on_a_websocket_answers_the_first(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client, timeout_ms=30000)
    async with client.ws_connect(BAYEUX) as ws:
        cid = (await ws_handshake(ws))["clientId"]

        async def connect_ws(mid: str) -> None:
            message = {"channel": "/meta/connect", "clientId": cid, "id": mid}
            await ws.send_str(orjson.dumps([message]).decode())

        await connect_ws("2")
        assert orjson.loads(await ws.receive_str())[0]["id"] == "2"  # the first: at once
        await connect_ws("3")
        await until(holding(client, cid))
        await connect_ws("4")
        # Like over HTTP: the newer connect ends the held one, which is answered.
        (reply,) = orjson.loads(await asyncio.wait_for(ws.receive_str(), 5))
        assert (reply["channel"], reply["id"], reply["successful"]) == ("/meta/connect", "3", True)


async def test_two_clients_on_one_websocket_hold_their_connects_independently(
    aiohttp_client: Any,
) -> None:
    client = await start(aiohttp_client, timeout_ms=300)
    async with client.ws_connect(BAYEUX) as ws:
        cids = [(await ws_handshake(ws))["clientId"] for _ in range(2)]
        for cid in cids:
            message = {"channel": "/meta/connect", "clientId": cid, "id": cid}
            await ws.send_str(orjson.dumps([message]).decode())
            assert orjson.loads(await ws.receive_str())[0]["id"] == cid
        for cid in cids:
            message = {"channel": "/meta/connect", "clientId": cid, "id": "held-" + cid}
            await ws.send_str(orjson.dumps([message]).decode())
            await until(holding(client, cid))
        got = set()
        for _ in cids:  # both answered at the (short) timeout
            (reply,) = orjson.loads(await asyncio.wait_for(ws.receive_str(), 5))
            got.add(reply["id"])
        assert got == {"held-" + cid for cid in cids}


# --- bug 11
async def test_a_host_that_is_not_host_and_port_is_a_400(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    for host in ('x"y', "a\\b", "x y", "a<b>", "h:p"):
        resp = await client.post(CALL, json=ANSWER, headers={"Host": host})
        assert resp.status == 400, host
        assert (await resp.json())["relay"] == "bad-host"
        resp = await client.post(
            BAYEUX, json=[{"channel": "/meta/handshake"}], headers={"Host": host}
        )
        assert resp.status == 400, host
    assert client.app[REPLAYER].sessions == {}  # nothing was started by them
    for host in ("desk.example:8443", "10.1.2.3", "[::1]:9000", "my_host"):
        resp = await client.post(CALL, json=ANSWER, headers={"Host": host})
        assert resp.status == 200, host
        client.session.cookie_jar.clear()


async def test_notification_uris_take_the_clients_host(aiohttp_client: Any) -> None:
    client = await start(aiohttp_client)
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/calls")
    resp = await client.post(
        BAYEUX,
        json=[{"channel": "/meta/connect", "clientId": cid}],
        headers={"Host": "desk.example:8443"},
    )
    (ringing,) = [m for m in await resp.json() if "data" in m]
    assert ringing["data"]["call"]["uri"].startswith("http://desk.example:8443/api/v2/")


# --- a page reload: the old page's client must not take the new page's notifications
async def test_after_a_reload_a_notification_waits_for_the_new_pages_subscription() -> None:
    """The old page subscribed and held a connect, then the browser dropped it (a reload); the
    new page handshakes with the same cookie. The Established its Answer releases must wait for
    the new page's subscription, not go into the dead client's queue."""
    app = create_app(SEED, ReplayOptions(speed=0, timeout_ms=30000))
    async with served_like_the_cli(app) as (runner, http):
        old = await handshake(http)
        await connect(http, old)
        await subscribe(http, old, "/v2/me/calls")
        assert states(await collect(http, old, 1)) == ["Ringing"]
        await drop_a_held_connect(runner, old)  # the reload
        new = await handshake(http)  # the new page, same cookie: the same session
        await connect(http, new)
        assert (await http.post(CALL, json=ANSWER)).status == 200
        (session,) = app[REPLAYER].sessions.values()
        await until(lambda: session.timeline.waiting_for_subscription is not None)
        await subscribe(http, new, "/v2/me/calls")
        assert states(await asyncio.wait_for(collect(http, new, 1), 5)) == ["Established"]
