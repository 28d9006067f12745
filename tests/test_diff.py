"""relay diff: steps aligned, notifications aligned, noise canonicalised away, CLI exit codes."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from relay import cassette as cm
from relay.cli import main
from relay.diff import (
    DiffError,
    DiffOptions,
    Finding,
    Kind,
    PathPattern,
    diff,
    steps_of,
)
from relay.diff_align import align, opcodes
from relay.diff_render import render_json, render_text

REPO = Path(__file__).resolve().parents[1]
INITIATE = REPO / "cassettes" / "initiate-transfer.json"
TWO_STEP = REPO / "cassettes" / "two-step-transfer.json"

ORIGIN = "http://127.0.0.1:8080"
DEVICE = "efe1ab32-53f9-43ce-b65e-5768c61f7d4a"
FIRST, CONSULT = "011DJV5JI898NB2L04000VTAES000005", "011DJV5JI898NB2L04000VTAES000006"
CONN = {FIRST: "007102385535e005", CONSULT: "007102385535e006"}
BASIC = ["UpdateUserData", "DeleteUserData", "AttachUserData", "DeleteUserDataPair"]
CAPS = {
    "Ringing": [*BASIC, "Answer"],
    "Established": [*BASIC, "Hangup", "Hold", "InitiateTransfer", "SendDtmf"],
    "Held": [*BASIC, "Hangup", "Retrieve", "InitiateTransfer"],
    "Dialing": [*BASIC, "Hangup", "SwapCalls", "CompleteTransfer", "SendDtmf"],
    "Released": [],
}
NUMBERS = {FIRST: "5000", CONSULT: "5001"}


# --- factories ------------------------------------------------------------------------------


def exchange(
    xid: str,
    at: int,
    op: str,
    call_id: str = FIRST,
    *,
    status: int = 200,
    answer: Any = None,
    **fields: Any,
) -> cm.Exchange:
    return cm.Exchange(
        id=xid,
        at_ms=at,
        request=cm.Request(
            "POST",
            f"/api/v2/me/calls/{call_id}",
            headers=[("Content-Type", "application/json")],
            body=cm.Body.json({"operationName": op, **fields}),
        ),
        response=cm.Response(status, "OK", body=cm.Body.json(answer or {"statusCode": 0})),
        response_ms=at + 50,
    )


def notification(
    nid: str,
    at: int,
    state: str,
    call_id: str = FIRST,
    *,
    cause: str | None = None,
    number: str | None = None,
    notification_type: str = "StatusChange",
    **extra: Any,
) -> cm.Notification:
    """A CallStateChangeMessage about ``call_id`` as Sample 2 has it."""
    phone = number or NUMBERS.get(call_id, "5999")
    data_call: dict[str, Any] = {
        "id": call_id,
        "callUuid": call_id,
        "state": state,
        "connId": CONN.get(call_id, "0071023855350999"),
        "deviceUri": f"{ORIGIN}/api/v2/devices/{DEVICE}",
        "participants": [
            {"digits": phone, "e164Number": "", "formattedPhoneNumber": phone, "phoneNumber": phone}
        ],
        "dnis": phone,
        "callType": "Consult" if call_id == CONSULT else "Internal",
        "capabilities": list(CAPS.get(state, BASIC)),
        "duration": str(at // 1000),
        "mute": "Off",
        "uri": f"{ORIGIN}/api/v2/me/calls/{call_id}",
        "path": f"/calls/{call_id}",
    }
    if call_id == CONSULT:
        data_call["parentCallUri"] = f"{ORIGIN}/api/v2/me/calls/{FIRST}"
    data_call.update(extra)
    message = {
        "channel": "/v2/me/calls",
        "data": {
            "notificationType": notification_type,
            "call": data_call,
            "phoneNumber": "5005",
            "messageType": "CallStateChangeMessage",
        },
    }
    return cm.Notification(nid, at, "/v2/me/calls", message, cause)


def cassette(events: list[cm.Event]) -> cm.Cassette:
    events = sorted(events, key=lambda e: e.at_ms)
    return cm.Cassette(desktops=[cm.Desktop("agent", events)])


def scenario() -> list[cm.Event]:
    """Ringing, Answer, Hold, Retrieve, InitiateTransfer, CompleteTransfer (Sample 2 and more)."""
    return [
        notification("n1", 0, "Ringing"),
        exchange("x1", 10_000, "Answer"),
        notification("n2", 10_100, "Established", cause="x1"),
        exchange("x2", 20_000, "Hold"),
        notification("n3", 20_100, "Held", cause="x2"),
        exchange("x3", 30_000, "Retrieve"),
        notification("n4", 30_100, "Established", cause="x3"),
        exchange("x4", 36_000, "InitiateTransfer", destination={"phoneNumber": "5001"}),
        notification("n5", 36_100, "Held", cause="x4"),
        notification("n6", 36_100, "Dialing", CONSULT, cause="x4"),
        exchange("x5", 48_000, "CompleteTransfer", CONSULT),
        notification("n7", 48_100, "Released", cause="x5"),
        notification("n8", 48_100, "Released", CONSULT, cause="x5"),
    ]


def without(events: list[cm.Event], *ids: str) -> list[cm.Event]:
    return [e for e in events if e.id not in ids]


def replace(events: list[cm.Event], event: cm.Event) -> list[cm.Event]:
    return [event if e.id == event.id else e for e in events]


def call_of(events: list[cm.Event], nid: str) -> dict[str, Any]:
    (n,) = (e for e in events if e.id == nid and isinstance(e, cm.Notification))
    data_call: dict[str, Any] = n.message["data"]["call"]
    return data_call


def kinds(findings: tuple[Finding, ...] | list[Finding]) -> list[tuple[str, str | None]]:
    return [(f.kind.value, f.path) for f in findings]


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["diff", *args])


def save(tmp_path: Path, name: str, events: list[cm.Event]) -> str:
    path = tmp_path / name
    cm.save(cassette(events), path)
    return str(path)


# --- the seed: two real server versions of InitiateTransfer -------------------------------

HELD = "/v2/me/calls StatusChange Held <call-1>"
DIALING = "/v2/me/calls StatusChange Dialing <call-2>"
SEED_FINDINGS = {
    (HELD, "field-added", "data.extensions", None),
    (HELD, "field-removed", "data.call.monitoring", None),
    (HELD, "capability-lost", "data.call.capabilities", "SwapCalls"),
    (HELD, "capability-lost", "data.call.capabilities", "CompleteTransfer"),
    (HELD, "capability-gained", "data.call.capabilities", "Retrieve"),
    (DIALING, "field-added", "data.extensions", None),
    (DIALING, "field-removed", "data.call.monitoring", None),
    (DIALING, "field-removed", "data.call.parentCallPath", None),
}


def seed_view(f: Finding) -> tuple[str | None, str, str | None, str | None]:
    name = (
        f.a if f.kind is Kind.CAPABILITY_LOST else f.b if f.kind is Kind.CAPABILITY_GAINED else None
    )
    return (f.notification, f.kind.value, f.path, name)


def test_seed_versions_differ_exactly_as_the_issue_says() -> None:
    only = DiffOptions(only=frozenset({"InitiateTransfer"}))
    result = diff(cm.load(INITIATE), cm.load(TWO_STEP), only)
    assert len(result.findings) == len(SEED_FINDINGS)
    assert {seed_view(f) for f in result.findings} == SEED_FINDINGS
    assert {f.step for f in result.findings} == {"InitiateTransfer POST /api/v2/me/calls/<call-1>"}


def test_seed_cli_json_lists_the_same_findings() -> None:
    out = run(str(INITIATE), str(TWO_STEP), "--only", "InitiateTransfer", "--format", "json")
    assert out.exit_code == 1, out.output
    differences = orjson.loads(out.output)["differences"]
    assert all(set(d) == {"step", "notification", "kind", "path", "a", "b"} for d in differences)
    seen = {
        (
            d["notification"],
            d["kind"],
            d["path"],
            d["a"] or d["b"] if "capability" in d["kind"] else None,
        )
        for d in differences
    }
    assert seen == SEED_FINDINGS


def test_seed_without_only_adds_the_steps_sample_1_lacks() -> None:
    result = diff(cm.load(INITIATE), cm.load(TWO_STEP))
    extra = [(f.step, f.kind) for f in result.findings if f.notification is None]
    assert extra == [
        ("unsolicited (B step 1)", Kind.STEP_EXTRA),
        ("Answer POST /api/v2/me/calls/<call-1> (B step 2)", Kind.STEP_EXTRA),
        ("CompleteTransfer POST /api/v2/me/calls/<call-2> (B step 4)", Kind.STEP_EXTRA),
    ]
    assert {seed_view(f) for f in result.findings if f.notification} == SEED_FINDINGS


def _renamed(value: Any, mapping: dict[str, str]) -> Any:
    """A copy of a cassette's JSON with raw ids replaced and durations changed."""
    if isinstance(value, dict):
        return {
            k: str(int(v) * 3 + 7) if k == "duration" else _renamed(v, mapping)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamed(v, mapping) for v in value]
    if isinstance(value, str):
        for old, new in mapping.items():
            value = value.replace(old, new)
    return value


def _raw_ids(raw: Any) -> dict[str, str]:
    """Every call id, connId and device id of a seed cassette -> a new value of the same shape."""
    text = orjson.dumps(raw).decode()
    found = set(re.findall(r'"(?:id|callUuid|connId)":"([^"]+)"', text))
    found |= set(re.findall(r"/devices/([0-9a-f-]{36})", text))
    found |= set(re.findall(r"/calls/([0-9A-Z]{32})", text))  # incl. dangling parentCallPath
    found -= {e["id"] for d in raw["desktops"] for e in d["events"]}  # event ids are not GWS ids
    mapping = {old: old[::-1].upper() for old in sorted(found)}
    mapping["127.0.0.1:8080"] = "gws.lab-b.example:8090"  # the origin is noise too
    return mapping


@pytest.mark.parametrize("seed", [INITIATE, TWO_STEP], ids=lambda p: p.name)
def test_a_recording_differing_only_in_ids_conn_ids_durations_is_equivalent(
    seed: Path, tmp_path: Path
) -> None:
    raw = orjson.loads(seed.read_bytes())
    mapping = _raw_ids(raw)
    assert len(mapping) >= 4  # call ids, connIds, the device: the variant really differs
    variant = _renamed(raw, mapping)
    for d in variant["desktops"]:
        for e in d["events"]:
            e["at_ms"] += 1234
    original = seed.read_text()
    assert not any(old in orjson.dumps(variant).decode() for old in mapping)
    assert all(old in original for old in mapping)
    path = tmp_path / "variant.json"
    cm.save(cm.from_dict(variant), path)

    out = run(str(seed), str(path))
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[-1].startswith("equivalent: no differences")


# --- steps ----------------------------------------------------------------------------------


def test_a_cassette_is_equivalent_to_itself() -> None:
    events = scenario()
    result = diff(cassette(events), cassette(copy.deepcopy(events)))
    assert result.equivalent and result.findings == ()
    assert result.steps_a == result.steps_b == 6  # unsolicited Ringing + 5 exchanges


def test_a_missing_step_is_one_finding_not_a_cascade() -> None:
    events = scenario()
    result = diff(cassette(events), cassette(without(events, "x2", "n3")))
    assert [(f.step, f.kind) for f in result.findings] == [
        ("Hold POST /api/v2/me/calls/<call-1>", Kind.STEP_MISSING)
    ]
    assert result.findings[0].a["notifications"] == [HELD]


def test_an_extra_step_is_one_finding() -> None:
    events = scenario()
    extra = [
        exchange("x9", 33_000, "AttachUserData", userData={"Language": "EN"}),
        notification(
            "n9", 33_100, "Established", cause="x9", notification_type="AttachedDataChanged"
        ),
    ]
    result = diff(cassette(events), cassette(events + extra))
    assert [(f.step, f.kind) for f in result.findings] == [
        ("AttachUserData POST /api/v2/me/calls/<call-1> (B step 5)", Kind.STEP_EXTRA)
    ]


def test_reordered_steps_are_reported_as_moved() -> None:
    events = scenario()
    attach = exchange("x9", 25_000, "AttachUserData", userData={"Language": "EN"})
    a = [*events, attach]
    # B attaches data before holding: move Hold and its Held after the attach.
    b = replace(
        replace(events, exchange("x2", 26_000, "Hold")),
        notification("n3", 26_100, "Held", cause="x2"),
    )
    b += [attach]
    result = diff(cassette(a), cassette(b))
    assert kinds(result.findings) == [("step-reordered", None)]
    assert result.findings[0].step in {
        "Hold POST /api/v2/me/calls/<call-1>",
        "AttachUserData POST /api/v2/me/calls/<call-1>",
    }


def test_repeated_operations_still_align_as_one_missing_step() -> None:
    # Hold/Retrieve on one call repeat the same keys; only a true LCS keeps this to one finding.
    cycle: list[cm.Event] = [notification("n0", 0, "Ringing"), exchange("x0", 100, "Answer")]
    for k in range(6):
        op, state = ("Hold", "Held") if k % 2 == 0 else ("Retrieve", "Established")
        cycle += [
            exchange(f"x{k + 1}", 1000 * (k + 1), op),
            notification(f"n{k + 1}", 1000 * (k + 1) + 10, state, cause=f"x{k + 1}"),
        ]
    cycle.append(exchange("x9", 9000, "Hangup"))
    b = without(cycle, "x3", "n3")  # the second Hold
    b = [e for e in b if e.id not in ("n0",)] + [notification("n0", 0, "Ringing", mute="On")]
    result = diff(cassette(cycle), cassette(b))
    assert sorted(kinds(result.findings)) == [
        ("field-changed", "data.call.mute"),
        ("step-missing", None),
    ]


def test_unsolicited_notifications_are_compared_too() -> None:
    events = scenario()
    ringing = notification("n1", 0, "Ringing", capabilities=[*BASIC])
    result = diff(cassette(events), cassette(replace(events, ringing)))
    assert [(f.step, f.notification, f.kind, f.a) for f in result.findings] == [
        (
            "unsolicited",
            "/v2/me/calls StatusChange Ringing <call-1>",
            Kind.CAPABILITY_LOST,
            "Answer",
        )
    ]


def test_a_notification_before_its_exchange_still_belongs_to_its_step() -> None:
    events = [exchange("x1", 100, "Answer"), notification("n1", 50, "Established", cause="x1")]
    (step,) = steps_of(cassette(events))
    assert step.label == "Answer POST /api/v2/me/calls/<call-1>"
    assert [n.label for n in step.notes] == ["/v2/me/calls StatusChange Established <call-1>"]


def test_rest_status_and_body_changes() -> None:
    events = scenario()
    refused = exchange(
        "x2", 20_000, "Hold", status=400, answer={"statusCode": 2, "statusMessage": "Invalid state"}
    )
    result = diff(cassette(events), cassette(replace(events, refused)))
    assert [(f.notification, f.kind.value, f.path, f.a, f.b) for f in result.findings] == [
        (None, "field-changed", "response.body.statusCode", 0, 2),
        (None, "field-added", "response.body.statusMessage", None, "Invalid state"),
        (None, "status-changed", "response.status", 200, 400),
    ]


# --- notifications --------------------------------------------------------------------------


def test_a_missing_notification() -> None:
    events = scenario()
    result = diff(cassette(events), cassette(without(events, "n6")))
    assert [(f.notification, f.kind) for f in result.findings] == [
        (DIALING, Kind.NOTIFICATION_MISSING)
    ]


def test_an_extra_notification() -> None:
    events = scenario()
    update = notification("n9", 20_150, "Held", cause="x2", notification_type="AttachedDataChanged")
    result = diff(cassette(events), cassette([*events, update]))
    assert [(f.step, f.notification, f.kind) for f in result.findings] == [
        (
            "Hold POST /api/v2/me/calls/<call-1>",
            "/v2/me/calls AttachedDataChanged Held <call-1>",
            Kind.NOTIFICATION_EXTRA,
        )
    ]


def test_reordered_notifications() -> None:
    events = scenario()
    b = replace(events, notification("n5", 36_200, "Held", cause="x4"))  # now after Dialing
    result = diff(cassette(events), cassette(b))
    assert [(f.notification, f.kind, f.a, f.b) for f in result.findings] in (
        [(HELD, Kind.NOTIFICATION_REORDERED, 1, 2)],
        [(DIALING, Kind.NOTIFICATION_REORDERED, 2, 1)],
    )


def test_a_notification_now_about_another_call_is_reported() -> None:
    events = scenario()
    # B's server says the consult call is held instead of the original one.
    wrong = notification("n5", 36_100, "Held", CONSULT, cause="x4")
    result = diff(cassette(events), cassette(replace(events, wrong)))
    found = {(f.notification, f.kind.value, f.path, f.a, f.b) for f in result.findings}
    assert (HELD, "field-changed", "data.call.id", "<call-1>", "<call-2>") in found
    assert (
        HELD,
        "field-changed",
        "data.call.uri",
        "<origin>/api/v2/me/calls/<call-1>",
        "<origin>/api/v2/me/calls/<call-2>",
    ) in found
    assert not {k for _, k, *_ in found} & {"notification-missing", "notification-extra"}


# --- options --------------------------------------------------------------------------------


def test_phone_numbers_are_ignored_unless_kept() -> None:
    events = scenario()
    other = [
        replace(events, notification("n6", 36_100, "Dialing", CONSULT, cause="x4", number="5002"))
    ][0]
    assert diff(cassette(events), cassette(other)).equivalent
    kept = diff(cassette(events), cassette(other), DiffOptions(keep_numbers=True))
    paths = {f.path for f in kept.findings}
    assert "data.call.dnis" in paths and "data.call.participants[0].phoneNumber" in paths
    assert {f.kind for f in kept.findings} == {Kind.FIELD_CHANGED}


def test_same_numbers_everywhere_renamed_stay_equivalent_with_keep_numbers() -> None:
    events = scenario()
    raw = orjson.dumps(cm.to_dict(cassette(events))).decode().replace("5001", "7001")
    assert diff(
        cassette(events), cm.from_dict(orjson.loads(raw)), DiffOptions(keep_numbers=True)
    ).equivalent


def test_ignore_drops_paths_before_comparing() -> None:
    a, b = cm.load(INITIATE), cm.load(TWO_STEP)
    only = frozenset({"InitiateTransfer"})
    patterns = (PathPattern.parse("data.call.monitoring"), PathPattern.parse("data.extensions"))
    result = diff(a, b, DiffOptions(only=only, ignore=patterns))
    assert {seed_view(f) for f in result.findings} == {
        s for s in SEED_FINDINGS if s[2] not in ("data.call.monitoring", "data.extensions")
    }
    star = diff(a, b, DiffOptions(only=only, ignore=(PathPattern.parse("data.*.capabilities"),)))
    assert not any(f.kind.value.startswith("capability") for f in star.findings)
    assert len(star.findings) == len(SEED_FINDINGS) - 3


def test_path_patterns() -> None:
    p = PathPattern.parse("data.call.participants[*].digits")
    assert p.segments == ("data", "call", "participants", "*", "digits")
    assert p.matches(("data", "call", "participants", 3, "digits"))
    assert not p.matches(("data", "call", "participants", 3))
    assert PathPattern.parse("a.0").matches(("a", 0)) and not PathPattern.parse("a.0").matches(
        ("a", 1)
    )
    for bad in ("", "data..call", ".data", "data."):
        with pytest.raises(DiffError, match="--ignore"):
            PathPattern.parse(bad)


def test_noise_learned_from_a_second_recording_is_dropped() -> None:
    a = scenario()
    # The version flaps `mute` and one capability between runs; both are noise.
    flapping = notification(
        "n4", 30_100, "Established", cause="x3", mute="On", capabilities=[*BASIC, "Hangup"]
    )
    a2 = replace(a, flapping)
    real = notification(
        "n5", 36_100, "Held", cause="x4", monitoring=False, capabilities=[*BASIC, "Hangup"]
    )
    b = replace(replace(a, flapping), real)
    plain = diff(cassette(a), cassette(b))
    learned = diff(cassette(a), cassette(b), noise=cassette(a2))
    assert {(f.notification, f.path) for f in learned.findings} == {
        (HELD, "data.call.monitoring"),
        (HELD, "data.call.capabilities"),
    }
    # Two capabilities lost at Held are real; the ones lost at the flapping Established are not.
    assert sorted(f.a for f in learned.findings if f.kind is Kind.CAPABILITY_LOST) == [
        "InitiateTransfer",
        "Retrieve",
    ]
    assert learned.noise_dropped == len(plain.findings) - len(learned.findings) > 0


def test_only_keeps_the_named_operations_steps() -> None:
    events = scenario()
    b = without(events, "x2", "n3")
    options = DiffOptions(only=frozenset({"Answer", "InitiateTransfer"}))
    assert diff(cassette(events), cassette(b), options).equivalent
    assert [s.operation for s in steps_of(cassette(events), options)] == [
        "Answer",
        "InitiateTransfer",
    ]
    with pytest.raises(DiffError, match="Transfer: neither cassette"):
        diff(cassette(events), cassette(b), DiffOptions(only=frozenset({"Transfer"})))


# --- alignment ------------------------------------------------------------------------------


def _lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            table[i][j] = (
                table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
            )
    return table[0][0]


_keys = st.lists(st.sampled_from("ABCD"), max_size=14)


@given(_keys, _keys)
def test_opcodes_are_a_longest_common_subsequence(a: list[str], b: list[str]) -> None:
    i = j = matched = 0
    for tag, i1, i2, j1, j2 in opcodes(a, b):
        assert (i1, j1) == (i, j)
        if tag == "equal":
            assert a[i1:i2] == b[j1:j2]
            matched += i2 - i1
        i, j = i2, j2
    assert (i, j) == (len(a), len(b))
    assert matched == _lcs(a, b)


@given(_keys, st.data())
def test_deleting_items_gives_exactly_that_many_missing(a: list[str], data: Any) -> None:
    keep = data.draw(st.lists(st.booleans(), min_size=len(a), max_size=len(a)))
    b = [k for k, kept in zip(a, keep, strict=True) if kept]
    pairs = align(a, b, a, b)
    assert sum(p.b is None for p in pairs) == len(a) - len(b)
    assert not any(p.moved or p.a is None for p in pairs)


def test_align_reports_a_move_and_pairs_look_alikes_in_the_same_gap() -> None:
    pairs = align(["x", "y", "z"], ["y", "x", "z"], ["x", "y", "z"], ["y", "x", "z"])
    assert sum(p.moved for p in pairs) == 1 and all(
        p.a is not None and p.b is not None for p in pairs
    )
    pairs = align(
        ["s", "held-1", "e"], ["s", "held-2", "e"], ["s", "held", "e"], ["s", "held", "e"]
    )
    assert [(p.a, p.b, p.moved) for p in pairs] == [(0, 0, False), (1, 1, False), (2, 2, False)]


def test_a_big_cassette_with_one_change_gives_one_finding() -> None:
    events: list[cm.Event] = []
    for k in range(2500):  # 10,000 events
        call_id = f"CALL{k:012d}"
        events += [
            notification(f"r{k}", k * 100, "Ringing", call_id),
            exchange(f"a{k}", k * 100 + 10, "Answer", call_id),
            notification(f"e{k}", k * 100 + 20, "Established", call_id, cause=f"a{k}"),
            exchange(f"h{k}", k * 100 + 30, "Hangup", call_id),
        ]
    b = replace(
        events,
        notification("e1234", 123_420, "Established", "CALL000000001234", cause="a1234", mute="On"),
    )
    result = diff(cassette(events), cassette(b))
    assert [(f.step, f.kind.value, f.path) for f in result.findings] == [
        ("Answer POST /api/v2/me/calls/<call-1235>", "field-changed", "data.call.mute")
    ]


# --- rendering and the CLI ------------------------------------------------------------------


def test_text_groups_by_step_and_colours_only_when_asked() -> None:
    result = diff(
        cm.load(INITIATE), cm.load(TWO_STEP), DiffOptions(only=frozenset({"InitiateTransfer"}))
    )
    text = render_text(result, a_name="A", b_name="B")
    lines = text.splitlines()
    assert lines[:4] == [
        "a: A",
        "b: B",
        "InitiateTransfer POST /api/v2/me/calls/<call-1>",
        "  " + HELD,
    ]
    assert lines[-1] == "8 differences in 1 step"
    assert "\x1b[" not in text
    assert "\x1b[31m- capability-lost" in render_text(result, a_name="A", b_name="B", color=True)


def test_json_output_is_deterministic(tmp_path: Path) -> None:
    events = scenario()
    b = save(tmp_path, "b.json", [*without(events, "n6"), exchange("x9", 60000, "Hangup")])
    a = save(tmp_path, "a.json", events)
    first, second = run(a, b, "--format", "json"), run(a, b, "--format", "json")
    assert first.exit_code == second.exit_code == 1
    assert first.output == second.output
    assert first.output == render_json(diff(cm.load(a), cm.load(b)))
    assert [d["kind"] for d in orjson.loads(first.output)["differences"]] == [
        "notification-missing",
        "step-extra",
    ]


def test_cli_exit_codes_and_options(tmp_path: Path) -> None:
    events = scenario()
    a = save(tmp_path, "a.json", events)
    same = save(tmp_path, "same.json", copy.deepcopy(events))
    held = notification("n3", 20_100, "Held", cause="x2", monitoring=True)
    b = save(tmp_path, "b.json", replace(events, held))
    out = run(a, same)
    assert (out.exit_code, out.output.splitlines()[-1]) == (
        0,
        "equivalent: no differences in 6 steps",
    )
    out = run(a, b)
    assert out.exit_code == 1 and "+ field-added" in out.output and "\x1b[" not in out.output
    assert run(a, b, "--ignore", "data.call.monitoring").exit_code == 0
    assert run(a, b, "--only", "Answer").exit_code == 0
    assert run(a, b, "--noise", b).exit_code == 0
    assert run(a, b, "--keep-numbers").exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json", "{a}"], "missing.json: cannot read"),
        (["{a}", "{bad}"], "not valid JSON"),
        (["{a}", "{a}", "--noise", "missing.json"], "missing.json: cannot read"),
        (["{a}", "{a}", "--ignore", "data..x"], "--ignore 'data..x'"),
        (["{a}", "{a}", "--only", "Nope"], "--only Nope: neither cassette"),
        (["{a}", "{not_cassette}"], "not a cassette"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    files = {
        "a": save(tmp_path, "a.json", scenario()),
        "bad": str(tmp_path / "bad.json"),
        "not_cassette": str(tmp_path / "list.json"),
    }
    Path(files["bad"]).write_text("{not json")
    Path(files["not_cassette"]).write_text("[1, 2]")
    with_files = [arg.format(**files) for arg in args]
    out = CliRunner().invoke(main, ["diff", *with_files], catch_exceptions=False)
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.output


def test_bad_format_is_a_usage_error() -> None:
    out = run(str(INITIATE), str(TWO_STEP), "--format", "yaml")
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_several_desktops_label_their_steps_and_follow_causes_across_desktops() -> None:
    supervisor = notification("s1", 10_200, "Established", cause="x1")
    a = cm.Cassette(
        desktops=[
            cm.Desktop("agent", [exchange("x1", 10_000, "Answer")]),
            cm.Desktop("supervisor", [supervisor]),
        ]
    )
    (step,) = steps_of(a)
    assert step.label == "[agent] Answer POST /api/v2/me/calls/<call-1>"
    assert [n.label for n in step.notes] == ["/v2/me/calls StatusChange Established <call-1>"]
    b = copy.deepcopy(a)
    b.desktops[1].events = []
    assert kinds(diff(a, b).findings) == [("notification-missing", None)]


_messages = st.dictionaries(
    st.sampled_from(["channel", "data", "id", "ext"]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["call", "id", "state", "capabilities", "uri"]), inner, max_size=4
            )
        ),
        max_leaves=15,
    ),
    max_size=4,
)


@given(st.lists(_messages, max_size=5))
def test_any_messages_compare_equal_to_themselves(messages: list[dict[str, Any]]) -> None:
    events: list[cm.Event] = [exchange("x1", 0, "Answer")]
    events += [
        cm.Notification(f"n{k}", k + 1, "/v2/me/calls", m, "x1" if k % 2 else None)
        for k, m in enumerate(messages)
    ]
    result = diff(cassette(events), cassette(copy.deepcopy(events)))
    assert result.equivalent
    render_text(result, a_name="a", b_name="b")


def test_a_step_on_another_call_is_compared_not_reported_missing_and_extra() -> None:
    a = [exchange("x1", 0, "Hangup", FIRST), exchange("x2", 10, "Hangup", CONSULT)]
    b = [exchange("x1", 0, "Hangup", CONSULT), exchange("x2", 10, "Hangup", CONSULT)]
    result = diff(cassette(a), cassette(b))
    # In B the consult call comes first, so it is B's <call-1>: A's first step matches B's
    # first, and A's second (on <call-2>) pairs with B's second (on <call-1>).
    assert [(f.step, f.kind.value, f.path, f.a, f.b) for f in result.findings] == [
        (
            "Hangup POST /api/v2/me/calls/<call-2>",
            "field-changed",
            "request.path",
            "/api/v2/me/calls/<call-2>",
            "/api/v2/me/calls/<call-1>",
        )
    ]
