"""Regressions of ``relay diff``'s alignment and naming found in review (one test per bug)."""

from __future__ import annotations

import time

import pytest
from test_diff import CONSULT, FIRST, cassette, exchange, notification, scenario
from test_diff_html import bands

from relay import cassette as cm
from relay import diff_align
from relay.diff import DiffOptions, Kind, PathPattern, diff, steps_of
from relay.diff_html import page
from relay.diff_render import render_text

NEW = "NEWCALL000000000042"


def dial(xid: str, at: int, nid: str) -> list[cm.Event]:
    """A Dial of a new call and its Dialing notification."""
    x = exchange(xid, at, "Dial", destination="5002")
    x.request.path = "/api/v2/me/devices/efe1ab32-53f9-43ce-b65e-5768c61f7d4a/calls"
    return [x, notification(nid, at + 100, "Dialing", NEW, cause=xid)]


def test_an_extra_call_early_in_b_does_not_renumber_every_later_call() -> None:
    # B dials a call of its own before the transfer: B's consult call is B's third call, A's
    # second. Each side numbers by first appearance; the comparison must not see that.
    events = scenario()
    b = [*events, *dial("x9", 32_000, "n9")]
    result = diff(cassette(events), cassette(b))
    assert [f.kind for f in result.findings] == [Kind.STEP_EXTRA]
    assert result.findings[0].at == (None, 4)


def test_a_bulk_step_missing_its_first_notification_is_one_finding() -> None:
    calls = [f"CALL{k:012d}" for k in range(5000)]
    notes = [
        notification(f"n{k}", 10_100 + k, ("Ringing", "Established")[k % 2], c, cause="x1")
        for k, c in enumerate(calls)
    ]
    a = [exchange("x1", 10_000, "Answer"), *notes]
    started = time.perf_counter()
    result = diff(cassette(a), cassette([a[0], *notes[1:]]))
    assert [f.kind for f in result.findings] == [Kind.NOTIFICATION_MISSING]
    assert time.perf_counter() - started < 20


def collide() -> tuple[cm.Cassette, cm.Cassette]:
    """A: Hold, Retrieve, Hold (400); B: Hold, Hold, Retrieve, Hold (500)."""
    a = [
        exchange("x1", 1_000, "Hold"),
        exchange("x2", 2_000, "Retrieve"),
        exchange("x3", 3_000, "Hold", status=400),
    ]
    b = [
        exchange("x1", 1_000, "Hold"),
        exchange("x4", 1_500, "Hold"),
        exchange("x2", 2_000, "Retrieve"),
        exchange("x3", 3_000, "Hold", status=500),
    ]
    return cassette(a), cassette(b)


def test_findings_of_steps_with_the_same_label_stay_apart() -> None:
    a, b = collide()
    result = diff(a, b)
    assert render_text(result, a_name="A", b_name="B").endswith("2 differences in 2 steps\n")
    assert [(f.kind, f.at) for f in result.findings] == [
        (Kind.STEP_EXTRA, (None, 1)),
        (Kind.STATUS_CHANGED, (2, 3)),
    ]
    extra, status = result.findings
    assert extra.step != status.step and "B step 2" in extra.step
    assert extra.identity() != status.identity()
    text = render_text(result, a_name="A", b_name="B")
    assert text.endswith("2 differences in 2 steps\n")
    html = page(result, steps_of(a), steps_of(b), a_name="A", b_name="B")
    assert bands(html) == ["same", "added", "same", "changed"]
    sections = html.split('<section class="d-band')[1:]
    assert "d-status-changed" not in sections[1] and "d-status-changed" in sections[3]


def test_a_failed_attempt_inserted_before_a_step_is_one_extra_step() -> None:
    events = scenario()
    failed = exchange("x0", 9_000, "Answer", status=400, answer={"statusCode": 2})
    result = diff(cassette(events), cassette([*events, failed]))
    assert [f.kind for f in result.findings] == [Kind.STEP_EXTRA]
    assert [(f.kind, f.at) for f in result.findings] == [(Kind.STEP_EXTRA, (None, 1))]


def test_desktops_listed_in_another_order_are_the_same_recording() -> None:
    agent = [notification("n1", 0, "Ringing"), exchange("x1", 1_000, "Answer")]
    other = [notification("m1", 0, "Ringing", CONSULT), exchange("y1", 1_000, "Answer", CONSULT)]

    def two(*desktops: tuple[str, list[cm.Event]]) -> cm.Cassette:
        return cm.Cassette(desktops=[cm.Desktop(name, events) for name, events in desktops])

    result = diff(two(("agent", agent), ("super", other)), two(("super", other), ("agent", agent)))
    assert result.equivalent, result.findings


def test_recorded_text_cannot_forge_lines_or_drive_the_terminal() -> None:
    evil = "Held\n0 differences\x1b[8m"
    events = scenario()
    b = [
        notification("n3", 20_100, evil, cause="x2", capabilities=["Evil\x1b]0;x\x07"])
        if isinstance(e, cm.Notification) and e.id == "n3"
        else e
        for e in events
    ]
    b.append(exchange("x7", 60_000, "Evil\r\nop", FIRST))
    text = render_text(diff(cassette(events), cassette(b)), a_name="A\x1b", b_name="B")
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert not any(line.startswith("0 differences") for line in text.splitlines())
    assert "Held\\n0 differences\\x1b[8m" in text


def test_only_keeps_working_with_renaming() -> None:
    events = scenario()
    b = [*events, *dial("x9", 32_000, "n9")]
    options = DiffOptions(only=frozenset({"CompleteTransfer"}))
    assert diff(cassette(events), cassette(b), options).equivalent


def test_a_key_with_a_dot_is_quoted_and_can_be_ignored() -> None:
    events = scenario()

    def with_data(data: dict[str, object]) -> list[cm.Event]:
        n = notification("n2", 10_100, "Established", cause="x1")
        n.message["data"]["userData"] = data
        return [n if e.id == "n2" else e for e in events]

    a, b = with_data({"a.b": 1, "a": {"b": 1}}), with_data({"a.b": 2, "a": {"b": 1}})
    (finding,) = diff(cassette(a), cassette(b)).findings
    assert finding.path == 'data.userData["a.b"]'
    nested = diff(cassette(with_data({"a": {"b": 1}})), cassette(with_data({"a": {"b": 2}})))
    assert [f.path for f in nested.findings] == ["data.userData.a.b"]
    ignore = (PathPattern.parse('data.userData["a.b"]'),)
    assert str(ignore[0]) == 'data.userData["a.b"]'
    assert diff(cassette(a), cassette(b), DiffOptions(ignore=ignore)).equivalent
    assert not diff(
        cassette(a), cassette(b), DiffOptions(ignore=(PathPattern.parse("data.userData.a.b"),))
    ).equivalent
    star = PathPattern.parse('x["*"].y')
    assert star.matches(("x", "*", "y")) and not star.matches(("x", "z", "y"))
    assert (
        str(PathPattern.parse("data.call.participants[*].digits"))
        == "data.call.participants.*.digits"
    )


def test_dropping_every_fourth_of_5000_look_alike_notifications_is_fast() -> None:
    # Past a few hundred edits the old fallback (difflib) was near O(N M) on repetitive keys.
    calls = [f"CALL{k:012d}" for k in range(5000)]
    notes = [
        notification(f"n{k}", 10_100 + k, ("Ringing", "Established")[k % 2], c, cause="x1")
        for k, c in enumerate(calls)
    ]
    a = [exchange("x1", 10_000, "Answer"), *notes]
    b = [a[0], *(n for k, n in enumerate(notes) if k % 4)]
    started = time.perf_counter()
    result = diff(cassette(a), cassette(b))
    elapsed = time.perf_counter() - started
    assert [f.kind for f in result.findings] == [Kind.NOTIFICATION_MISSING] * 1250
    assert elapsed < 6, elapsed


def test_past_the_work_budget_alignment_stays_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diff_align, "MAX_WORK", 0)
    monkeypatch.setattr(diff_align, "MAX_EDITS", 1)
    a = [f"u{k}" if k % 3 == 0 else f"r{k % 5}" for k in range(300)]
    b = [f"u{k}" if k % 3 == 0 else f"r{k % 7}" for k in range(0, 300, 2)] + ["u0", "x"]
    i = j = 0
    for tag, i1, i2, j1, j2 in diff_align.opcodes(a, b):
        assert (i1, j1) == (i, j)
        if tag == "equal":
            assert a[i1:i2] == b[j1:j2]
        i, j = i2, j2
    assert (i, j) == (len(a), len(b))
    pairs = diff_align.align(a, b, a, b)
    assert sorted(p.a for p in pairs if p.a is not None) == list(range(len(a)))
    assert sorted(p.b for p in pairs if p.b is not None) == list(range(len(b)))


def _cycling(n: int) -> list[cm.Event]:
    """One step with ``n`` notifications about 50 calls, all going through the same states."""
    states = ("Established", "Held", "Retrieved")
    return [
        exchange("x1", 10_000, "Answer"),
        *(
            notification(
                f"n{k}", 10_100 + k, states[(k // 50) % 3], f"CYCLE0000000{k % 50:04d}", cause="x1"
            )
            for k in range(n)
        ),
    ]


def test_dropping_the_first_of_look_alike_notifications_renames_by_the_majority() -> None:
    # Without the first notification, B numbers the 50 calls rotated by one; an LCS on keys
    # blind to the call cannot tell which Established went missing.
    a = _cycling(1500)
    result = diff(cassette(a), cassette([a[0], *a[2:]]))
    assert [f.kind for f in result.findings] == [Kind.NOTIFICATION_MISSING]
    # Dropping a later one keeps B's own numbering, which must win then.
    result = diff(cassette(a), cassette([e for e in a if e.id != "n777"]))
    assert [f.kind for f in result.findings] == [Kind.NOTIFICATION_MISSING]
