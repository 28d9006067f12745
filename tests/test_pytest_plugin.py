"""relay.testing's ReplayServer and relay.pytest_plugin's marker and fixture.

The plugin is tested end to end with pytester: each inner run is a real pytest subprocess whose
tests talk to a real replay server over HTTP on 127.0.0.1 (urllib and aiohttp, raw Bayeux
long-polling). Inner runs cost about a second each, so each one covers several cases.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from relayproc import relay_server

from relay import cassette as cas
from relay.errors import CassetteError
from relay.testing import (
    RecordingError,
    RecordingServer,
    ReplayMismatch,
    ReplayServer,
    ReplayServerError,
)

ROOT = Path(__file__).resolve().parent.parent
SEED_PATH = ROOT / "cassettes" / "two-step-transfer.json"
CALL = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
ANSWER = {"operationName": "Answer"}
BAYEUX = "/api/v2/notifications"

# What the inner tests import: a small desktop over real HTTP (urllib for REST, aiohttp for
# Bayeux long-polling with the relay_session cookie kept).
DESKTOP = """
import json
import urllib.request

import aiohttp

CALL = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
CONSULT = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000006"


def post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


class Desktop:
    def __init__(self, base):
        self.base = base
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies from 127.0.0.1
            timeout=aiohttp.ClientTimeout(total=10),
        )
        self.client_id = None

    async def bayeux(self, *messages):
        async with self.http.post(self.base + "/api/v2/notifications", json=list(messages)) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def call(self, path, body):
        async with self.http.post(self.base + path, json=body) as r:
            return r.status, await r.json()

    async def start(self):
        (reply,) = await self.bayeux({"channel": "/meta/handshake", "version": "1.0",
                                      "supportedConnectionTypes": ["long-polling"]})
        self.client_id = reply["clientId"]
        await self.connect()
        (sub,) = await self.bayeux({"channel": "/meta/subscribe", "clientId": self.client_id,
                                    "subscription": "/v2/me/*"})
        assert sub["successful"], sub

    async def connect(self):
        return await self.bayeux({"channel": "/meta/connect", "clientId": self.client_id,
                                  "connectionType": "long-polling"})

    async def states(self, count):
        got = []
        for _ in range(count + 5):
            got += [m["data"]["call"]["state"] for m in await self.connect()
                    if not m["channel"].startswith("/meta/")]
            if len(got) >= count:
                break
        return got

    async def close(self):
        await self.http.close()
"""

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory with the inner desktop module and asyncio's auto mode."""
    pytester.makeini(INI)
    pytester.makepyfile(desktop=DESKTOP)
    return pytester


def no_relay_traceback(result: pytest.RunResult) -> None:
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "During handling" not in out
    assert "relay/testing.py" not in out
    assert "relay/pytest_plugin.py" not in out


# --- the plugin, end to end --------------------------------------------------------------


def test_sync_and_async_tests_talk_to_the_replay_over_http(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_desk=f"""
        import pytest
        from desktop import CALL, CONSULT, Desktop, post

        SEED = {str(SEED_PATH)!r}

        @pytest.mark.relay(SEED)
        def test_answer_sync(relay_replay):
            assert relay_replay.url.startswith("http://127.0.0.1:")
            assert post(relay_replay.url + CALL, {{"operationName": "Answer"}}) == (
                200, {{"statusCode": 0}})

        @pytest.mark.relay(SEED, timeout_ms=3000)
        async def test_answer_then_established_async(relay_replay):
            desk = Desktop(relay_replay.url)
            try:
                await desk.start()
                assert await desk.states(1) == ["Ringing"]
                assert await desk.call(CALL, {{"operationName": "Answer"}}) == (
                    200, {{"statusCode": 0}})
                assert await desk.states(1) == ["Established"]
            finally:
                await desk.close()

        @pytest.mark.relay(SEED, timeout_ms=3000, played=True)
        async def test_whole_scenario_played(relay_replay):
            desk = Desktop(relay_replay.url)
            try:
                await desk.start()
                assert await desk.states(1) == ["Ringing"]
                await desk.call(CALL, {{"operationName": "Answer"}})
                assert await desk.states(1) == ["Established"]
                await desk.call(CALL, {{"operationName": "InitiateTransfer",
                                        "destination": {{"phoneNumber": "5001"}}}})
                assert await desk.states(2) == ["Held", "Dialing"]
                await desk.call(CONSULT, {{"operationName": "CompleteTransfer"}})
                assert await desk.states(2) == ["Released", "Released"]
            finally:
                await desk.close()
        """
    )
    result = run(inner)
    result.assert_outcomes(passed=3)


def test_unmatched_fails_at_teardown_unless_not_strict_and_played_checks_the_end(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(
        test_misses=f"""
        import urllib.error
        import pytest
        from desktop import CALL, post

        SEED = {str(SEED_PATH)!r}

        def hold(url):
            with pytest.raises(urllib.error.HTTPError) as e:
                post(url + CALL, {{"operationName": "Hold"}})
            assert e.value.code == 404

        @pytest.mark.relay(SEED)
        def test_strict_miss(relay_replay):
            hold(relay_replay.url)

        @pytest.mark.relay(SEED, strict=False)
        def test_lenient_miss(relay_replay):
            hold(relay_replay.url)
            assert relay_replay.unmatched[0]["request"].endswith("(Hold)")

        @pytest.mark.relay(SEED, played=True)
        def test_unfinished(relay_replay):
            post(relay_replay.url + CALL, {{"operationName": "Answer"}})

        @pytest.mark.relay(SEED, played=True)
        def test_nothing_sent(relay_replay):
            pass
        """
    )
    result = run(inner)
    result.assert_outcomes(passed=4, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_strict_miss*",
            f"relay: 1 request matched nothing in {SEED_PATH}:",
            f"  [[]s1-*[]] POST {CALL} (Hold)",
            f"      closest is POST {CALL} (Answer) [[]x1[]]:"
            " operationName: recorded 'Answer', got 'Hold'",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_unfinished*",
            f"relay: session s1-* has not played the whole of {SEED_PATH}: 0 of 9 events played",
            "  next: n1 /v2/me/calls StatusChange Ringing, waiting for a subscription*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_nothing_sent*",
            f"relay: no desktop session was started: no request reached {SEED_PATH}",
        ]
    )
    assert "test_lenient_miss" not in "\n".join(
        line for line in result.outlines if line.startswith("ERROR")
    )
    no_relay_traceback(result)


def test_missing_bad_and_markerless_say_so_in_one_message(inner: pytest.Pytester) -> None:
    inner.path.joinpath("broken.json").write_text("{not json", encoding="utf-8")
    inner.makepyfile(
        test_wrong="""
        import pytest

        @pytest.mark.relay("nope.json")
        def test_missing(relay_replay):
            pass

        @pytest.mark.relay("broken.json")
        def test_broken(relay_replay):
            pass

        def test_no_marker(relay_replay):
            pass
        """
    )
    result = run(inner)
    result.assert_outcomes(errors=3)
    here = inner.path
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_missing*",
            "relay: cassette 'nope.json' not found; looked at:",
            f"  {here / 'nope.json'}",
            f"  {here / 'cassettes' / 'nope.json'}",
            "To record it: pytest --relay-record-mode=once --relay-upstream URL",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_broken*", f"relay: {here / 'broken.json'}: *"]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_no_marker*",
            'relay_replay needs a cassette: add @pytest.mark.relay("NAME.json") to the test, '
            "its class or its module",
        ]
    )
    no_relay_traceback(result)


def test_lookup_beside_the_test_and_in_the_cassette_dir_with_class_and_module_markers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI + "relay_cassette_dir = recordings\n")
    beside = pytester.mkdir("beside")
    shutil.copy(SEED_PATH, beside / "seed.json")
    recordings = pytester.mkdir("recordings")
    shutil.copy(SEED_PATH, recordings / "recorded.json")
    beside.joinpath("test_beside.py").write_text(
        textwrap.dedent(
            """
            import pytest

            pytestmark = pytest.mark.relay("seed.json")

            def test_module_marker(relay_replay):
                assert relay_replay.status()["cassette"].startswith("Two-step transfer")
                assert relay_replay.name.endswith("beside/seed.json")
            """
        ),
        encoding="utf-8",
    )
    pytester.makepyfile(
        test_dir="""
    import pytest

    @pytest.mark.relay("recorded.json", step=True)
    class TestClassMarker:
        def test_one(self, relay_replay):
            assert relay_replay.status()["step"] is True
            assert relay_replay.name.endswith("recordings/recorded.json")

        @pytest.mark.relay("seed.json")  # closest wins: not beside this file, not in recordings
        def test_closest_marker(self, relay_replay):
            pass
    """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of TestClassMarker.test_closest_marker*",
            "relay: cassette 'seed.json' not found; looked at:",
            f"  {pytester.path / 'seed.json'}",
            f"  {pytester.path / 'recordings' / 'seed.json'}",
        ]
    )


# --- record modes ---------------------------------------------------------------------------

# The inner test of the record modes: the transfer's first step over real HTTP. Recording, it
# goes through relay record to the upstream; replaying, to the cassette it wrote.
ANSWER_TEST = """
import pytest
from desktop import CALL, Desktop

@pytest.mark.relay("new.json", timeout_ms=3000)
async def test_answer(relay_replay):
    desk = Desktop(relay_replay.url)
    try:
        await desk.start()
        assert await desk.states(1) == ["Ringing"]
        assert await desk.call(CALL, {"operationName": "Answer"}) == (200, {"statusCode": 0})
        assert await desk.states(1) == ["Established"]
    finally:
        await desk.close()
"""

# The lab GWS of these tests: a real relay replay of the seed cassette, no waiting.
UPSTREAM = ("replay", str(SEED_PATH), "--port", "0", "--speed", "0", "--timeout", "3000")


def file_id(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def free_port_url() -> str:
    """An http URL where nobody listens (a port bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_record_once_then_replay_without_upstream_then_record_all(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(test_rec=ANSWER_TEST)
    new = inner.path / "new.json"
    before = {p.name for p in inner.path.iterdir()}

    # 1. once, the cassette missing: recorded through relay record, beside the test file.
    async with relay_server(*UPSTREAM) as upstream:
        first = await asyncio.to_thread(
            run, inner, "--relay-record-mode=once", "--relay-upstream", upstream.url
        )
    first.assert_outcomes(passed=1)
    created = {p.name for p in inner.path.iterdir()} - before
    # nothing else beside it (no asset store, no journal left, no directory made)
    assert {n for n in created if n.startswith("new") or n == "cassettes"} == {"new.json"}
    recorded = cas.load(new)
    assert recorded.meta.title == "test_rec.py::test_answer"
    assert recorded.meta.upstream == upstream.url
    desk = recorded.desktop()
    exchanges = [
        (x.request.method, x.request.path, x.request.operation_name) for x in desk.exchanges()
    ]
    assert exchanges == [("POST", CALL, "Answer")]
    assert [n.data["call"]["state"] for n in desk.notifications()] == ["Ringing", "Established"]
    recorded_once = file_id(new)

    # 2. none (no options), the upstream gone: replayed from new.json, which stays as it was.
    second = await asyncio.to_thread(run, inner)
    second.assert_outcomes(passed=1)
    assert file_id(new) == recorded_once

    # ... and once with the cassette there replays too: the upstream is not even reachable.
    third = await asyncio.to_thread(
        run, inner, "--relay-record-mode=once", "--relay-upstream", free_port_url()
    )
    third.assert_outcomes(passed=1)
    assert file_id(new) == recorded_once

    # 3. all, from the ini options this time: recorded again, the file replaced.
    async with relay_server(*UPSTREAM) as upstream2:
        inner.makeini(INI + f"relay_record_mode = all\nrelay_upstream = {upstream2.url}\n")
        again = await asyncio.to_thread(run, inner)
    again.assert_outcomes(passed=1)
    assert file_id(new) != recorded_once
    rerecorded = cas.load(new)
    assert (rerecorded.meta.upstream, rerecorded.meta.recorded_at) != (
        recorded.meta.upstream,
        recorded.meta.recorded_at,
    )
    assert [n.data["call"]["state"] for n in rerecorded.desktop().notifications()] == [
        "Ringing",
        "Established",
    ]


def test_once_without_upstream_and_a_recording_whose_upstream_is_down(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(test_rec=ANSWER_TEST)
    new = inner.path / "new.json"

    result = run(inner, "--relay-record-mode=once")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_answer*",
            "relay: cassette 'new.json' not found; looked at:",
            f"  {new}",
            f"  {inner.path / 'cassettes' / 'new.json'}",
            "relay: --relay-record-mode=once needs the server to record new.json from: "
            "--relay-upstream URL (or the relay_upstream ini option)",
        ]
    )
    no_relay_traceback(result)
    assert not new.exists()

    # Nobody listens upstream: relay record answers 502, the test fails on its own assertion
    # and the recorder is still stopped cleanly: it wrote the cassette (empty here: a failed
    # Bayeux handshake is no exchange).
    result = run(inner, "--relay-record-mode=once", "--relay-upstream", free_port_url())
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *<h1>502 Bad Gateway</h1>", "FAILED test_rec.py::test_answer*"])
    assert "ERROR" not in result.stdout.str()
    assert cas.load(new).meta.title == "test_rec.py::test_answer"

    # A recording that cannot start fails the test with relay record's stderr.
    inner.makepyfile(test_rec=ANSWER_TEST.replace('"new.json"', '"nowhere/new.json"'))
    result = run(inner, "--relay-record-mode=all", "--relay-upstream", free_port_url())
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_answer*",
            f"relay: relay record did not start (recording {inner.path / 'nowhere' / 'new.json'}*",
            f"*{inner.path / 'nowhere'}: no such directory*",
        ]
    )
    assert not (inner.path / "nowhere").exists()
    no_relay_traceback(result)


def test_recording_server_without_pytest(tmp_path: Path) -> None:
    out = tmp_path / "direct.json"
    with ReplayServer(SEED_PATH) as upstream:
        assert upstream.mode == "replay"
        recorder = RecordingServer(
            out, upstream=upstream.url, confdir=tmp_path / "mitm", title="direct"
        )
        with recorder:
            assert recorder.mode == "record" and recorder.running
            assert recorder.url.startswith("http://127.0.0.1:")
            assert post(recorder.url + CALL, ANSWER) == (200, {"statusCode": 0})
            with pytest.raises(RecordingError, match=r"release_next\(\) is for a replay"):
                recorder.release_next()
            with pytest.raises(RecordingError, match="unmatched is for a replay"):
                recorder.unmatched  # noqa: B018
        assert recorder.returncode == 0 and not recorder.running
    recorded = cas.load(out)
    assert recorded.meta.title == "direct"
    assert [x.request.operation_name for x in recorded.desktop().exchanges()] == ["Answer"]
    with pytest.raises(RecordingError, match="no such directory"):
        RecordingServer(tmp_path / "nowhere" / "x.json", upstream=upstream.url).start()


# --- ReplayServer without pytest's help ------------------------------------------------------


def post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def test_replay_server_serves_reports_and_checks() -> None:
    with ReplayServer(SEED_PATH) as server:
        assert post(server.url + CALL, ANSWER) == (200, {"statusCode": 0})
        status, miss = post(server.url + CALL, {"operationName": "Hold"})
        assert status == 404 and miss["relay"] == "no-match"
        status_json = server.status()
        assert status_json["speed"] == 0
        assert [s["served"] for s in status_json["sessions"]] == [1, 0]
        assert server.unmatched == [miss]
        with pytest.raises(ReplayMismatch) as e:
            server.check()
        assert f"{CALL} (Hold)" in str(e.value)
        assert any("NO MATCH" in line for line in server.log)
    assert not server.running
    assert server.status()["unmatched_total"] == 1  # kept from when it stopped
    with pytest.raises(ReplayMismatch, match="has not played the whole"):
        server.check(played=True, unmatched=False)
    with pytest.raises(ReplayServerError, match="not running"):
        server.release_next()


async def test_step_mode_release_next_from_the_test(tmp_path: Path) -> None:
    # The server has its own loop: this test's loop can block on status() and go on.
    with ReplayServer(cas.load(SEED_PATH), step=True, timeout_ms=3000) as server:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(server.url, cookie_jar=jar) as http:

            async def bayeux(message: dict[str, Any]) -> list[dict[str, Any]]:
                async with http.post(BAYEUX, json=[message]) as resp:
                    assert resp.status == 200
                    replies: list[dict[str, Any]] = await resp.json()
                    return replies

            (hs,) = await bayeux(
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"],
                }
            )
            cid = hs["clientId"]
            connect = {
                "channel": "/meta/connect",
                "clientId": cid,
                "connectionType": "long-polling",
            }
            await bayeux(connect)
            await bayeux(
                {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/v2/me/*"}
            )
            (session,) = server.status()["sessions"]
            assert session["waiting_for"] == "presenter"
            assert server.release_next(session["id"]) == [session["id"]]
            got = await bayeux(connect)
            assert [m["data"]["call"]["state"] for m in got if "data" in m] == ["Ringing"]
            server.pause()
            assert server.status()["paused"] is True
            server.resume()
            server.reset(session["id"])
            assert server.status()["sessions"][0]["position"] == 0
            with pytest.raises(ReplayServerError, match="no session 'nope'"):
                server.reset("nope")
    server.check()


def test_a_missing_cassette_is_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(CassetteError) as e:
        ReplayServer(missing).start()
    assert str(e.value).startswith(f"{missing}: cannot read")
    with pytest.raises(CassetteError, match="no desktop called 'bob'"):
        ReplayServer(SEED_PATH, desktop="bob").start()
