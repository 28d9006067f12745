"""``relay record`` end to end, on what the review of the recording side found: secrets outside
the fixed header list, JSON not labelled as JSON, undecodable bytes, binary frames, odd Bayeux
values, a cassette that cannot be saved, an IPv6 upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
from aiohttp import web
from test_record import assert_no_secret, events_of, recording, serve

from relay import cassette as cas

NOTE = {"channel": "/v2/me/calls", "data": {"call": {"id": "c1", "state": "Ringing"}}}


async def echo(request: web.Request) -> web.Response:
    await request.read()
    response = web.json_response({"statusCode": 0})
    response.headers["X-CSRF-HEADER"] = "X-My-Csrf"
    response.headers["X-My-Csrf"] = "csrf-secret-uuid"
    response.headers["Location"] = "http://x/cb?code=oauthcode123#access_token=frag-secret"
    return response


async def bayeux(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_bytes(json.dumps([dict(NOTE, id="bin")]).encode())
                await ws.send_str(json.dumps([dict(NOTE, id="txt")]))
        return ws
    mode = request.query.get("mode", "")
    raw = b'[{"channel":"/v2/me/calls","data":{"x":"ok"}},{"channel":"/v2/me/calls","data":'
    raw += b'{"x":"\\ud800"}}]' if mode == "surrogate" else b'{"n":1000000000000000000000000000}}]'
    return web.Response(body=b"\xef\xbb\xbf" + raw, content_type="application/json")


async def config(request: web.Request) -> web.Response:
    return web.Response(body=b'{"apiKey":"asset-secret"}', content_type="application/json")


def app() -> web.Application:
    application = web.Application()
    application.router.add_route("*", "/api/v2/notifications{tail:.*}", bayeux)
    application.router.add_route("*", "/api/{tail:.*}", echo)
    application.router.add_get("/ui/config.json", config)
    return application


async def test_secrets_outside_the_fixed_list_never_reach_the_disk(tmp_path: Path) -> None:
    out = tmp_path / "secrets.json"
    async with serve(app()) as upstream, recording(upstream, out, "-q") as rec:
        async with aiohttp.ClientSession() as http:

            async def go(method: str, path: str, **kw: object) -> None:
                async with http.request(method, rec.url + path, **kw) as r:  # type: ignore[arg-type]
                    assert r.status == 200, await r.text()
                    await r.read()

            await go("GET", "/api/v2/me")
            await go("POST", "/api/v2/me", headers={"X-My-Csrf": "csrf-secret-uuid"}, json={})
            await go("GET", "/api/v2/me", headers={"X-Auth-Token": "hdr-token-secret"})
            await go("GET", "/api/v2/me", headers={"Referer": "http://h/?access_token=ref-secret"})
            await go("GET", "/api/v2/me;jsessionid=pathsess-secret")
            body = {"ext": {"authorization": "Bearer bearer-secret"}, "auth": "auth-secret"}
            await go("POST", "/api/v2/me", json={**body, "jsessionid": "jsid-secret"})
            text = json.dumps({"operationName": "Answer", "password": "pw-in-textplain"})
            await go(
                "POST", "/api/v2/me/calls/c1", data=text, headers={"Content-Type": "text/plain"}
            )
            bom = b'\xef\xbb\xbf{"password":"pw-bom"}'
            await go(
                "POST", "/api/v2/login", data=bom, headers={"Content-Type": "application/json"}
            )
            form = aiohttp.FormData()
            form.add_field("username", "u")
            form.add_field("password", "pw-multipart")
            form.add_field("f", b"x", filename="a.bin")
            await go("POST", "/api/v2/login2", data=form)
            await go("GET", "/ui/config.json")
        assert await rec.stop() == 0
    assert_no_secret(
        out,
        *("csrf-secret-uuid", "oauthcode123", "frag-secret", "hdr-token-secret", "ref-secret"),
        *("pathsess-secret", "bearer-secret", "auth-secret", "jsid-secret", "pw-in-textplain"),
        *("pw-bom", "pw-multipart", "asset-secret"),
    )
    cassette = rec.cassette()
    exchanges, _ = events_of(cassette)
    assert len(exchanges) == 9
    first = exchanges[0].response
    assert first is not None and first.header("X-CSRF-HEADER") == "X-My-Csrf"
    assert exchanges[4].request.path == "/api/v2/me;jsessionid=<redacted:jsessionid:1>"
    (asset,) = cassette.assets
    stored = (cas.assets_dir(out) / asset.sha256).read_bytes()
    assert json.loads(stored) == {"apiKey": "<redacted:apikey:1>"}


async def test_undecodable_bytes_are_recorded_not_lost(tmp_path: Path) -> None:
    """A query ``%FF`` and a Latin-1 header from upstream (a raw server: aiohttp would not)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.readline():
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                body = b'{"statusCode":0}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Disposition: attachment; filename="caf\xe9.txt"\r\n'
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out = tmp_path / "bytes.json"
    try:
        async with recording(f"http://127.0.0.1:{port}", out, "-q") as rec:
            async with aiohttp.ClientSession() as http:
                for path in ("/api/v2/me?q=%FF", "/api/v2/me", "/ui/file.txt"):
                    async with http.get(rec.url + path) as r:
                        assert r.status == 200
                        await r.read()
            assert await rec.stop() == 0
    finally:
        server.close()
        await server.wait_closed()
    cassette = rec.cassette()
    exchanges, _ = events_of(cassette)
    assert len(exchanges) == 2
    assert all(x.response is not None and x.error is None for x in exchanges)
    assert exchanges[0].request.query == [("q", "\\xff")]
    assert exchanges[0].response is not None
    assert "caf\\xe9" in (exchanges[0].response.header("Content-Disposition") or "")
    assert [a.path for a in cassette.assets] == ["/ui/file.txt"]
    assert "cannot journal" not in rec.output()


async def test_binary_frames_and_odd_bayeux_values_are_recorded(tmp_path: Path) -> None:
    out = tmp_path / "bayeux.json"
    async with serve(app()) as upstream, recording(upstream, out, "-q") as rec:
        async with aiohttp.ClientSession() as http:
            for mode in ("surrogate", "bigint"):
                url = f"{rec.url}/api/v2/notifications/connect?mode={mode}"
                async with http.post(url, json=[{"channel": "/meta/connect"}]) as r:
                    await r.read()
            async with http.ws_connect(rec.url + "/api/v2/notifications") as ws:
                await ws.send_str(json.dumps([{"channel": "/meta/connect"}]))
                for _ in range(2):
                    await ws.receive()
        assert await rec.stop() == 0
    _, notes = events_of(rec.cassette())
    data = [n.message.get("id") or n.data for n in notes]
    assert data[:4] == [{"x": "ok"}, {"x": "\\ud800"}, {"x": "ok"}, {"n": 1e27}]
    assert sorted(data[4:]) == ["bin", "txt"]


async def test_a_cassette_that_cannot_be_saved_is_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "unsaved.json"
    async with serve(app()) as upstream, recording(upstream, out, "-q") as rec:
        async with aiohttp.ClientSession() as http, http.get(rec.url + "/api/v2/me") as r:
            assert r.status == 200
        out.mkdir()  # in the way of the cassette (an old one would be left in place)
        (out / "old").write_text("x")
        code = await rec.stop()
    assert code == 1, rec.output()
    assert f"relay recover {out}" in rec.output()
    assert (tmp_path / "unsaved.json.journal").exists()


async def test_regular_mode_with_an_ipv6_upstream(tmp_path: Path) -> None:
    out = tmp_path / "v6.json"
    async with (
        serve(app(), host="::1") as upstream,
        recording(upstream, out, "-q", "--mode", "regular") as rec,
    ):
        async with (
            aiohttp.ClientSession() as http,
            http.get(upstream + "/api/v2/me", proxy=rec.url) as r,
        ):
            assert r.status == 200
            await r.read()
        assert await rec.stop() == 0
    exchanges, _ = events_of(rec.cassette())
    assert [x.request.path for x in exchanges] == ["/api/v2/me"]
