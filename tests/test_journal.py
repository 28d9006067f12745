"""The journal: append, torn last line, recover, and the cassette built from records."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from relay import cassette as cas
from relay import recorder as rec
from relay.cassette import Asset, Body
from relay.errors import RecordError
from relay.journal import Journal, finish, journal_path, read_records, recover, store_asset

T0 = 1_800_000_000.0


def start() -> dict[str, object]:
    return rec.start_record(
        at=T0,
        upstream="http://gws:8080",
        relay_version="0.1.0",
        desktop="agent",
        bayeux_path="/api/v2/notifications",
    )


def request(method: str = "POST", path: str = "/api/v2/me/calls/c1", op: str = "Answer"):
    return rec.build_request(
        method=method,
        path=path,
        query=[("a", "1")],
        headers=[("Content-Type", "application/json"), ("Content-Length", "24")],
        content=orjson.dumps({"operationName": op}),
    )


def response(body: bytes = b'{"statusCode":0}'):
    return rec.build_response(
        status=200,
        reason="OK",
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        content=body,
    )


def note(call: str, state: str) -> dict[str, object]:
    return {"channel": "/v2/me/calls", "data": {"call": {"id": call, "state": state}}}


def session_records() -> list[dict[str, object]]:
    return [
        start(),
        rec.advice_record({"interval": 0, "reconnect": "retry", "timeout": 30000}),
        rec.notification_record("n1", T0 + 1.0, note("c1", "Ringing")),
        rec.request_record("x1", T0 + 2.0, request()),
        # GWS publishes before it answers
        rec.notification_record("n2", T0 + 2.05, note("c1", "Established")),
        rec.response_record("x1", T0 + 2.1, response()),
        rec.advice_record({"timeout": 1}),  # only the first handshake's advice counts
        rec.request_record("x2", T0 + 3.0, request(op="Hangup")),
        rec.error_record("x2", T0 + 3.2, "Server disconnected"),
        rec.asset_record(Asset(path="/ui/a.js", sha256="ab" * 32, headers=[("ETag", '"1"')])),
        rec.asset_record(Asset(path="/ui/a.js", sha256="cd" * 32)),  # the last one wins
        rec.request_record("x3", T0 + 4.0, request(op="Hold")),  # killed before its answer
    ]


def test_cassette_from_records() -> None:
    c = rec.cassette_from_records(session_records())
    d = c.desktop()
    assert c.meta.upstream == "http://gws:8080" and c.meta.recorded_at == "2027-01-15T08:00:00Z"
    assert d.name == "agent" and d.bayeux.advice["timeout"] == 30000
    assert [(e.id, e.at_ms) for e in d.events] == [
        ("n1", 0),
        ("x1", 1000),
        ("n2", 1050),
        ("x2", 2000),
        ("x3", 3000),
    ]
    x1, x2, x3 = d.exchanges()
    assert x1.response_ms == 1100 and x1.error is None
    assert x1.request.headers == [("Content-Type", "application/json")]  # no wire headers
    assert x1.request.query == [("a", "1")]
    assert x1.response is not None and x1.response.headers == [("Content-Type", "application/json")]
    assert x1.response.body == Body("json", {"statusCode": 0})
    assert x2.response is None and x2.error == "Server disconnected" and x2.response_ms == 2200
    assert x3.response is None and x3.error == rec.UNANSWERED
    assert [n.cause for n in d.notifications()] == [None, "x1"]
    assert [(a.path, a.sha256) for a in c.assets] == [("/ui/a.js", "cd" * 32)]
    cas.loads(cas.dumps(c))  # a valid cassette


def test_journal_append_read_finish(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    j = Journal(journal_path(out))
    assert j.path == tmp_path / "s.json.journal"
    for r in session_records():
        j.append(r)
    # what was appended is in the file before any sync or close (handed to the OS)
    assert len(read_records(j.path)) == len(session_records())
    j.sync()
    j.close()
    with pytest.raises(RecordError):
        j.append(start())
    c = finish(out)
    assert not j.path.exists()
    assert cas.load(out) == c


def test_a_second_journal_for_the_same_output_is_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path / "a.json.journal")
    with pytest.raises(RecordError, match="relay recover"):
        Journal(tmp_path / "a.json.journal")
    j.append(start())
    # a recording that is still running is not "recovered" from under its feet
    with pytest.raises(RecordError, match="still writing"):
        recover(tmp_path / "a.json")
    j.close()
    recover(tmp_path / "a.json")


def test_recover_tolerates_a_torn_last_line_and_skips_a_torn_middle_one(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    lines = b"".join(orjson.dumps(r) + b"\n" for r in session_records())
    journal_path(out).write_bytes(lines + b'{"t":"notification","id":"n3","at":18')
    c = recover(out)
    assert [e.id for e in c.desktop().events] == ["n1", "x1", "n2", "x2", "x3"]
    assert not journal_path(out).exists()
    with pytest.raises(RecordError, match="no journal"):
        recover(out)

    # an unreadable line in the middle (a failed write before the fix) is skipped and counted
    journal_path(out).write_bytes(orjson.dumps(start()) + b"\n{torn\n[1]\n" + lines)
    skipped: list[int] = []
    c = recover(out, skipped)
    assert skipped == [2, 3]
    assert [e.id for e in c.desktop().events] == ["n1", "x1", "n2", "x2", "x3"]
    # a file that does not start as a journal is still refused
    journal_path(out).write_bytes(b"{torn\n" + lines)
    with pytest.raises(RecordError, match="not a relay journal"):
        recover(out)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"t":"request"}\n',
        b"[1]\n" + orjson.dumps(start()),
        b'{"t":"start","at":1}\n{"t":"request","id":"x1"}\n',
    ],
)
def test_bad_journals_are_record_errors(tmp_path: Path, content: bytes) -> None:
    out = tmp_path / "b.json"
    journal_path(out).write_bytes(content)
    with pytest.raises(RecordError):
        recover(out)
    assert not out.exists()


def test_asset_store_is_content_addressed(tmp_path: Path) -> None:
    store = tmp_path / "s.assets"
    a = store_asset(store, b"same")
    b = store_asset(store, b"same")
    c = store_asset(store, b"")
    assert a == b != c
    assert sorted(os.listdir(store)) == sorted({a, c})
    assert (store / a).read_bytes() == b"same"


def test_sync_flushes_the_journal_and_the_assets_tracked_since_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "s.json"
    store = cas.assets_dir(out)
    j = Journal(journal_path(out))
    j.sync()
    assert synced == []  # nothing written: nothing to flush
    digest = store_asset(store, b"app.js")
    j.track(store / digest)
    j.sync()
    assert synced == [str(j.path), str(store / digest), str(store)]
    synced.clear()
    j.append(start())
    j.sync()
    assert synced == [str(j.path)]  # each asset once
    synced.clear()
    j.track(store / store_asset(store, b"app.css"))
    j.close()  # what the last tick did not flush, close does
    assert synced == [str(j.path), str(store / store_asset(store, b"app.css")), str(store)]


def test_bayeux_scanning() -> None:
    body = orjson.dumps(
        [
            {"channel": "/v2/me/calls", "data": {"x": 1}},
            {"channel": "/meta/connect", "successful": True, "data": {"no": 1}},
            {"channel": "/v2/me/echo", "successful": True, "data": {"ack": 1}},
            {"channel": "/v2/me/calls", "id": "5"},  # no data
            {"channel": "/meta/handshake", "successful": True, "advice": {"timeout": 5}},
            "garbage",
            {"no": "channel", "data": 1},
        ]
    )
    scan = rec.scan_bayeux(body)
    assert scan.notifications == [{"channel": "/v2/me/calls", "data": {"x": 1}}]
    assert scan.advice == {"timeout": 5}
    one = rec.scan_bayeux(b'{"channel":"/a","data":2}')
    assert one.notifications == [{"channel": "/a", "data": 2}]
    jsonp = rec.scan_bayeux(b'/**/cb_1([{"channel":"/a","data":"(x)"}]);')
    assert jsonp.notifications == [{"channel": "/a", "data": "(x)"}]
    failed = rec.scan_bayeux(b'[{"channel":"/meta/handshake","successful":false,"advice":{}}]')
    assert failed.advice is None
    assert rec.scan_bayeux(b"not json").notifications == []
    assert rec.scan_bayeux(b"").notifications == []


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/api/v2/notifications", rec.Route.BAYEUX),
        ("GET", "/api/v2/notifications/connect?jsonp=cb", rec.Route.BAYEUX),
        ("POST", "/api/v2/notificationsX", rec.Route.EXCHANGE),
        ("GET", "/api/v2/me?subresources=*", rec.Route.EXCHANGE),
        ("POST", "/ui/login", rec.Route.EXCHANGE),
        ("GET", "/ui/wwe/index.html", rec.Route.ASSET),
        ("GET", "/", rec.Route.ASSET),
        ("OPTIONS", "/api/v2/me", rec.Route.PASS),
        ("CONNECT", "", rec.Route.PASS),
    ],
)
def test_route(method: str, path: str, route: rec.Route) -> None:
    assert rec.route(method, path) is route


def test_a_record_with_undecodable_bytes_is_journaled_sanitised(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.json.journal")
    j.append(start())
    j.append({"t": "advice", "advice": {"q": "\udcff", "n": 10**30}})
    j.close()
    assert read_records(tmp_path / "s.json.journal")[1]["advice"] == {"q": "\\xff", "n": 1e30}


def test_a_failed_write_leaves_no_torn_line(tmp_path: Path) -> None:
    import resource
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "f.json.journal"
    # In a child: a file size limit cuts the third record's write short.
    code = textwrap.dedent(
        f"""
        import resource, signal
        from relay.journal import Journal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        j = Journal({str(path)!r})
        j.append({start()!r})
        j.append({{"t": "advice", "advice": {{"a": 1}}}})
        size = j.path.stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, {resource.RLIM_INFINITY}))
        try:
            j.append({{"t": "advice", "advice": {{"big": "x" * 200}}}})
        except OSError:
            print("failed")
        unlimited = {resource.RLIM_INFINITY}
        resource.setrlimit(resource.RLIMIT_FSIZE, (unlimited, unlimited))
        j.append({{"t": "advice", "advice": {{"b": 2}}}})
        j.close()
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "failed", done.stderr
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["t"] for line in lines] == ["start", "advice", "advice"]
    skipped: list[int] = []
    read_records(path, skipped)
    assert skipped == []
