"""``relay record`` between things this project did not write: the official CometD JavaScript
client (tests/js/desktop.mjs) and a faye Bayeux server posing as GWS (tests/js/upstream.mjs),
over long-polling and WebSocket; then ``relay replay`` of the new cassette to the same desktop.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jspeers
import pytest
from relayproc import relay_server, run_relay
from test_record import assert_no_secret, events_of, recording

from relay import cassette as cas

pytestmark = jspeers.node_marks

USER, PASSWORD = jspeers.USER, jspeers.PASSWORD
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SEED = jspeers.ROOT / "cassettes" / "two-step-transfer.json"
UI = Path(__file__).parent / "fixtures" / "record" / "ui"
TRANSPORTS = ["long-polling", "websocket"]


def seed() -> Path:
    if not SEED.exists():
        pytest.skip("cassettes/two-step-transfer.json is not there yet")
    return SEED


def localhost(url: str) -> str:
    """As a browser would: cookies are kept for a name, not an address."""
    return url.replace("127.0.0.1", "localhost")


@contextlib.asynccontextmanager
async def replay_server(cassette: Path, *args: str) -> AsyncIterator[str]:
    """``relay replay CASSETTE --port 0 --speed 0 [ARGS]``; yields its URL."""
    replay = ("replay", str(cassette), "--port", "0", "--speed", "0", "-q", *args)
    async with relay_server(*replay) as served:
        yield served.url


async def desktop_session(
    url: str, transport: str, count: int, *, login: bool = True
) -> jspeers.DesktopResult:
    return await jspeers.run_desktop(
        localhost(url),
        transport=transport,
        count=count,
        login=login,
        user=USER,
        password=PASSWORD,
        deadline_ms=40_000,
    )


async def login_secrets(url: str) -> list[str]:
    """Log in once through ``url``: the session cookie values and CSRF token the server gave."""
    auth = {"Authorization": f"Basic {BASIC}"}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        http.get(url + "/api/v2/me", params={"subresources": "*"}, headers=auth) as r,
    ):
        assert r.status == 200
        return [r.headers["X-CSRF-TOKEN"], *(m.value for m in r.cookies.values())]


def causes(c: cas.Cassette) -> list[tuple[str, str, str | None]]:
    """Each notification as (call state, call id, the operationName of its cause)."""
    exchanges, notes = events_of(c)
    ops = {x.id: x.request.operation_name for x in exchanges}
    return [(n.data["call"]["state"], n.data["call"]["id"], ops.get(n.cause or "")) for n in notes]


def rest_view(c: cas.Cassette) -> list[tuple[str, str, Any, int | None, Any]]:
    exchanges, _ = events_of(c)
    return [
        (
            x.request.method,
            x.request.path,
            x.request.json,
            x.response.status if x.response else None,
            x.response.body.value if x.response and x.response.body else None,
        )
        for x in exchanges
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_transfer_from_faye_is_recorded_then_replays_identically(
    transport: str, tmp_path: Path
) -> None:
    expected = jspeers.cassette_notifications(seed())
    out = tmp_path / "recorded.json"
    async with (
        jspeers.upstream_server(seed(), user=USER, password=PASSWORD, ui=UI) as upstream,
        recording(upstream.url, out) as rec,
    ):
        # the desktop's own files first (with validators a browser would have cached)
        async with aiohttp.ClientSession() as http:
            for path in (
                "/ui/index.html",
                "/ui/js/app.js",
                "/ui/js/copy-of-app.js",
                "/ui/img/logo.png",
            ):
                async with http.get(rec.url + path, headers={"If-None-Match": "*"}) as r:
                    assert r.status == 200
                    assert await r.read() == (UI / path.removeprefix("/ui/")).read_bytes()
        desktop = jspeers.start_desktop(
            localhost(rec.url),
            transport=transport,
            count=len(expected),
            login=True,
            user=USER,
            password=PASSWORD,
            deadline_ms=40_000,
        )
        async with desktop:
            await desktop.ready()
            assert await upstream.ring() == 1
            recorded_live = await desktop.result()
        secret_values = await login_secrets(rec.url)
        sessions = {r["session"] for r in upstream.requests if r.get("session")}
        assert await rec.stop() == 0

    # what the desktop saw through relay is what the server sent
    assert recorded_live.notifications == expected
    cassette = cas.load(out)
    _, notes = events_of(cassette)
    assert [{"channel": n.channel, "data": n.data} for n in notes] == expected
    assert causes(cassette) == [
        (s, c, op)
        for (s, c), op in zip(
            [(e["data"]["call"]["state"], e["data"]["call"]["id"]) for e in expected],
            [
                None,
                "Answer",
                "InitiateTransfer",
                "InitiateTransfer",
                "CompleteTransfer",
                "CompleteTransfer",
            ],
            strict=True,
        )
    ]
    assert [(m, p) for m, p, *_ in rest_view(cassette)][:4] == [
        ("GET", "/api/v2/me"),
        ("POST", f"/api/v2/me/calls/{jspeers.CALL_5}"),
        ("POST", f"/api/v2/me/calls/{jspeers.CALL_5}"),
        ("POST", f"/api/v2/me/calls/{jspeers.CALL_6}"),
    ]
    # the faye server's handshake advice (timeout 30 s by default)
    assert cassette.desktop().bayeux.advice.get("timeout") == 30_000
    assert sorted(a.path for a in cassette.assets) == [
        "/ui/img/logo.png",
        "/ui/index.html",
        "/ui/js/app.js",
        "/ui/js/copy-of-app.js",
    ]
    assert len(list(cas.assets_dir(out).iterdir())) == 3  # app.js and its copy: stored once
    assert all(a.status == 200 for a in cassette.assets)
    assert_no_secret(out, PASSWORD, BASIC, *secret_values, *sessions)

    # replay the new cassette to the same desktop, its files included (any order, any number)
    async with replay_server(out) as url:
        async with aiohttp.ClientSession() as http:
            for path in (
                "/ui/img/logo.png",
                "/ui/js/app.js",
                "/ui/img/logo.png",
                "/ui/index.html",
                "/ui/js/copy-of-app.js",
            ):
                async with http.get(url + path) as r:
                    assert r.status == 200, path
                    assert await r.read() == (UI / path.removeprefix("/ui/")).read_bytes()
        replayed = await desktop_session(url, transport, len(expected))
    assert replayed.notifications == expected
    assert [(r["method"], r["path"].split("?")[0], r["status"]) for r in replayed.rest] == [
        (r["method"], r["path"].split("?")[0], r["status"]) for r in recorded_live.rest
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_recording_a_replay_of_the_seed_gives_the_seed_back(
    transport: str, tmp_path: Path
) -> None:
    original = cas.load(seed())
    count = len(list(original.desktop().notifications()))
    out = tmp_path / "round-trip.json"
    # --keep-origin: the recorded URIs stay as the seed has them (no rewrite to relay's origin)
    async with replay_server(seed(), "--keep-origin") as url, recording(url, out, "-q") as rec:
        # the seed has no login exchange: the desktop goes straight to CometD
        result = await desktop_session(rec.url, transport, count, login=False)
        assert await rec.stop() == 0
    assert result.notifications == jspeers.cassette_notifications(seed())
    again = cas.load(out)
    _, notes = events_of(again)
    _, seed_notes = events_of(original)
    assert [(n.channel, n.data) for n in notes] == [(n.channel, n.data) for n in seed_notes]
    assert causes(again) == causes(original)
    # the seed's operations and their answers, nothing more
    assert rest_view(again) == rest_view(original)
    assert again.desktop().bayeux == original.desktop().bayeux


async def test_kill_9_mid_session_then_recover_loses_nothing_the_desktop_saw(
    tmp_path: Path,
) -> None:
    expected = jspeers.cassette_notifications(seed())
    out = tmp_path / "killed.json"
    async with (
        jspeers.upstream_server(seed(), user=USER, password=PASSWORD) as upstream,
        recording(upstream.url, out) as rec,
    ):
        desktop = jspeers.start_desktop(
            localhost(rec.url),
            transport="long-polling",
            count=len(expected),
            login=True,
            user=USER,
            password=PASSWORD,
            deadline_ms=40_000,
        )
        async with desktop:
            await desktop.ready()
            assert await upstream.ring() == 1

            def dialing(lines: list[str]) -> bool:
                return any('"Dialing"' in line for line in lines)

            assert desktop._stdout is not None
            await desktop._stdout.wait_for(dialing, 30)
            assert await rec.stop(signal.SIGKILL) == -signal.SIGKILL
            seen = desktop.snapshot()
    assert not out.exists()
    code, _, stderr = await run_relay("recover", str(out))
    assert code == 0, stderr
    recovered = cas.load(out)
    _, notes = events_of(recovered)
    got = [{"channel": n.channel, "data": n.data} for n in notes]
    assert len(seen.notifications) >= 4
    assert got[: len(seen.notifications)] == seen.notifications
    answered = [
        (r["method"], r["path"].split("?")[0], json.dumps(r["body"], sort_keys=True))
        for r in seen.rest
    ]
    recorded = [
        (m, p, json.dumps(b, sort_keys=True))
        for m, p, b, status, _ in rest_view(recovered)
        if status is not None
    ]
    assert all(a in recorded for a in answered), (answered, recorded)
