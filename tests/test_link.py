"""Causal linking over the seed's two samples and the rules' edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay import cassette as cas
from relay.link import (
    Linker,
    Operation,
    call_of_path,
    call_of_uri,
    device_of_dial,
    device_of_uri,
    is_state_operation_path,
    link,
    reference_id,
)

ROOT = Path(__file__).resolve().parent.parent
URI = "http://127.0.0.1:8080/api/v2/me/calls/"


def call(call_id: str, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "channel": "/v2/me/calls",
        "data": {
            "notificationType": "StatusChange",
            "call": {"id": call_id, "state": state, **extra},
        },
    }


def op(xid: str, call_id: str, name: str, method: str = "POST") -> tuple[str, Operation]:
    return "request", Operation(xid, method, f"/api/v2/me/calls/{call_id}", {"operationName": name})


def test_sample_2_completes_on_the_consult_call_and_releases_both() -> None:
    c5, c6 = "011DJV5JI898NB2L04000VTAES000005", "011DJV5JI898NB2L04000VTAES000006"
    causes = link(
        [
            ("notification", ("n1", call(c5, "Ringing"))),
            op("x1", c5, "Answer"),
            ("notification", ("n2", call(c5, "Established"))),
            ("response", ("x1", {"statusCode": 0})),
            op("x2", c5, "InitiateTransfer"),
            ("notification", ("n3", call(c5, "Held"))),
            ("notification", ("n4", call(c6, "Dialing", parentCallUri=URI + c5))),
            ("response", ("x2", {"statusCode": 0})),
            op("x3", c6, "CompleteTransfer"),
            ("response", ("x3", {"statusCode": 0})),
            ("notification", ("n5", call(c5, "Released"))),
            ("notification", ("n6", call(c6, "Released", parentCallUri=URI + c5))),
        ]
    )
    assert causes == {"n1": None, "n2": "x1", "n3": "x2", "n4": "x2", "n5": "x3", "n6": "x3"}


def test_sample_1_follows_parent_call_uri_not_parent_call_path() -> None:
    m, n, h = "01RCC3N118B1V0SL8O7GK2LAES00000M", "01RCC3N118B1V0SL8O7GK2LAES00000N", "…000H"
    causes = link(
        [
            op("x0", h, "Hold"),  # an operation on the call parentCallPath wrongly names
            op("x1", m, "InitiateTransfer"),
            ("notification", ("n1", call(m, "Held"))),
            (
                "notification",
                (
                    "n2",
                    call(
                        n, "Dialing", parentCallUri=URI + "\n\n" + m, parentCallPath=f"/calls/{h}"
                    ),
                ),
            ),
            op("x2", h, "Retrieve"),
            ("notification", ("n3", call(n, "Released", parentCallUri=URI + m))),
        ]
    )
    assert causes == {"n1": "x1", "n2": "x1", "n3": "x1"}


def test_reference_id_wins_even_when_the_answer_comes_after_the_notification() -> None:
    causes = link(
        [
            op("x1", "c1", "Answer"),
            ("request", Operation("x2", "POST", "/api/v2/me/chats/7", {"operationName": "Accept"})),
            (
                "notification",
                (
                    "n1",
                    {"channel": "/v2/me/chats", "data": {"referenceId": 74, "call": {"id": "c1"}}},
                ),
            ),
            ("response", ("x2", {"statusCode": 0, "referenceId": 74})),
            ("notification", ("n2", {"channel": "/v2/me/chats", "data": {"referenceId": "75"}})),
        ]
    )
    assert causes == {"n1": "x2", "n2": None}


def test_unsolicited_and_unrelated_operations() -> None:
    causes = link(
        [
            ("notification", ("n1", call("a", "Ringing"))),
            op("x1", "b", "Answer"),
            op("x2", "a", "Whatever", method="GET"),  # a GET is not an operation
            ("request", Operation("x3", "POST", "/api/v2/me/channels/voice", {})),
            ("notification", ("n2", call("a", "Released"))),
            op("x4", "b", "Hangup"),  # the latest operation is not an agent-state one
            ("notification", ("n3", {"channel": "/v2/me/devices", "data": {"x": 1}})),
            ("notification", ("n4", {"channel": "/v2/me", "data": "not an object"})),
        ]
    )
    assert causes == {"n1": None, "n2": None, "n3": None, "n4": None}


def dialing(call_id: str, device: str | None = "d1", **extra: Any) -> dict[str, Any]:
    more = {"deviceUri": f"http://h/api/v2/devices/{device}"} if device else {}
    return call(call_id, "Dialing", callType="Internal", **more, **extra)


def dial(xid: str, device: str = "d1") -> tuple[str, Operation]:
    body = {"operationName": "Dial", "destination": {"phoneNumber": "5001"}}
    return "request", Operation(xid, "POST", f"/api/v2/me/devices/{device}/calls", body)


def test_a_dialled_call_is_caused_by_its_dial_and_its_later_states_too() -> None:
    causes = link(
        [
            dial("x1"),
            ("response", ("x1", {"statusCode": 0})),
            ("notification", ("n1", dialing("c"))),
            ("notification", ("n2", call("c", "Established"))),
            op("x2", "c", "Hangup"),
            ("notification", ("n3", call("c", "Released"))),
        ]
    )
    assert causes == {"n1": "x1", "n2": "x1", "n3": "x2"}


def test_each_dial_makes_one_call_on_its_own_device() -> None:
    causes = link(
        [
            dial("x1", "d1"),
            dial("x2", "d2"),
            ("notification", ("n1", dialing("c2", "d2"))),
            ("notification", ("n2", dialing("c1", "d1"))),
            ("notification", ("n3", dialing("c3", "d1"))),  # d1's Dial is taken: no cause
            ("notification", ("n4", dialing("c4", None))),  # no device named, none left
        ]
    )
    assert causes == {"n1": "x2", "n2": "x1", "n3": None, "n4": None}


def test_an_inbound_or_already_seen_call_is_not_made_by_a_dial() -> None:
    causes = link(
        [
            ("notification", ("n1", call("a", "Ringing", callType="Inbound"))),
            dial("x1"),
            ("notification", ("n2", call("b", "Dialing", callType="Inbound"))),
            ("notification", ("n3", call("c", "Ringing"))),
            ("notification", ("n4", call("c", "Dialing"))),  # c was seen before the Dialing
            ("notification", ("n5", dialing("d"))),
        ]
    )
    assert causes == {"n1": None, "n2": None, "n3": None, "n4": None, "n5": "x1"}


@pytest.mark.parametrize(
    "path", ["/api/v2/me", "/api/v2/me/devices/d1", "/api/v2/me/channels/voice"]
)
def test_agent_state_operations_cause_the_device_and_channel_notifications_after_them(
    path: str,
) -> None:
    ready = {"operationName": "Ready"}
    devices = {"channel": "/v2/me/devices", "data": {"messageType": "DeviceStateChangeMessage"}}
    channels = {"channel": "/v2/me/channels", "data": {"messageType": "ChannelStateChanged"}}
    causes = link(
        [
            ("notification", ("n0", devices)),  # before any operation: unsolicited
            ("request", Operation("x1", "POST", path, ready)),
            ("notification", ("n1", devices)),
            ("notification", ("n2", channels)),
            ("request", Operation("x2", "GET", "/api/v2/me", None)),  # GETs do not count
            ("notification", ("n3", devices)),
            op("x3", "c", "Answer"),
            ("notification", ("n4", devices)),  # after a call operation: unsolicited
            ("request", Operation("x4", "POST", "/api/v2/me/devices/d1/calls", ready)),
            ("notification", ("n5", devices)),  # after a Dial: not an agent-state operation
        ]
    )
    assert causes == {"n0": None, "n1": "x1", "n2": "x1", "n3": "x1", "n4": None, "n5": None}


def test_latest_operation_before_the_notification_only() -> None:
    linker = Linker()
    linker.request(Operation("x1", "POST", "/api/v2/me/calls/a", None))
    linker.request(Operation("x2", "POST", "/api/v2/me/calls/a", None))
    linker.notification("n1", call("a", "Held"))
    linker.request(Operation("x3", "POST", "/api/v2/me/calls/a", None))
    assert linker.causes() == {"n1": "x2"}


def test_families_merge_transitively() -> None:
    causes = link(
        [
            op("x1", "a", "InitiateConference"),
            ("notification", ("n1", call("b", "Dialing", parentCallUri=URI + "a"))),
            ("notification", ("n2", call("c", "Dialing", parentCallUri=URI + "b"))),
            op("x2", "c", "CompleteConference"),
            ("notification", ("n3", call("a", "Released"))),
        ]
    )
    assert causes == {"n1": "x1", "n2": "x1", "n3": "x2"}


def test_dial_and_state_paths() -> None:
    assert device_of_dial("/api/v2/me/devices/d1/calls") == "d1"
    assert device_of_dial("/api/v2/me/devices/d1/calls/x") is None
    assert device_of_uri("http://h/api/v2/devices/\n d1 ") == "d1"
    assert device_of_uri(None) is None
    for yes in ("/api/v2/me", "/api/v2/me/", "/api/v2/me/devices/d1", "/api/v2/me/channels/voice"):
        assert is_state_operation_path(yes), yes
    for no in ("/api/v2/me/calls/a", "/api/v2/me/devices/d1/calls", "/api/v2/mex"):
        assert not is_state_operation_path(no), no


def test_helpers() -> None:
    assert call_of_path("/api/v2/me/calls/abc") == "abc"
    assert call_of_path("/api/v2/me/calls/abc/participants") == "abc"
    assert call_of_path("/api/v2/me/devices/d/calls") is None
    assert call_of_uri("http://h/api/v2/me/calls/\n 01X ") == "01X"
    assert call_of_uri(None) is None and call_of_uri("http://h/nothing") is None
    assert reference_id({"referenceId": 74}) == "74"
    assert reference_id({"referenceId": True}) is None and reference_id([1]) is None
    with pytest.raises(ValueError):
        link([("bogus", None)])


@pytest.mark.parametrize("name", ["two-step-transfer.json", "initiate-transfer.json"])
def test_the_seed_cassettes_causes_are_found_again(name: str) -> None:
    path = ROOT / "cassettes" / name
    if not path.exists():
        pytest.skip(f"cassettes/{name} is not there yet")
    desktop = cas.load(path).desktop()
    linker = Linker()
    for event in desktop.events:
        if isinstance(event, cas.Exchange):
            linker.request(
                Operation(event.id, event.request.method, event.request.path, event.request.json)
            )
        else:
            linker.notification(event.id, event.message)
    assert linker.causes() == {n.id: n.cause for n in desktop.notifications()}


def chat(ref: int) -> dict[str, Any]:
    return {"channel": "/v2/me/chats", "data": {"referenceId": ref, "messageType": "Accepted"}}


def chat_op(xid: str, ref: int | None = None) -> tuple[str, Operation]:
    body: dict[str, Any] = {"operationName": "Accept"}
    if ref is not None:
        body["referenceId"] = ref
    return "request", Operation(xid, "POST", "/api/v2/me/chats/ch1", body)


def test_a_reused_reference_id_links_to_the_latest_exchange_sent_before() -> None:
    causes = link(
        [
            chat_op("x1", 7),
            ("response", ("x1", {"statusCode": 0, "referenceId": 7})),
            ("notification", ("n1", chat(7))),
            chat_op("x2", 7),  # the client reuses referenceId 7
            ("notification", ("n2", chat(7))),
            ("response", ("x2", {"statusCode": 0, "referenceId": 7})),
        ]
    )
    assert causes == {"n1": "x1", "n2": "x2"}


def test_a_reference_id_never_links_to_an_exchange_sent_after_the_notification() -> None:
    causes = link(
        [
            ("notification", ("n1", chat(9))),  # unsolicited, before anything carried 9
            chat_op("x1"),
            ("notification", ("n2", chat(9))),  # x1's answer names 9: counts from x1's send
            ("response", ("x1", {"statusCode": 0, "referenceId": 9})),
            chat_op("x2", 9),
        ]
    )
    assert causes == {"n1": None, "n2": "x1"}
