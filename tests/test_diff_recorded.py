"""`relay diff` on recordings made with `relay record`: the seed's two server versions, served
by a real Bayeux server (faye, tests/js/upstream.mjs) to the official CometD client, recorded
through the real mitmproxy, then compared as a user would (the CLI)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import jspeers
import pytest
import pytest_asyncio
from relayproc import run_relay
from test_record import recording

pytestmark = jspeers.node_marks

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_1 = ROOT / "cassettes" / "initiate-transfer.json"
SAMPLE_2 = ROOT / "cassettes" / "two-step-transfer.json"
USER, PASSWORD = jspeers.USER, jspeers.PASSWORD
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}

#: The real differences between the seed's two server versions (issue 4), and nothing else.
EXPECTED = [
    ("Held", "capability-gained", "data.call.capabilities", None, "Retrieve"),
    ("Held", "capability-lost", "data.call.capabilities", "CompleteTransfer", None),
    ("Held", "capability-lost", "data.call.capabilities", "SwapCalls", None),
    ("Held", "field-added", "data.extensions", None, {"BusinessCall": 0, "WrapUpTime": 0}),
    ("Held", "field-removed", "data.call.monitoring", False, None),
    ("Dialing", "field-added", "data.extensions", None, {"BusinessCall": 0, "WrapUpTime": 0}),
    ("Dialing", "field-removed", "data.call.monitoring", False, None),
    ("Dialing", "field-removed", "data.call.parentCallPath", "/calls/<call-?>", None),
]


def localhost(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


async def record_two_step(upstream_cassette: Path, out: Path) -> None:
    """The agent answers, transfers and completes as the notifications arrive."""
    async with (
        jspeers.upstream_server(upstream_cassette, user=USER, password=PASSWORD) as upstream,
        recording(upstream.url, out) as rec,
    ):
        desktop = jspeers.start_desktop(
            localhost(rec.url), transport="long-polling", count=6, login=True,
            user=USER, password=PASSWORD, deadline_ms=40_000,
        )  # fmt: skip
        async with desktop:
            await desktop.ready()
            assert await upstream.ring() == 1
            result = await desktop.result()
        assert [n["data"]["call"]["state"] for n in result.notifications] == [
            "Ringing", "Established", "Held", "Dialing", "Released", "Released",
        ]  # fmt: skip
        assert await rec.stop() == 0


async def record_initiate_transfer(out: Path) -> None:
    """Sample 1: a listening desktop, and InitiateTransfer posted on call ...000M."""
    async with (
        jspeers.upstream_server(SAMPLE_1, user=USER, password=PASSWORD) as upstream,
        recording(upstream.url, out) as rec,
    ):
        desktop = jspeers.start_desktop(
            localhost(rec.url), transport="long-polling", count=2, login=True,
            user=USER, password=PASSWORD, deadline_ms=40_000, no_ops=True,
        )  # fmt: skip
        async with desktop:
            await desktop.ready()
            base = localhost(rec.url)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get(base + "/api/v2/me", headers=AUTH) as r:
                    assert r.status == 200
                    token = {r.headers["X-CSRF-HEADER"]: r.headers["X-CSRF-TOKEN"]}
                body = {
                    "operationName": "InitiateTransfer",
                    "destination": {"phoneNumber": "15002"},
                }
                call = base + "/api/v2/me/calls/01RCC3N118B1V0SL8O7GK2LAES00000M"
                async with http.post(call, json=body, headers={**AUTH, **token}) as r:
                    assert r.status == 200, await r.text()
            result = await desktop.result()
        assert [n["data"]["call"]["state"] for n in result.notifications] == ["Held", "Dialing"]
        assert await rec.stop() == 0


def renamed(source: Path, target: Path) -> Path:
    """The same scenario as another lab would record it: other ids, connIds, device, durations."""
    text = source.read_text()
    for old, new in (
        ("011DJV5JI898NB2L04000VTAES000005", "02AAB7C8D9E0F1A2B3C4D5E6F7000111"),
        ("011DJV5JI898NB2L04000VTAES000006", "02AAB7C8D9E0F1A2B3C4D5E6F7000112"),
        ("007102385535e005", "00a1b2c3d4e5f601"),
        ("007102385535e006", "00a1b2c3d4e5f602"),
        ("efe1ab32-53f9-43ce-b65e-5768c61f7d4a", "0c8e4a7d-1111-4f2b-9c3d-7e6f5a4b3c2d"),
        ('"duration": "10"', '"duration": "13"'),
        ('"duration": "36"', '"duration": "41"'),
        ('"duration": "48"', '"duration": "57"'),
        ('"duration": "12"', '"duration": "16"'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    target.write_text(text)
    return target


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("recordings")
    out = {name: tmp / f"{name}.json" for name in ("sample1", "sample2", "sample2-again")}
    await record_initiate_transfer(out["sample1"])
    await record_two_step(SAMPLE_2, out["sample2"])
    await record_two_step(renamed(SAMPLE_2, tmp / "renamed.json"), out["sample2-again"])
    return out


@pytest.mark.asyncio(loop_scope="module")
async def test_the_two_server_versions_differ_exactly_as_the_seed_does(
    recordings: dict[str, Path],
) -> None:
    code, out, err = await run_relay(
        "diff", str(recordings["sample1"]), str(recordings["sample2"]),
        "--only", "InitiateTransfer", "--format", "json",
    )  # fmt: skip
    assert code == 1, err
    found = [
        (d["notification"].split()[2], d["kind"], d["path"], d["a"], d["b"])
        for d in json.loads(out)["differences"]
    ]
    assert sorted(found, key=repr) == sorted(EXPECTED, key=repr)


@pytest.mark.asyncio(loop_scope="module")
async def test_two_recordings_that_differ_only_in_noise_compare_equal(
    recordings: dict[str, Path],
) -> None:
    code, out, err = await run_relay(
        "diff", str(recordings["sample2"]), str(recordings["sample2-again"])
    )
    assert code == 0, out + err
    # ...and the ids really did differ between the two recordings.
    a, b = (recordings[k].read_text() for k in ("sample2", "sample2-again"))
    assert "011DJV5JI898NB2L04000VTAES000005" in a and "011DJV5JI898NB2L04000VTAES000005" not in b
