"""relay/cassette.py: the model, the file format (version 1), loading errors, atomic saving."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay import cassette as cm
from relay.errors import CassetteError

SEEDS = sorted((Path(__file__).resolve().parents[1] / "cassettes").glob("*.json"))


# --- factories ------------------------------------------------------------------------------


def exchange(
    *,
    id: str = "x1",
    at_ms: int = 0,
    path: str = "/api/v2/me/calls/c1",
    operation: str = "Answer",
    status: int | None = 200,
    error: str | None = None,
) -> cm.Exchange:
    response = None
    if status is not None:
        response = cm.Response(
            status=status,
            reason="OK",
            headers=[("Content-Type", "application/json")],
            body=cm.Body.json({"statusCode": 0}),
        )
    return cm.Exchange(
        id=id,
        at_ms=at_ms,
        request=cm.Request(
            method="POST",
            path=path,
            query=[("a", "1"), ("a", "2")],
            headers=[("Content-Type", "application/json")],
            body=cm.Body.json({"operationName": operation}),
        ),
        response=response,
        response_ms=at_ms + 50 if response is not None else None,
        error=error,
    )


def notification(
    *, id: str = "n1", at_ms: int = 100, state: str = "Ringing", cause: str | None = None
) -> cm.Notification:
    return cm.Notification(
        id=id,
        at_ms=at_ms,
        channel="/v2/me/calls",
        message={
            "channel": "/v2/me/calls",
            "data": {"messageType": "CallStateChangeMessage", "call": {"state": state}},
        },
        cause=cause,
    )


def cassette(*, events: list[cm.Event] | None = None, desktops: int = 1) -> cm.Cassette:
    if events is None:
        events = [exchange(), notification(cause="x1")]
    ds = [cm.Desktop(name="agent", events=events)]
    for i in range(1, desktops):
        ds.append(cm.Desktop(name=f"agent{i + 1}", events=[]))
    return cm.Cassette(
        meta=cm.Meta(
            title="t",
            recorded_at="2026-01-01T00:00:00Z",
            upstream="http://gws:8080",
            relay_version="0.1.0",
            notes="n",
            extra={"lab": "A"},
        ),
        desktops=ds,
        assets=[cm.Asset(path="/ui/app.js", sha256="ab" * 32, headers=[("ETag", "1")])],
    )


def raw_cassette() -> dict[str, Any]:
    """A valid cassette as its JSON value, to break in one place."""
    value: dict[str, Any] = orjson.loads(cm.dumps(cassette()))
    return value


def load_error(tmp_path: Path, content: bytes | Any) -> str:
    """Write ``content`` (bytes, or a value to encode as JSON) and return the load error."""
    path = tmp_path / "bad.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.raises(CassetteError) as info:
        cm.load(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    assert info.value.path == str(path)
    return message


# --- round trip and file layout -------------------------------------------------------------


def test_round_trip_of_a_built_cassette() -> None:
    original = cassette(desktops=2)
    data = cm.dumps(original)
    again = cm.loads(data)
    assert again == original
    assert cm.dumps(again) == data


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_round_trip_of_the_seed_cassettes(path: Path) -> None:
    data = path.read_bytes()
    assert cm.dumps(cm.loads(data)) == data


def _assert_sorted(value: Any) -> None:
    if isinstance(value, list):
        for v in value:
            _assert_sorted(v)
    elif isinstance(value, tuple):  # object as pairs, from object_pairs_hook
        keys = [k for k, _ in value]
        assert keys == sorted(keys), keys
        for _, v in value:
            _assert_sorted(v)


def test_file_layout_sorted_keys_two_space_indent_trailing_newline() -> None:
    data = cm.dumps(cassette())
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    _assert_sorted(json.loads(data, object_pairs_hook=tuple))
    lines = data.decode().splitlines()
    assert lines[0] == "{" and lines[1].startswith('  "assets"')
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0 and "\t" not in line, line
    # Equal to the canonical form written by the standard library with the same rules.
    canonical = json.dumps(json.loads(data), indent=2, sort_keys=True, ensure_ascii=False)
    assert data.decode() == canonical + "\n"


def test_file_keeps_meta_extra_and_non_ascii() -> None:
    c = cassette()
    c.meta.title = "Übergabe: 转接"
    again = cm.loads(cm.dumps(c))
    assert again.meta.title == "Übergabe: 转接"
    assert again.meta.extra == {"lab": "A"}
    assert "Übergabe".encode() in cm.dumps(c)


def test_missing_optional_parts_take_defaults() -> None:
    raw = {
        "version": 1,
        "desktops": [
            {
                "name": "agent",
                "events": [
                    {
                        "type": "exchange",
                        "id": "x1",
                        "at_ms": 0,
                        "request": {"method": "GET", "path": "/api/v2/me"},
                        "error": "connection refused",
                    }
                ],
            }
        ],
    }
    c = cm.loads(json.dumps(raw).encode())
    assert c.meta == cm.Meta()
    d = c.desktop()
    assert d.bayeux == cm.BayeuxParams()
    (x,) = d.exchanges()
    assert x.response is None and x.error == "connection refused"
    assert x.request.query == [] and x.request.headers == [] and x.request.body is None
    assert c.assets == []


def test_model_helpers() -> None:
    c = cassette(events=[exchange(at_ms=5), notification(at_ms=1)], desktops=1)
    c.desktops.append(cm.Desktop(name="b", events=[notification(id="n2", at_ms=3)]))
    assert [e.id for e in c.events()] == ["n1", "n2", "x1"]
    assert c.find("n2") is c.desktops[1].events[0]
    assert c.find("zz") is None
    assert c.desktop().name == "agent" and c.desktop("b").name == "b"
    with pytest.raises(CassetteError, match=r"no desktop called 'c' \(the cassette has: agent, b"):
        c.desktop("c")
    with pytest.raises(CassetteError, match="no desktop"):
        cm.Cassette().desktop()
    x = exchange(operation="InitiateTransfer")
    assert x.request.operation_name == "InitiateTransfer"
    assert x.request.header("content-type") == "application/json"
    assert x.response is not None and x.response.header("CONTENT-TYPE") == "application/json"
    assert x.request.header("Accept") is None
    assert cm.Request(method="GET", path="/").operation_name is None
    n = notification(state="Held")
    assert n.data["call"]["state"] == "Held"
    assert cm.BayeuxParams(advice={"timeout": 45000}).timeout_ms == 45000
    assert cm.BayeuxParams(advice={"timeout": "x"}).timeout_ms == 60000


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "ctype", "kind", "value"),
    [
        (b'{"statusCode":0}', "application/json", "json", {"statusCode": 0}),
        (b'{"a":[1,2]}', "application/json;charset=UTF-8", "json", {"a": [1, 2]}),
        (b"[1, 2]", None, "json", [1, 2]),
        (b'  {"a":1}', None, "json", {"a": 1}),
        (b"{not json", "application/json", "text", "{not json"),
        (b"hello", "text/plain", "text", "hello"),
        (b"<p>\xc3\xa9</p>", "text/html; charset=utf-8", "text", "<p>é</p>"),
        (b"var a = 1;", "application/javascript", "text", "var a = 1;"),
        (b"a=1&b=2", "application/x-www-form-urlencoded", "text", "a=1&b=2"),
        (b"cb([]);", "text/javascript", "text", "cb([]);"),
        (b"plain", None, "text", "plain"),
        (b"\x89PNG\r\n\x1a\n\x00", "image/png", "base64", "iVBORw0KGgoA"),
        (b"\xff\xfe", "text/plain", "base64", "//4="),
        (b"\xff\xfe", None, "base64", "//4="),
        (b"{}", "application/octet-stream", "base64", "e30="),
    ],
)
def test_body_classification(data: bytes, ctype: str | None, kind: str, value: Any) -> None:
    body = cm.Body.from_bytes(data, ctype)
    assert body is not None
    assert (body.kind, body.value) == (kind, value)
    back = cm.Body.from_dict(body.to_dict(), "body")
    assert back == body
    if kind != "json":
        assert body.to_bytes() == data
    else:
        assert orjson.loads(body.to_bytes()) == value


@pytest.mark.parametrize("ctype", [None, "application/json", "text/plain", "image/png"])
def test_empty_body_is_none(ctype: str | None) -> None:
    assert cm.Body.from_bytes(b"", ctype) is None
    assert cm.Body.from_dict(None, "body") is None


@given(st.binary(max_size=200), st.sampled_from([None, "application/json", "text/plain", "x/y"]))
def test_any_body_survives_the_file(data: bytes, ctype: str | None) -> None:
    body = cm.Body.from_bytes(data, ctype)
    if body is None:
        assert data == b""
        return
    stored = orjson.loads(orjson.dumps(body.to_dict()))
    back = cm.Body.from_dict(stored, "body")
    assert back == body
    if body.kind != "json":
        assert back is not None and back.to_bytes() == data


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("text", "expected null or one of"),
        ({}, "expected null or one of"),
        ({"json": 1, "text": "a"}, "expected null or one of"),
        ({"xml": "<a/>"}, "unknown body kind 'xml'"),
        ({"text": 3}, "value not a string"),
        ({"base64": "***"}, "invalid base64"),
    ],
)
def test_bad_body(raw: Any, problem: str) -> None:
    with pytest.raises(CassetteError, match=r"^req\.body: ") as info:
        cm.Body.from_dict(raw, "req.body")
    assert problem in str(info.value)


# --- errors: every one a CassetteError, one line naming the file and the problem -----------


def test_not_json(tmp_path: Path) -> None:
    assert "not valid JSON" in load_error(tmp_path, b'{"version": 1,')


def test_not_utf8(tmp_path: Path) -> None:
    assert "not valid JSON" in load_error(tmp_path, b'{"version": 1, "x": "\xff"}')


def test_empty_file(tmp_path: Path) -> None:
    assert "not valid JSON" in load_error(tmp_path, b"")


@pytest.mark.parametrize(("value", "kind"), [([], "list"), ("x", "str"), (1, "int"), (None, "")])
def test_top_level_not_an_object(tmp_path: Path, value: Any, kind: str) -> None:
    message = load_error(tmp_path, value)
    assert "the top level is a" in message and "not an object" in message and kind in message


@pytest.mark.parametrize("version", [None, "1", 1.0, True])
def test_no_integer_version(tmp_path: Path, version: Any) -> None:
    raw = raw_cassette()
    if version is None:
        del raw["version"]
    else:
        raw["version"] = version
    assert "no integer 'version'" in load_error(tmp_path, raw)


def test_newer_version(tmp_path: Path) -> None:
    raw = raw_cassette()
    raw["version"] = cm.CASSETTE_VERSION + 1
    message = load_error(tmp_path, raw)
    assert f"version {cm.CASSETTE_VERSION + 1} is newer" in message and "upgrade relay" in message


@pytest.mark.parametrize("version", [0, -3])
def test_unknown_older_version(tmp_path: Path, version: int) -> None:
    raw = raw_cassette()
    raw["version"] = version
    assert f"unknown cassette version {version}" in load_error(tmp_path, raw)


def test_older_version_is_upgraded_by_the_migration_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    # A pretend version 0 that called the desktops "sessions".
    def v0_to_v1(raw: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in raw.items() if k != "sessions"}
        return {**out, "desktops": raw["sessions"], "version": 1}

    monkeypatch.setitem(cm.MIGRATIONS, 0, v0_to_v1)
    raw = raw_cassette()
    raw["version"] = 0
    raw["sessions"] = raw.pop("desktops")
    assert cm.loads(json.dumps(raw).encode()) == cassette()


def _set(raw: dict[str, Any], where: str, value: Any) -> None:
    """Set (or with ``...`` delete) the value at a dotted path such as ``desktops.0.name``."""
    *parents, last = where.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value


BROKEN: list[tuple[str, Any, str]] = [
    # (where, new value or ... to delete, what the message says)
    ("desktops", ..., "cassette: missing 'desktops'"),
    ("desktops", {}, "cassette.desktops: expected list, got dict"),
    ("meta", [], "cassette.meta: expected dict, got list"),
    ("meta.title", 3, "meta.title: expected str, got int"),
    ("assets", "x", "cassette.assets: expected list, got str"),
    ("assets.0", 1, "assets[0]: expected an object"),
    ("assets.0.sha256", ..., "assets[0]: missing 'sha256'"),
    ("desktops.0", "agent", "desktops[0]: expected an object"),
    ("desktops.0.name", ..., "desktops[0]: missing 'name'"),
    ("desktops.0.events", ..., "desktops[0]: missing 'events'"),
    ("desktops.0.bayeux", 1, "desktops[0].bayeux: expected dict, got int"),
    ("desktops.0.bayeux.advice", [], "desktops[0].bayeux.advice: expected dict, got list"),
    ("desktops.0.events.0", [], "desktops[0].events[0]: expected an object"),
    ("desktops.0.events.0.type", "call", "events[0].type: unknown event type 'call'"),
    ("desktops.0.events.0.id", ..., "desktops[0].events[0]: missing 'id'"),
    ("desktops.0.events.0.id", 1, "desktops[0].events[0].id: expected str, got int"),
    ("desktops.0.events.0.at_ms", "0", "events[0].at_ms: expected int, got str"),
    ("desktops.0.events.0.at_ms", 1.5, "events[0].at_ms: expected int, got float"),
    ("desktops.0.events.0.at_ms", True, "events[0].at_ms: expected int, got bool"),
    ("desktops.0.events.0.request", ..., "desktops[0].events[0]: missing 'request'"),
    ("desktops.0.events.0.request.method", ..., "events[0].request: missing 'method'"),
    ("desktops.0.events.0.request.query", {}, "events[0].request.query: expected a list"),
    ("desktops.0.events.0.request.headers.0", ["a"], "request.headers[0]: expected a [name"),
    ("desktops.0.events.0.request.headers.0", ["a", 1], "request.headers[0]: expected a [name"),
    ("desktops.0.events.0.request.body", {"xml": ""}, "request.body: unknown body kind 'xml'"),
    ("desktops.0.events.0.response.status", "200", "response.status: expected int, got str"),
    ("desktops.0.events.0.response", None, "an exchange needs a response or an error"),
    ("desktops.0.events.0.response", 200, "events[0].response: expected dict, got int"),
    ("desktops.0.events.0.response_ms", "5", "events[0].response_ms: expected int, got str"),
    ("desktops.0.events.0.error", 1, "events[0].error: expected str, got int"),
    ("desktops.0.events.1.channel", ..., "desktops[0].events[1]: missing 'channel'"),
    ("desktops.0.events.1.message", "{}", "events[1].message: expected dict, got str"),
    ("desktops.0.events.1.message.channel", "/v2/me/devices", "differs from the event's channel"),
    ("desktops.0.events.1.cause", 1, "events[1].cause: expected str, got int"),
    ("desktops.0.events.1.id", "x1", "events[1].id: duplicate event id 'x1'"),
    ("desktops.0.events.1.at_ms", -1, "events[1].at_ms: events are not in time order"),
    ("desktops.0.events.1.cause", "n1", "events[1].cause: 'n1' is not the id of an exchange"),
    ("desktops.0.events.1.cause", "x9", "events[1].cause: 'x9' is not the id of an exchange"),
]


@pytest.mark.parametrize(("where", "value", "problem"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_field(tmp_path: Path, where: str, value: Any, problem: str) -> None:
    raw = raw_cassette()
    _set(raw, where, value)
    assert problem in load_error(tmp_path, raw)


def test_duplicate_id_across_desktops(tmp_path: Path) -> None:
    raw = raw_cassette()
    raw["desktops"].append(
        {"name": "b", "events": [copy.deepcopy(raw["desktops"][0]["events"][1])]}
    )
    assert "desktops[1].events[0].id: duplicate event id 'n1'" in load_error(tmp_path, raw)


def test_strange_ids_stay_on_one_line(tmp_path: Path) -> None:
    raw = raw_cassette()
    _set(raw, "desktops.0.events.1.id", "n\n1")
    _set(raw, "desktops.0.events.1.cause", "x\n9")
    assert "desktops[0].events[1].cause: 'x\\n9' is not" in load_error(tmp_path, raw)


def test_cause_on_another_desktop_is_fine() -> None:
    c = cassette(events=[exchange()])
    c.desktops.append(cm.Desktop(name="b", events=[notification(cause="x1")]))
    assert cm.loads(cm.dumps(c)) == c


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(CassetteError) as info:
        cm.load(path)
    assert str(info.value) == f"{path}: cannot read (No such file or directory)"
    with pytest.raises(CassetteError, match=r"cannot read \(Is a directory\)$"):
        cm.load(tmp_path)


def test_loads_without_a_path_names_only_the_problem() -> None:
    with pytest.raises(CassetteError, match=r"^not valid JSON \(") as info:
        cm.loads(b"nope")
    assert info.value.path is None
    with pytest.raises(CassetteError, match=r"^cassette: missing 'desktops'$"):
        cm.loads(b'{"version": 1}')


# Fuzz the parser (house style habit 12): anything either loads or raises CassetteError.

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@given(st.data(), _json)
def test_fuzz_any_change_loads_or_fails_clearly(data: st.DataObject, value: Any) -> None:
    raw = raw_cassette()
    path = data.draw(st.sampled_from(_paths(raw)[1:]))
    node: Any = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    try:
        loaded = cm.loads(orjson.dumps(raw))
    except CassetteError as e:
        assert "\n" not in str(e)
    else:
        assert cm.loads(cm.dumps(loaded)) == loaded


@given(st.binary(max_size=64))
def test_fuzz_any_bytes_load_or_fail_clearly(data: bytes) -> None:
    try:
        cm.loads(data)
    except CassetteError as e:
        assert "\n" not in str(e)


# --- saving ---------------------------------------------------------------------------------


def test_save_writes_the_bytes_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "c.json"
    cm.save(cassette(), path)
    assert path.read_bytes() == cm.dumps(cassette())
    assert os.listdir(path.parent) == ["c.json"]
    cm.save(cassette(events=[]), path)  # over an existing file
    assert cm.load(path).desktop().events == []
    assert os.listdir(path.parent) == ["c.json"]


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.json"
    cm.save(cassette(), path)
    old = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(CassetteError) as info:
        cm.save(cassette(events=[]), path)
    assert str(info.value) == f"{path}: cannot write (No space left on device)"
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["c.json"]


def test_failed_replace_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CassetteError, match=r"cannot write \(Permission denied\)$"):
        cm.save(cassette(), path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["c.json"]


def test_save_where_the_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    path = tmp_path / "file" / "c.json"
    with pytest.raises(CassetteError) as info:
        cm.save(cassette(), path)
    assert str(info.value).startswith(f"{path}: cannot write (")
    assert "\n" not in str(info.value)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_saved_file_mode_follows_the_umask(tmp_path: Path) -> None:
    # tempfile.mkstemp would leave 0600: a cassette only its writer could read.
    path = tmp_path / "c.json"
    cm.save(cassette(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()


def test_saving_over_a_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b"{}")
    path.chmod(0o640)
    cm.save(cassette(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert cm.load(path) == cassette()


def test_body_json_round_trips_through_bytes() -> None:
    body = cm.Body.json({"b": [1, "é"], "a": None})
    assert orjson.loads(body.to_bytes()) == {"b": [1, "é"], "a": None}
    assert cm.Body("base64", "AAE=").to_bytes() == b"\x00\x01"
