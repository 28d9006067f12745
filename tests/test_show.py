"""relay show: relay/show.py (render) and relay/cli/show.py (the command)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay import cassette as cm
from relay.cli import main
from relay.show import format_ms, render

REPO = Path(__file__).resolve().parents[1]
TWO_STEP = REPO / "cassettes" / "two-step-transfer.json"
ORIGINAL = "011DJV5JI898NB2L04000VTAES000005"
CONSULT = "011DJV5JI898NB2L04000VTAES000006"


def event_lines(lines: list[str]) -> list[str]:
    """The lines after the column header."""
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["TIME", "DESKTOP"])
    return lines[start + 1 :]


def fields(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


# --- render ---------------------------------------------------------------------------------


def test_render_header_of_the_seed() -> None:
    lines = render(cm.load(TWO_STEP))
    assert lines[0].startswith("Two-step transfer")
    header = "\n".join(lines[: lines.index("")])
    assert re.search(r"^  upstream +http://127\.0\.0\.1:8080$", header, re.M)
    assert re.search(r"^  recorded +at an unknown time by relay \d", header, re.M)
    assert re.search(r"^  desktops +agent \(3 exchanges, 6 notifications, CometD at ", header, re.M)
    assert "9 over 48.100 s: 3 exchanges (0 failed), 6 notifications (5 caused, 1 unsolic" in header
    assert re.search(r"^  assets +0$", header, re.M)
    assert re.search(r"^  notes +Built by scripts/seed_cassettes\.py from Sample 2", header, re.M)


def test_render_one_line_per_event_of_the_seed() -> None:
    rows = [fields(line) for line in event_lines(render(cm.load(TWO_STEP)))]
    original = f"/api/v2/me/calls/{ORIGINAL}"
    consult = f"/api/v2/me/calls/{CONSULT}"
    common = ["notify", "/v2/me/calls", "CallStateChangeMessage StatusChange"]
    assert rows == [
        ["0.000", "agent", "n1", *common, f"call {ORIGINAL}", "Ringing", "unsolicited"],
        ["10.000", "agent", "x1", "POST", original, "Answer", "200 OK (+50 ms)"],
        [
            "10.100",
            "agent",
            "n2",
            *common,
            f"call {ORIGINAL}",
            "Established",
            "caused by x1 Answer",
        ],
        ["36.000", "agent", "x2", "POST", original, "InitiateTransfer", "200 OK (+50 ms)"],
        [
            "36.100",
            "agent",
            "n3",
            *common,
            f"call {ORIGINAL}",
            "Held",
            "caused by x2 InitiateTransfer",
        ],
        [
            "36.100",
            "agent",
            "n4",
            *common,
            f"call {CONSULT}",
            "Dialing",
            "caused by x2 InitiateTransfer",
        ],
        ["48.000", "agent", "x3", "POST", consult, "CompleteTransfer", "200 OK (+50 ms)"],
        [
            "48.100",
            "agent",
            "n5",
            *common,
            f"call {ORIGINAL}",
            "Released",
            "caused by x3 CompleteTransfer",
        ],
        [
            "48.100",
            "agent",
            "n6",
            *common,
            f"call {CONSULT}",
            "Released",
            "caused by x3 CompleteTransfer",
        ],
    ]


def test_render_columns_are_aligned() -> None:
    lines = render(cm.load(TWO_STEP))
    table = [lines[lines.index("") + 1], *event_lines(lines)]
    # The shared columns start at the same place on every line, the time ends at the same place.
    for word in ("DESKTOP", "ID", "KIND", "EVENT"):
        col = table[0].index(word)
        assert all(line[col - 2 : col] == "  " and line[col] != " " for line in table), word
    assert len({line.index(".") + 4 for line in table[1:]}) == 1
    # Within each kind, the kind's own columns line up too.
    notes = [line for line in table if " notify " in line]
    for token in ("call ", "Ringing", "unsolicited"):
        col = notes[0].index(token)
        assert all(line[col - 2 : col] == "  " and line[col] != " " for line in notes), token
    posts = [line for line in table if " POST " in line]
    col = posts[0].index("200 OK")
    assert all(line.index("200 OK") == col for line in posts)
    assert all(line == line.rstrip() for line in lines)


def _exchange(**kw: object) -> cm.Exchange:
    base: dict[str, object] = {
        "id": "x1",
        "at_ms": 0,
        "request": cm.Request(method="GET", path="/api/v2/me", query=[("subresources", "*")]),
        "response": None,
        "error": "connection refused",
    }
    base.update(kw)
    return cm.Exchange(**base)  # type: ignore[arg-type]


def test_render_failed_exchange_query_and_other_notifications() -> None:
    device = cm.Notification(
        id="n1",
        at_ms=1500,
        channel="/v2/me/devices",
        message={"channel": "/v2/me/devices", "data": {"messageType": "DeviceStateChangeMessage"}},
    )
    odd = cm.Notification(id="n2", at_ms=62_005, channel="/v2/me", message={"data": [1, 2]})
    c = cm.Cassette(
        desktops=[
            cm.Desktop(name="supervisor", events=[_exchange()]),
            cm.Desktop(name="agent", events=[device, odd]),
        ]
    )
    lines = render(c)
    assert lines[0] == "(untitled cassette)"
    assert any(re.match(r"^  upstream +-$", line) for line in lines)
    at = next(i for i, line in enumerate(lines) if line.startswith("  desktops"))
    assert re.match(r"^  desktops +supervisor \(1 exchange, 0 notifications, CometD", lines[at])
    assert re.match(r"^ {12}agent \(0 exchanges, 2 notifications, CometD", lines[at + 1])
    assert any(
        "3 over 62.005 s: 1 exchange (1 failed), 2 notifications (0 caused, 2 unsol" in line
        for line in lines
    )
    rows = [fields(line) for line in event_lines(lines)]
    assert rows[0] == [
        "0.000",
        "supervisor",
        "x1",
        "GET",
        "/api/v2/me?subresources=*",
        "-",
        "error: connection refused",
    ]
    assert rows[1] == [
        "1.500",
        "agent",
        "n1",
        "notify",
        "/v2/me/devices",
        "DeviceStateChangeMessage",
        "-",
        "-",
        "unsolicited",
    ]
    assert rows[2] == ["62.005", "agent", "n2", "notify", "/v2/me", "-", "-", "-", "unsolicited"]


def test_render_cause_across_desktops() -> None:
    x = _exchange(
        at_ms=10,
        request=cm.Request(
            method="POST", path="/api/v2/me/calls/c1", body=cm.Body.json({"operationName": "Hold"})
        ),
        response=cm.Response(status=400, reason="Bad Request"),
        response_ms=None,
        error=None,
    )
    n = cm.Notification(id="n1", at_ms=5, channel="/v2/me/calls", message={}, cause="x1")
    c = cm.Cassette(desktops=[cm.Desktop(name="a", events=[x]), cm.Desktop(name="b", events=[n])])
    rows = [fields(line) for line in event_lines(render(c))]
    assert rows[0][:3] == ["0.005", "b", "n1"] and rows[0][-1] == "caused by x1 Hold"
    assert rows[1][:3] == ["0.010", "a", "x1"] and rows[1][-2:] == ["Hold", "400 Bad Request"]


def test_render_escapes_control_characters() -> None:
    x = _exchange(error="boom\n\x1b[31mred", request=cm.Request(method="GET", path="/a\tb"))
    c = cm.Cassette(meta=cm.Meta(title="t\r\nu"), desktops=[cm.Desktop(name="d\x07", events=[x])])
    lines = render(c)
    assert lines[0] == "t\\r\\nu"
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text and "\t" not in text and "\r" not in text
    (row,) = event_lines(lines)
    assert "error: boom\\n\\x1b[31mred" in row and "/a\\tb" in row and "d\\x07" in row


def test_render_empty_cassette() -> None:
    lines = render(cm.Cassette())
    assert lines[-1] == "(no events)"
    assert any(re.match(r"^  desktops +none$", line) for line in lines)


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0.000"), (7, "0.007"), (48100, "48.100"), (3_600_001, "3600.001"), (-5, "-0.005")],
)
def test_format_ms(ms: int, text: str) -> None:
    assert format_ms(ms) == text


# --- the command ----------------------------------------------------------------------------


def test_cli_show_prints_the_rendering() -> None:
    result = CliRunner().invoke(main, ["show", str(TWO_STEP)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "\n".join(render(cm.load(TWO_STEP))) + "\n"
    assert "caused by x3 CompleteTransfer" in result.stdout


def test_cli_show_bad_cassette_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 99, "desktops": []}', encoding="utf-8")
    result = CliRunner().invoke(main, ["show", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert str(bad) in result.stderr and "version 99 is newer" in result.stderr
    assert "Traceback" not in result.output


def test_cli_show_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = CliRunner().invoke(main, ["show", str(missing)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {missing}: cannot read (No such file or directory)\n"


def test_cli_show_html_into_a_missing_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "page.html"
    result = CliRunner().invoke(main, ["show", str(TWO_STEP), "--html", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {out.parent}: no such directory\n"
    assert not (tmp_path / "no").exists()  # no directory tree made behind a typo


def test_cli_show_in_a_real_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"[]")
    code = "from relay.cli import main; main()"
    ok = subprocess.run(
        [sys.executable, "-c", code, "show", str(TWO_STEP)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "caused by x1 Answer" in ok.stdout
    failed = subprocess.run(
        [sys.executable, "-c", code, "show", str(bad)], capture_output=True, text=True
    )
    assert failed.returncode == 2
    assert (
        failed.stderr == f"Error: {bad}: not a cassette: the top level is a list, not an object\n"
    )


def test_show_and_diff_leave_the_garbage_collector_as_they_found_it() -> None:
    import gc

    assert gc.isenabled()
    assert CliRunner().invoke(main, ["show", str(TWO_STEP)]).exit_code == 0
    assert gc.isenabled()
    assert CliRunner().invoke(main, ["diff", str(TWO_STEP), str(TWO_STEP)]).exit_code == 0
    assert gc.isenabled()
