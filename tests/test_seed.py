"""The seed cassettes: built by scripts/seed_cassettes.py from the InitiateTransfer page.

The facts below are what an independent reader of the page checks; the expected values are read
from the page with plain regular expressions, not with the script's parser.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from relay import cassette as cm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "seed_cassettes.py"
SEED = REPO.parent / "shared" / "reference" / "gws-api-v2-InitiateTransfer.txt"
CASSETTES = REPO / "cassettes"
TWO_STEP = CASSETTES / "two-step-transfer.json"
INITIATE = CASSETTES / "initiate-transfer.json"

needs_seed = pytest.mark.skipif(not SEED.is_file(), reason=f"seed page not found at {SEED}")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def seed_values(key: str) -> list[str]:
    """The page's values of ``"key":"..."``, with the PDF's line breaks taken out."""
    text = SEED.read_text(encoding="utf-8")
    return [re.sub(r"\s+", "", v) for v in re.findall(rf'"{key}":"([^"]*)"', text)]


def calls(path: Path) -> list[dict[str, Any]]:
    c = cm.load(path)
    return [n.data["call"] for n in c.desktop().notifications()]


# --- the script -----------------------------------------------------------------------------


@needs_seed
def test_script_output_equals_committed_cassettes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        result = run_script("--seed", str(SEED), "--out", str(out))
        assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in first.iterdir())
    assert names == ["initiate-transfer.json", "two-step-transfer.json"]
    for name in names:
        produced = (first / name).read_bytes()
        assert produced == (second / name).read_bytes(), f"{name} differs between two runs"
        assert produced == (CASSETTES / name).read_bytes(), (
            f"cassettes/{name} is stale: run python scripts/seed_cassettes.py"
        )


def test_script_missing_seed_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run_script("--seed", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nope.txt" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_script_page_without_samples_is_one_line_exit_2(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_text("InitiateTransfer\nNothing to see here.\n", encoding="utf-8")
    result = run_script("--seed", str(page), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Sample" in result.stderr
    assert "Traceback" not in result.stderr


def test_script_broken_json_names_the_line(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_text('Sample 1\n\n{\n"data":{"a":1\n}\nprose\n', encoding="utf-8")
    result = run_script("--seed", str(page), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "line 3" in result.stderr and result.stderr.count("\n") == 1


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_cassettes_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_parser_joins_broken_strings_and_drops_footers() -> None:
    seed = load_script()
    page = "\n".join(
        [
            "PageTitle",
            "Sample 1",
            "POST api/v2/me/calls/c1",
            "{",
            '"operationName": "Answer"',
            "}",
            "{",
            '"data":{"uri":"http://h/api/v2/ ',
            "",
            "  devices/d1",
            '-x","call":{"id":"c1","duration":"7","uri":"http://h:1/c1"},',
            "PageTitle",
            "",
            "Web Services API Reference 12",
            '"n":"a b"},',
            '"channel":"/v2/me/calls"',
            "}",
        ]
    )
    (sample,) = seed.parse_seed(page)
    request, note = sample.items
    assert (request.method, request.path, request.body) == (
        "POST",
        "/api/v2/me/calls/c1",
        {"operationName": "Answer"},
    )
    assert note.message == {
        "channel": "/v2/me/calls",
        "data": {
            "uri": "http://h/api/v2/devices/d1-x",
            "call": {"id": "c1", "duration": "7", "uri": "http://h:1/c1"},
            "n": "a b",  # whitespace inside one line is the value's own
        },
    }
    built = seed.build_cassette(sample, title="t", notes="n")
    assert [(e.id, e.at_ms) for e in built.desktop().events] == [("x1", 0), ("n1", 100)]
    assert built.meta.upstream == "http://h:1"


# --- Sample 2: the two-step transfer --------------------------------------------------------


def test_two_step_events_in_order() -> None:
    c = cm.load(TWO_STEP)
    assert [d.name for d in c.desktops] == ["agent"]
    rows = [(e.id, e.at_ms, type(e).__name__) for e in c.desktop().events]
    assert rows == [
        ("n1", 0, "Notification"),
        ("x1", 10000, "Exchange"),
        ("n2", 10100, "Notification"),
        ("x2", 36000, "Exchange"),
        ("n3", 36100, "Notification"),
        ("n4", 36100, "Notification"),
        ("x3", 48000, "Exchange"),
        ("n5", 48100, "Notification"),
        ("n6", 48100, "Notification"),
    ]


def test_two_step_notification_states_and_causes() -> None:
    c = cm.load(TWO_STEP)
    notes = list(c.desktop().notifications())
    assert [n.data["call"]["state"] for n in notes] == [
        "Ringing",
        "Established",
        "Held",
        "Dialing",
        "Released",
        "Released",
    ]
    assert [n.cause for n in notes] == [None, "x1", "x2", "x2", "x3", "x3"]
    assert [n.data["call"]["id"][-6:] for n in notes] == [
        "000005",
        "000005",
        "000005",
        "000006",
        "000005",
        "000006",
    ]
    for n in notes:
        assert n.channel == "/v2/me/calls"
        assert n.message["channel"] == "/v2/me/calls"
        assert set(n.message) == {"channel", "data"}
        assert n.data["messageType"] == "CallStateChangeMessage"
        assert n.data["notificationType"] == "StatusChange"


def test_two_step_requests() -> None:
    c = cm.load(TWO_STEP)
    xs = list(c.desktop().exchanges())
    original = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000005"
    consult = "/api/v2/me/calls/011DJV5JI898NB2L04000VTAES000006"
    assert [(x.request.method, x.request.path) for x in xs] == [
        ("POST", original),
        ("POST", original),
        ("POST", consult),
    ]
    assert [x.request.json for x in xs] == [
        {"operationName": "Answer"},
        {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}},
        {"operationName": "CompleteTransfer"},
    ]
    for x in xs:
        assert x.request.headers == [("Content-Type", "application/json")]
        assert x.request.query == []
        assert x.response is not None and x.error is None
        assert (x.response.status, x.response.reason) == (200, "OK")
        assert x.response.headers == [("Content-Type", "application/json")]
        assert x.response.body == cm.Body("json", {"statusCode": 0})
        assert x.response_ms == x.at_ms + 50


def test_two_step_meta_and_bayeux() -> None:
    c = cm.load(TWO_STEP)
    assert c.meta.upstream == "http://127.0.0.1:8080"
    assert c.meta.recorded_at == ""
    assert c.meta.relay_version
    assert "Sample 2" in c.meta.notes and "InitiateTransfer" in c.meta.notes
    assert "seed_cassettes.py" in c.meta.notes
    assert c.meta.title
    d = c.desktop()
    assert d.bayeux.path == "/api/v2/notifications"
    assert d.bayeux.advice == {"interval": 0, "reconnect": "retry", "timeout": 30000}
    assert c.assets == []


def test_two_step_held_call_across_the_page_footer() -> None:
    # The page footer falls inside this notification's participants list.
    held = calls(TWO_STEP)[2]
    assert held["state"] == "Held"
    assert held["participants"] == [
        {"e164Number": "", "formattedPhoneNumber": "5000", "phoneNumber": "5000", "digits": "5000"}
    ]
    assert held["dnis"] == "5005"
    assert held["capabilities"][-1] == "InitiateTransfer"
    assert held["capabilities"][4] == "Retrieve"


def test_two_step_payloads_kept_as_recorded() -> None:
    ringing, established, held, dialing, released, consult_released = calls(TWO_STEP)
    assert [c["duration"] for c in (ringing, established, held, dialing, released)] == [
        "0",
        "10",
        "36",
        "0",
        "48",
    ]
    assert consult_released["duration"] == "12"
    assert released["capabilities"] == [] and consult_released["capabilities"] == []
    assert dialing["callType"] == "Consult" and "monitoring" not in dialing
    assert ringing["capabilities"] == [
        "UpdateUserData",
        "DeleteUserData",
        "AttachUserData",
        "DeleteUserDataPair",
        "Answer",
    ]
    data = cm.load(TWO_STEP).desktop().events[0]
    assert isinstance(data, cm.Notification)
    assert data.data["extensions"] == {"WrapUpTime": 0, "BusinessCall": 0}


# --- Sample 1: InitiateTransfer alone -------------------------------------------------------


def test_initiate_transfer_events() -> None:
    c = cm.load(INITIATE)
    d = c.desktop()
    assert [d.name for d in c.desktops] == ["agent"]
    assert [(e.id, e.at_ms) for e in d.events] == [("x1", 0), ("n1", 100), ("n2", 100)]
    (x,) = d.exchanges()
    assert x.request.method == "POST"
    assert x.request.path == "/api/v2/me/calls/01RCC3N118B1V0SL8O7GK2LAES00000M"
    assert x.request.json == {
        "operationName": "InitiateTransfer",
        "destination": {"phoneNumber": "15002"},
    }
    assert x.response is not None and x.response.body == cm.Body("json", {"statusCode": 0})
    assert x.response_ms == 50
    notes = list(d.notifications())
    assert [(n.data["call"]["id"], n.data["call"]["state"]) for n in notes] == [
        ("01RCC3N118B1V0SL8O7GK2LAES00000M", "Held"),
        ("01RCC3N118B1V0SL8O7GK2LAES00000N", "Dialing"),
    ]
    assert [n.cause for n in notes] == ["x1", "x1"]
    # Sample 1 was captured on another server: the payloads differ and must stay so.
    assert all(n.data["call"]["monitoring"] is False for n in notes)
    assert all("extensions" not in n.data for n in notes)
    assert notes[1].data["call"]["parentCallPath"] == "/calls/01RCC3N118B1V0SL8O7GK2LAES00000H"
    assert c.meta.upstream == "http://127.0.0.1:8080"
    assert "Sample 1" in c.meta.notes


# --- both -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TWO_STEP, INITIATE], ids=lambda p: p.name)
def test_no_whitespace_inside_string_values(path: Path) -> None:
    c = cm.load(path)
    for e in c.desktop().events:
        value = e.message if isinstance(e, cm.Notification) else e.request.json
        for s in strings(value):
            assert not re.search(r"\s", s), f"{e.id}: whitespace in {s!r}"


@pytest.mark.parametrize("path", [TWO_STEP, INITIATE], ids=lambda p: p.name)
def test_footer_text_nowhere(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "Web Services API Reference" not in text
    assert "API Reference 6" not in text
    for e in cm.load(path).desktop().notifications():
        # The page title may appear only as a capability.
        hits = [s for s in strings(e.message) if "InitiateTransfer" in s]
        assert hits == ["InitiateTransfer"] * len(hits)
        assert hits == [c for c in e.data["call"]["capabilities"] if c == "InitiateTransfer"]


@needs_seed
@pytest.mark.parametrize("key", ["deviceUri", "parentCallUri"])
def test_uris_as_in_the_seed(key: str) -> None:
    expected = seed_values(key)
    got = [c[key] for path in (INITIATE, TWO_STEP) for c in calls(path) if key in c]
    assert got == expected
    assert len(got) == (8 if key == "deviceUri" else 3)
    assert all(re.fullmatch(r"http://127\.0\.0\.1:8080/api/v2/[-/\w]+", v) for v in got)


@needs_seed
def test_notification_data_equals_the_seed() -> None:
    # An independent reading of the page: drop the footer, glue the broken strings, decode
    # every {"data": ..., "channel": ...} block in turn.
    text = SEED.read_text(encoding="utf-8")
    text = re.sub(r"\nInitiateTransfer\n\s*\nWeb Services API Reference \d+\n", "\n", text)
    text = re.sub(r'("[^"\n]*)\n\s*\n([^"\n]*")', r"\1\2", text)
    pattern = r'^\{\s*"data":.*?\n"channel":"[^"]+"\s*\}'
    blocks = [orjson.loads(m.group(0)) for m in re.finditer(pattern, text, re.M | re.S)]
    got = [
        n.message for path in (INITIATE, TWO_STEP) for n in cm.load(path).desktop().notifications()
    ]
    assert len(blocks) == 8
    assert got == blocks
    # Lists keep the page's order (object keys are sorted on disk, as for every cassette).
    assert [b["data"]["call"]["capabilities"] for b in blocks] == [
        m["data"]["call"]["capabilities"] for m in got
    ]
