"""recorder's pure parts: Bayeux parsing robustness and journal-safe records."""

from __future__ import annotations

import orjson

from relay import recorder as rec


def test_one_odd_value_does_not_lose_the_batch() -> None:
    raw = (
        b'[{"channel":"/v2/me/calls","data":{"x":"ok"}},'
        b'{"channel":"/v2/me/calls","data":{"x":"\\ud800"}}]'
    )
    scan = rec.scan_bayeux(raw)
    assert [m["data"]["x"] for m in scan.notifications] == ["ok", "\ud800"]


def test_a_byte_order_mark_is_skipped() -> None:
    raw = b'\xef\xbb\xbf[{"channel":"/v2/me/calls","data":{"x":1}}]'
    assert [m["data"] for m in rec.scan_bayeux(raw).notifications] == [{"x": 1}]
    jsonp = b'\xef\xbb\xbfcb([{"channel":"/v2/me/calls","data":{"x":2}}]);'
    assert [m["data"] for m in rec.scan_bayeux(jsonp).notifications] == [{"x": 2}]


def test_big_integers_do_not_crash_and_are_floats_like_orjson_makes_them() -> None:
    # A limitation, documented: the journal and cassette (orjson) cannot hold > 64-bit ints.
    raw = b'[{"channel":"/v2/me/devices","data":{"n":1000000000000000000000000000000,"m":5}}]'
    (msg,) = rec.scan_bayeux(raw).notifications
    assert msg["data"] == {"n": 1e30, "m": 5}
    odd = b'[{"channel":"/a","data":{"n":1000000000000000000000000000000,"s":"\\udfff"}}]'
    (msg,) = rec.scan_bayeux(odd).notifications
    assert msg["data"]["n"] == 1e30
    orjson.dumps(rec.sanitise(rec.notification_record("n1", 0.0, msg)))


def test_sanitise_makes_undecodable_bytes_visible_text() -> None:
    # mitmproxy keeps an undecodable byte as a lone surrogate (surrogateescape)
    record = rec.request_record(
        "x1",
        0.0,
        rec.build_request(
            method="GET",
            path="/api/v2/me",
            query=[("q", "\udcff")],
            headers=[("Content-Disposition", 'attachment; filename="caf\udce9 é.txt"')],
            content=None,
        ),
    )
    clean = rec.sanitise(record)
    assert clean["request"]["query"] == [["q", "\\xff"]]
    assert clean["request"]["headers"] == [
        ["Content-Disposition", 'attachment; filename="caf\\xe9 é.txt"']
    ]
    orjson.dumps(clean)
    assert rec.sanitise({"a": [1, "b", None, True, 2.5]}) == {"a": [1, "b", None, True, 2.5]}
