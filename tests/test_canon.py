"""relay.canon: identifier-like values renamed consistently, numbers and noise folded."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from relay.canon import canonicalise, is_dropped_key, is_uri_key, looks_like_id

ORIGIN = "http://127.0.0.1:8080"
DEVICE = "631608b3-ceb1-472b-ba05-2ae39555b0d1"


def call(
    call_id: str,
    *,
    state: str = "Held",
    conn: str = "0071027198180011",
    device: str = DEVICE,
    origin: str = ORIGIN,
    **extra: Any,
) -> dict[str, Any]:
    """A GWS ``data.call`` as the seed's Sample 1 has it."""
    return {
        "id": call_id,
        "callUuid": call_id,
        "state": state,
        "connId": conn,
        "deviceUri": f"{origin}/api/v2/devices/{device}",
        "uri": f"{origin}/api/v2/me/calls/{call_id}",
        "path": f"/calls/{call_id}",
        "duration": "99",
        "mute": "Off",
        **extra,
    }


def message(data_call: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {
        "channel": "/v2/me/calls",
        "data": {
            "call": data_call,
            "messageType": "CallStateChangeMessage",
            "notificationType": "StatusChange",
            **data,
        },
    }


def test_the_same_call_gets_one_name_in_paths_uris_bodies_and_notifications() -> None:
    request = {"request": {"method": "POST", "path": "/api/v2/me/calls/CALLM"}}
    held = message(call("CALLM"))
    consult = message(
        call(
            "CALLN", parentCallUri=f"{ORIGIN}/api/v2/me/calls/CALLM", parentCallPath="/calls/CALLM"
        )
    )
    out = canonicalise([request, held, consult])
    assert out[0]["request"]["path"] == "/api/v2/me/calls/<call-1>"
    c1, c2 = out[1]["data"]["call"], out[2]["data"]["call"]
    assert (c1["id"], c1["callUuid"], c1["uri"], c1["path"]) == (
        "<call-1>",
        "<call-1>",
        "<origin>/api/v2/me/calls/<call-1>",
        "/calls/<call-1>",
    )
    assert (c2["id"], c2["parentCallUri"], c2["parentCallPath"]) == (
        "<call-2>",
        "<origin>/api/v2/me/calls/<call-1>",
        "/calls/<call-1>",
    )
    assert c1["deviceUri"] == c2["deviceUri"] == "<origin>/api/v2/devices/<device-1>"
    assert (c1["connId"], c2["connId"]) == ("<conn-1>", "<conn-1>")  # same raw connId


def test_numbering_follows_sorted_keys_not_the_servers_key_order() -> None:
    one = {"zeta": {"connId": "C-ZZZZZZ"}, "alpha": {"connId": "C-AAAAAA"}}
    other = {"alpha": {"connId": "C-AAAAAA"}, "zeta": {"connId": "C-ZZZZZZ"}}
    assert canonicalise([one]) == canonicalise([other])
    assert canonicalise([one])[0] == {
        "alpha": {"connId": "<conn-1>"},
        "zeta": {"connId": "<conn-2>"},
    }


def test_a_dangling_reference_takes_no_number_and_shifts_nothing() -> None:
    # Sample 1: the consult call's parentCallPath names a call that appears nowhere else.
    held = message(call("CALLM"))
    dangling = message(call("CALLN", parentCallPath="/calls/CALLH"))
    later = message(call("CALLX"))
    out = canonicalise([held, dangling, later])
    assert out[1]["data"]["call"]["parentCallPath"] == "/calls/<call-?>"
    assert out[2]["data"]["call"]["id"] == "<call-3>"
    without = canonicalise([held, message(call("CALLN")), later])
    assert without[2] == out[2]


def test_a_reference_seen_before_its_call_still_gets_the_calls_number() -> None:
    consult = message(call("CALLN", parentCallUri=f"{ORIGIN}/api/v2/me/calls/CALLM"))
    held = message(call("CALLM"))
    out = canonicalise([consult, held])
    assert out[0]["data"]["call"]["parentCallUri"] == "<origin>/api/v2/me/calls/<call-2>"
    assert out[1]["data"]["call"]["id"] == "<call-2>"


def test_duration_and_timestamps_are_dropped() -> None:
    doc = {
        "duration": "12",
        "timestamp": 1700000000000,
        "startDate": "2024-01-01",
        "createdAt": 5,
        "note": "2024-05-06T07:08:09.000Z",
        "extensions": {"WrapUpTime": 0},
    }
    assert canonicalise([doc]) == [{"note": "<time>", "extensions": {"WrapUpTime": 0}}]


def test_phone_numbers_become_one_placeholder_unless_kept() -> None:
    participant = {"phoneNumber": "15001", "digits": "15001", "e164Number": "", "dnis": "15002"}
    request = {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "15002"}}
    assert canonicalise([participant, request]) == [
        dict.fromkeys(participant, "<number>"),
        {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "<number>"}},
    ]
    kept = canonicalise([participant, request], keep_numbers=True)
    assert kept[0] == {
        "digits": "<number-1>",
        "dnis": "<number-2>",
        "e164Number": "",
        "phoneNumber": "<number-1>",
    }
    assert kept[1]["destination"] == {"phoneNumber": "<number-2>"}


def test_scalar_destination_is_a_number() -> None:
    assert canonicalise([{"destination": "5001"}]) == [{"destination": "<number>"}]


def test_id_takes_its_kind_from_where_it_sits_and_other_ids_are_renamed_too() -> None:
    doc = {
        "devices": [{"id": "dev-0001"}],
        "user": {"id": "user-0001"},
        "thing": {"id": 42},
        "clientId": "2f1nhbc0xuwbcz4a",
        "referenceId": 74,
    }
    assert canonicalise([doc, {"referenceId": "74"}]) == [
        {
            "clientId": "<client-1>",
            "devices": [{"id": "<device-1>"}],
            "referenceId": "<ref-1>",
            "thing": {"id": "<id-1>"},
            "user": {"id": "<user-1>"},
        },
        {"referenceId": "<ref-1>"},
    ]


def test_values_that_are_not_identifiers_are_kept() -> None:
    doc = {
        "state": "Held",
        "capabilities": ["Hangup", "Retrieve"],
        "monitoring": False,
        "id": "",
        "callUuid": None,
        "path": "/api/v2/me/channels/voice",
        "userData": {"Language": "EN"},
        "location": "site-one",
    }
    assert canonicalise([doc]) == [doc]


def test_an_identifier_copied_into_attached_data_is_renamed_with_it() -> None:
    def recording(call_id: str, conn: str, case: str) -> list[Any]:
        user_data = {"GSW_CALL_ID": call_id, "ConnID": conn, "CaseNumber": case, "Lang": "EN"}
        return [
            {"call": {"id": call_id, "connId": conn, "userData": user_data}},
            {"call": {"id": call_id, "userData": {"history": [call_id, "not-an-id"]}}},
        ]

    a = canonicalise(recording("01RCC3N118B1V0SL8O7GK2LAES00000M", "006e02a5b3f1a2d4", "C-1234567"))
    b = canonicalise(recording("011DJV5JI898NB2L04000VTAES000005", "007a0b6e1c2d3e4f", "C-1234567"))
    assert a == b
    assert a[0]["call"]["userData"] == {
        "GSW_CALL_ID": "<call-1>",
        "ConnID": "<conn-1>",
        "CaseNumber": "C-1234567",  # id-like, but no identifier seen elsewhere: kept
        "Lang": "EN",
    }
    assert a[1]["call"]["userData"]["history"] == ["<call-1>", "not-an-id"]


def test_the_input_is_not_modified() -> None:
    docs = [message(call("CALLM")), {"request": {"path": "/api/v2/me/calls/CALLM"}}]
    before = copy.deepcopy(docs)
    canonicalise(docs)
    assert docs == before


def test_key_and_segment_rules() -> None:
    assert is_uri_key("parentCallUri") and is_uri_key("parentCallPath") and is_uri_key("uri")
    assert not is_uri_key("location")
    assert is_dropped_key("duration") and is_dropped_key("endDate") and is_dropped_key("createdAt")
    assert not is_dropped_key("WrapUpTime") and not is_dropped_key("format")
    assert looks_like_id(DEVICE) and looks_like_id("01RCC3N118B1V0SL8O7GK2LAES00000M")
    assert not looks_like_id("v2") and not looks_like_id("notifications")


_raw_ids = st.text(alphabet="0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=12, max_size=20)


@given(st.lists(_raw_ids, min_size=1, max_size=5, unique=True), st.data())
def test_renaming_raw_ids_never_changes_the_canonical_form(ids: list[str], data: Any) -> None:
    others = data.draw(st.lists(_raw_ids, min_size=len(ids), max_size=len(ids), unique=True))
    order = data.draw(st.lists(st.sampled_from(range(len(ids))), min_size=1, max_size=8))

    def docs(names: list[str]) -> list[Any]:
        return [
            {"request": {"path": f"/api/v2/me/calls/{names[i]}"}}
            if k % 2
            else message(call(names[i], conn=names[i][::-1], device=names[0]))
            for k, i in enumerate(order)
        ]

    assert canonicalise(docs(ids)) == canonicalise(docs(others))


_keys = st.sampled_from(
    [
        "id",
        "callUuid",
        "connId",
        "uri",
        "path",
        "parentCallPath",
        "deviceUri",
        "phoneNumber",
        "destination",
        "duration",
        "timestamp",
        "state",
        "capabilities",
        "call",
        "calls",
        "x",
    ]
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)


@given(st.lists(_json, max_size=4), st.booleans())
def test_any_json_canonicalises_without_error_and_deterministically(
    docs: list[Any], keep_numbers: bool
) -> None:
    before = copy.deepcopy(docs)
    out = canonicalise(docs, keep_numbers=keep_numbers)
    assert docs == before
    assert out == canonicalise(copy.deepcopy(docs), keep_numbers=keep_numbers)
    assert len(out) == len(docs)


# --- noise that leaked (review) ---------------------------------------------------------------


def _noisy(call_id: str, conn: str, other: str, n: int) -> list[Any]:
    return [
        {"call": {"id": call_id, "connId": conn, "state": "Established"}},
        {
            "call": {
                "id": call_id,
                "state": "Held",
                "otherConnId": other,
                "startedTime": 1_700_000_000_000 + n,
                "holdDuration": 10 + n,
                "lastChange": f"Mon, 0{n} Jan 2024 10:00:00 GMT",
                "participants": ["5000", f"555000{n}"],
                "recordingId": f"REC{n}9876543",
            },
            "extensions": {"WrapUpTime": 0},
            "userData": {
                "note": f"call {call_id} transferred",
                "file": f"{call_id}_rec",
                "lower": call_id.lower(),
                "day": f"2024-0{n}-01",
            },
        },
    ]


def test_ids_inside_strings_times_durations_and_old_participants_are_noise() -> None:
    a = canonicalise(_noisy("051DJV5JI898NB2L04000VTAES000055", "0081023855e005", "0081e0055a", 5))
    b = canonicalise(_noisy("071DJV5JI898NB2L04000VTAES000075", "0081023855e007", "0081e0077a", 7))
    assert a == b
    held = a[1]
    assert held["userData"]["note"] == "call <call-1> transferred"
    assert held["userData"]["file"] == "<call-1>_rec"
    assert held["extensions"] == {"WrapUpTime": 0}  # a setting, not a clock reading: kept
    assert "startedTime" not in held["call"] and "holdDuration" not in held["call"]
    assert held["call"]["otherConnId"] == "<conn-?>"


def test_a_short_value_is_not_renamed_inside_other_strings() -> None:
    docs = [{"call": {"id": "AB12"}}, {"userData": {"note": "AB12345678 and AB12"}}]
    assert canonicalise(docs)[1]["userData"]["note"] == "AB12345678 and AB12"
