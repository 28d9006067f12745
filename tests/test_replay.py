"""The replay server over real HTTP on loopback (pytest-aiohttp's test server), raw Bayeux."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from rawbayeux import (
    BAYEUX,
    bayeux,
    collect,
    connect,
    events,
    handshake,
    states,
    subscribe,
    ws_handshake,
)

from relay import cassette as cas
from relay.replay import REPLAYER, ReplayOptions, create_app, session_cookie

ROOT = Path(__file__).resolve().parent.parent
SEED = cas.load(ROOT / "cassettes" / "two-step-transfer.json")
CALL = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
CONSULT = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000006"

ANSWER = {"operationName": "Answer"}
TRANSFER = {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}}


@pytest.fixture
def logs() -> list[str]:
    return []


@pytest.fixture
async def client(aiohttp_client: Any, logs: list[str]) -> TestClient:  # type: ignore[type-arg]
    app = create_app(SEED, ReplayOptions(speed=0, timeout_ms=2000), log=logs.append)
    return await aiohttp_client(app)


async def test_rest_answer_is_the_recorded_one_and_sets_the_session_cookie(
    client: TestClient,
) -> None:  # type: ignore[type-arg]
    resp = await client.post(CALL, json=ANSWER)
    assert resp.status == 200
    assert await resp.json() == {"statusCode": 0}
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "relay_session" in resp.cookies


async def test_the_whole_scenario_over_raw_long_polling(
    client: TestClient, logs: list[str]
) -> None:  # type: ignore[type-arg]
    cid = await handshake(client)
    first = await connect(client, cid)  # the first connect is answered at once
    assert [m["channel"] for m in first] == ["/meta/connect"]
    await subscribe(client, cid, "/v2/me/*", "/**")  # overlapping: each event once
    got = await collect(client, cid, 1)
    assert states(got) == ["Ringing"]
    assert (await client.post(CALL, json=ANSWER)).status == 200
    got = await collect(client, cid, 1)
    assert states(got) == ["Established"]
    assert (await client.post(CALL, json=TRANSFER)).status == 200
    got = await collect(client, cid, 2)
    assert states(got) == ["Held", "Dialing"]
    resp = await client.post(CONSULT, json={"operationName": "CompleteTransfer"})
    assert resp.status == 200
    got = await collect(client, cid, 2)
    assert states(got) == ["Released", "Released"]
    assert [e["data"]["call"]["id"][-1] for e in got] == ["5", "6"]
    assert any("<- n6" in line for line in logs)


async def test_notification_data_equals_the_cassette_modulo_origin(client: TestClient) -> None:  # type: ignore[type-arg]
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/calls")
    (ringing,) = await collect(client, cid, 1)
    origin = f"http://{client.host}:{client.port}"
    recorded = orjson.dumps(next(SEED.desktops[0].notifications()).message)
    expected = orjson.loads(recorded.replace(b"http://127.0.0.1:8080", origin.encode()))
    assert ringing == expected
    assert ringing["data"]["call"]["uri"].startswith(origin + "/api/v2/me/calls/")


async def test_keep_origin_leaves_the_recorded_uris(aiohttp_client: Any) -> None:
    app = create_app(SEED, ReplayOptions(speed=0, keep_origin=True, timeout_ms=2000))
    client = await aiohttp_client(app)
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/calls")
    (ringing,) = await collect(client, cid, 1)
    assert ringing["data"]["call"]["uri"].startswith("http://127.0.0.1:8080/")


async def test_a_second_connect_is_held_until_the_event_arrives(client: TestClient) -> None:  # type: ignore[type-arg]
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/calls")
    await collect(client, cid, 1)  # the Ringing
    held = asyncio.create_task(connect(client, cid))
    await asyncio.sleep(0.05)  # give the connect time to reach the server and be held
    assert not held.done(), "a connect with nothing queued must be held"
    assert (await client.post(CALL, json=ANSWER)).status == 200
    replies = await asyncio.wait_for(held, 2)
    assert states(replies) == ["Established"]


async def test_held_connect_ends_at_the_advertised_timeout(aiohttp_client: Any) -> None:
    app = create_app(SEED, ReplayOptions(speed=0, timeout_ms=200))
    client = await aiohttp_client(app)
    cid = await handshake(client)
    await connect(client, cid)
    replies = await asyncio.wait_for(connect(client, cid), 5)
    assert [m["channel"] for m in replies] == ["/meta/connect"]
    assert replies[0]["successful"] is True
    assert replies[0]["advice"]["timeout"] == 200


async def test_no_match_names_the_closest_and_the_session_goes_on(
    client: TestClient,
    logs: list[str],  # type: ignore[type-arg]
) -> None:
    wrong = {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "9999"}}
    resp = await client.post(CALL, json=ANSWER)
    assert resp.status == 200
    resp = await client.post(CALL, json=wrong)
    assert resp.status == 404
    report = await resp.json()
    assert report["relay"] == "no-match"
    assert report["expected"] == f"POST {CALL} (InitiateTransfer)"
    assert report["closest"][0]["id"] == "x2"
    assert report["closest"][0]["differences"] == [
        "body.destination.phoneNumber: recorded '5001', got '9999'"
    ]
    assert any("NO MATCH" in line and "9999" in line for line in logs)
    assert (await client.post(CALL, json=TRANSFER)).status == 200


async def test_out_of_order_request_says_what_is_expected_first(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.post(CALL, json=TRANSFER)
    assert resp.status == 404
    report = await resp.json()
    assert "recorded later (x2)" in report["hint"]
    assert "(Answer) [x1] first" in report["hint"]


async def test_an_exact_repeat_gets_the_same_answer_and_releases_nothing(
    client: TestClient,
    logs: list[str],  # type: ignore[type-arg]
) -> None:
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/calls")
    await collect(client, cid, 1)
    assert (await client.post(CALL, json=ANSWER)).status == 200
    assert states(await collect(client, cid, 1)) == ["Established"]
    resp = await client.post(CALL, json={"operationName": "Answer"})
    assert resp.status == 200
    assert await resp.json() == {"statusCode": 0}
    assert any("(repeat)" in line for line in logs)
    replies = await connect(client, cid, timeout=5)
    assert events(replies) == []


async def test_rehandshake_with_the_cookie_keeps_the_cursor(client: TestClient) -> None:  # type: ignore[type-arg]
    cid = await handshake(client)
    await connect(client, cid)
    await subscribe(client, cid, "/v2/me/calls")
    await collect(client, cid, 1)
    assert (await client.post(CALL, json=ANSWER)).status == 200
    assert states(await collect(client, cid, 1)) == ["Established"]
    # The desktop's laptop sleeps; it comes back and handshakes again (cookie kept by the jar).
    await bayeux(client, [{"channel": "/meta/disconnect", "clientId": cid, "id": "d"}])
    cid2 = await handshake(client)
    assert cid2 != cid
    await connect(client, cid2)
    await subscribe(client, cid2, "/v2/me/calls")
    # The scenario goes on where it was: no second Ringing, the transfer is next.
    assert (await client.post(CALL, json=TRANSFER)).status == 200
    assert states(await collect(client, cid2, 2)) == ["Held", "Dialing"]
    assert len(client.app[REPLAYER].sessions) == 1


async def test_cookieless_requests_are_ambiguous_with_two_live_sessions(
    aiohttp_client: Any,
) -> None:
    app = create_app(SEED, ReplayOptions(speed=0, timeout_ms=2000))
    a = await aiohttp_client(app)
    await handshake(a)
    await handshake(a, cookies={"relay_session": "none"})  # a second desktop: a new session
    assert len(app[REPLAYER].sessions) == 2
    a.session.cookie_jar.clear()
    resp = await a.post(CALL, json=ANSWER)
    assert resp.status == 409
    report = await resp.json()
    assert report["relay"] == "ambiguous-session"
    assert sorted(report["sessions"]) == sorted(app[REPLAYER].sessions)


async def test_cookieless_request_goes_to_the_only_session(aiohttp_client: Any) -> None:
    app = create_app(SEED, ReplayOptions(speed=0, timeout_ms=2000))
    a = await aiohttp_client(app)
    cid = await handshake(a)
    await connect(a, cid)
    await subscribe(a, cid, "/v2/me/calls")
    await collect(a, cid, 1)
    a.session.cookie_jar.clear()
    assert (await a.post(CALL, json=ANSWER)).status == 200
    assert states(await collect(a, cid, 1)) == ["Established"]
    assert len(app[REPLAYER].sessions) == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{", b"[]", b"42", b'[{"no": "channel"}]', b'{"channel": 3}', b"\xff\xfe"],
)
async def test_garbage_bayeux_bodies_get_400_and_the_server_goes_on(
    client: TestClient,
    body: bytes,  # type: ignore[type-arg]
) -> None:
    resp = await client.post(BAYEUX, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["relay"] == "bad-bayeux-request"
    assert (await client.post(CALL, json=ANSWER)).status == 200


async def test_unknown_client_gets_402_with_handshake_advice(client: TestClient) -> None:  # type: ignore[type-arg]
    (reply,) = await connect(client, "no-such-client")
    assert reply["successful"] is False
    assert reply["error"] == "402::Unknown client"
    assert reply["advice"] == {"reconnect": "handshake", "interval": 0}


async def test_callback_polling(client: TestClient) -> None:  # type: ignore[type-arg]
    message = orjson.dumps(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "id": "1",
                "supportedConnectionTypes": ["callback-polling"],
            }
        ]
    ).decode()
    resp = await client.get(BAYEUX + "/handshake", params={"jsonp": "cb7", "message": message})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    text = await resp.text()
    assert text.startswith("cb7(") and text.endswith(");")
    (reply,) = orjson.loads(text[4:-2])
    assert reply["successful"] is True and reply["id"] == "1"


async def test_cors_preflight_and_exposed_csrf_headers(client: TestClient) -> None:  # type: ignore[type-arg]
    origin = "http://desktop.localhost:3000"
    resp = await client.options(
        CALL,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-csrf-token",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert resp.headers["Access-Control-Allow-Headers"] == "content-type, x-csrf-token"
    assert client.app[REPLAYER].sessions == {}, "a preflight is outside the timeline"
    resp = await client.post(CALL, json=ANSWER, headers={"Origin": origin})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert resp.headers["Access-Control-Expose-Headers"] == "X-CSRF-HEADER, X-CSRF-TOKEN"


async def test_notification_waits_for_a_subscription(client: TestClient) -> None:  # type: ignore[type-arg]
    cid = await handshake(client)
    await connect(client, cid)
    # The Ringing is due at once, but nobody listens yet: it must not be dropped.
    replies = await connect(client, cid, params={}, timeout=5)
    assert events(replies) == []
    await subscribe(client, cid, "/v2/me/*")
    assert states(await collect(client, cid, 1)) == ["Ringing"]


async def test_websocket_frames(client: TestClient) -> None:  # type: ignore[type-arg]
    ws = await client.ws_connect(BAYEUX)
    hs = await ws_handshake(ws)
    cid = hs["clientId"]
    await ws.send_str(
        orjson.dumps(
            [
                {
                    "channel": "/meta/connect",
                    "clientId": cid,
                    "id": "2",
                    "connectionType": "websocket",
                }
            ]
        ).decode()
    )
    assert orjson.loads(await ws.receive_str())[0]["channel"] == "/meta/connect"
    await ws.send_str(
        orjson.dumps(
            [{"channel": "/meta/subscribe", "clientId": cid, "id": "3", "subscription": "/v2/me/*"}]
        ).decode()
    )
    await ws.send_str(
        orjson.dumps(
            [
                {
                    "channel": "/meta/connect",
                    "clientId": cid,
                    "id": "4",
                    "connectionType": "websocket",
                }
            ]
        ).decode()
    )
    frames = [orjson.loads(await ws.receive_str()) for _ in range(2)]
    flat = [m for f in frames for m in f]
    assert [m["channel"] for m in flat] == ["/meta/subscribe", "/v2/me/calls"]
    assert flat[1]["data"]["call"]["state"] == "Ringing"
    # Non-Bayeux text closes this socket with a protocol error; the server goes on.
    await ws.send_str("garbage")
    msg = await ws.receive()
    assert msg.type == WSMsgType.CLOSE
    assert msg.data == 1002
    assert msg.extra.startswith("relay: body is not valid JSON")
    assert (await client.post(CALL, json=ANSWER)).status == 200


async def test_unmatched_get_outside_the_api_is_a_clear_404_without_a_session(
    client: TestClient,
    logs: list[str],  # type: ignore[type-arg]
) -> None:
    resp = await client.get("/ui/index.html")
    assert resp.status == 404
    assert (await resp.json())["relay"] == "no-match"
    assert "relay_session" not in resp.cookies
    assert client.app[REPLAYER].sessions == {}
    assert any("NO MATCH GET /ui/index.html" in line for line in logs)


def _with_assets(tmp_path: Path) -> tuple[cas.Cassette, Path]:
    store = tmp_path / "demo.assets"
    store.mkdir()
    page, script = b"<!doctype html><p>desktop</p>", b"console.log('v2');"
    assets = []
    for path, query, body, ctype in (
        ("/ui/index.html", [("user", "<redacted:password:1>")], page, "text/html"),
        ("/ui/app.js", [("v", "2")], script, "text/javascript"),
    ):
        digest = hashlib.sha256(body).hexdigest()
        (store / digest).write_bytes(body)
        assets.append(
            cas.Asset(path=path, sha256=digest, query=query, headers=[("Content-Type", ctype)])
        )
    return cas.Cassette(meta=SEED.meta, desktops=SEED.desktops, assets=assets), store


async def test_assets_are_served_any_number_of_times_outside_sessions(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    cassette, store = _with_assets(tmp_path)
    client = await aiohttp_client(create_app(cassette, ReplayOptions(speed=0), assets_dir=store))
    for query in ("?user=anyone", "?user=someone-else", "", "?transport=websocket"):
        # The recorded query had a redacted value: any value matches; another query still
        # finds the page recorded at that path.
        resp = await client.get("/ui/index.html" + query)
        assert resp.status == 200
        assert await resp.read() == b"<!doctype html><p>desktop</p>"
        assert resp.headers["Content-Type"].startswith("text/html")
    resp = await client.head("/ui/app.js?v=2")
    assert resp.status == 200
    assert client.app[REPLAYER].sessions == {}
    resp = await client.get("/ui/missing.js")
    assert resp.status == 404
    assert "closest recorded assets" in (await resp.json())["hint"]


async def test_a_websocket_handshake_sets_the_session_cookie(client: TestClient) -> None:  # type: ignore[type-arg]
    # Another desktop is live, so a REST request without the cookie would be ambiguous.
    async with (
        aiohttp.ClientSession() as other,
        other.post(
            client.make_url(BAYEUX),
            data=orjson.dumps([{"channel": "/meta/handshake", "version": "1.0"}]),
        ) as resp,
    ):
        assert resp.status == 200
    ws = await client.ws_connect(BAYEUX)
    hs = await ws_handshake(ws)
    assert hs["successful"] is True
    sessions = client.app[REPLAYER].sessions
    assert len(sessions) == 2
    owner = client.app[REPLAYER].bayeux.clients[hs["clientId"]].owner
    resp = await client.post(CALL, json=ANSWER)
    assert resp.status == 200, await resp.text()
    assert sessions[owner].timeline.consumed == 1
    await ws.close()


async def test_a_client_that_went_away_is_forgotten_but_a_held_one_is_kept(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    replayer = client.app[REPLAYER]
    gone = await handshake(client)
    await connect(client, gone)
    waiting = await handshake(client)
    await connect(client, waiting)
    held = asyncio.create_task(connect(client, waiting))
    await asyncio.sleep(0.05)
    assert not held.done()
    for conn in replayer.conns.values():
        conn.last_seen -= 10_000  # both silent for hours, as far as the clock can tell
    replayer.sweep()
    assert gone not in replayer.bayeux.clients and gone not in replayer.conns
    assert all(gone not in s.clients for s in replayer.sessions.values())
    assert waiting in replayer.bayeux.clients  # its connect is held: it is alive
    (reply,) = await connect(client, gone)
    assert reply["error"] == "402::Unknown client"
    await held


@pytest.mark.parametrize(
    ("header", "sid"),
    [
        ("relay_session=s1-abc", "s1-abc"),
        ("JSESSIONID=x; relay_session=s2-def; BAYEUX_BROWSER=y", "s2-def"),
        ('relay_session="s3-q"', "s3-q"),
        ("xrelay_session=s4; other=1", None),
        ("relay_session=", None),
        ("", None),
    ],
)
def test_the_session_cookie_is_read_from_the_raw_header(header: str, sid: str | None) -> None:
    assert session_cookie(header) == sid
