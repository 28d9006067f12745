"""relay/bayeux.py: parsing, the pure server's replies and decisions, channel rules, fuzzing."""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay import bayeux as bx
from relay.errors import BayeuxError

TIMEOUT_MS = 30000
OWNER = "session-1"


# --- helpers --------------------------------------------------------------------------------


def counter_ids() -> Callable[[], str]:
    """A deterministic ``new_id``: 32 hex digits, a different one each call."""
    numbers = itertools.count(0xABC0)
    return lambda: f"{next(numbers):032x}"


def server(**kw: Any) -> bx.Bayeux:
    kw.setdefault("timeout_ms", TIMEOUT_MS)
    kw.setdefault("new_id", counter_ids())
    return bx.Bayeux(**kw)


def handshake(b: bx.Bayeux, *, owner: str = OWNER) -> str:
    outcome = b.process(
        [
            {
                "channel": bx.HANDSHAKE,
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "id": "1",
            }
        ],
        transport="long-polling",
        owner=owner,
    )
    client_id: str = outcome.replies[0]["clientId"]
    return client_id


def send(b: bx.Bayeux, *messages: dict[str, Any]) -> bx.Outcome:
    return b.process(list(messages), transport="long-polling", owner=OWNER)


def connect(client_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "channel": bx.CONNECT,
        "clientId": client_id,
        "connectionType": "long-polling",
        **extra,
    }


def connected(b: bx.Bayeux) -> str:
    """A client past its first connect (the next lone connect may be held)."""
    cid = handshake(b)
    assert send(b, connect(cid, id="2")).hold is False
    return cid


def event(n: int = 1) -> dict[str, Any]:
    return {"channel": "/v2/me/calls", "data": {"n": n}}


# --- parsing --------------------------------------------------------------------------------


def test_an_array_of_messages_parses() -> None:
    messages = [{"channel": bx.CONNECT, "clientId": "c", "id": "1"}, {"channel": "/a/b"}]
    assert bx.parse_messages(orjson.dumps(messages)) == messages


def test_a_single_object_parses_as_a_list_of_one() -> None:
    message = {"channel": bx.HANDSHAKE, "version": "1.0", "id": 7}
    assert bx.parse_messages(orjson.dumps(message)) == [message]


def test_a_form_body_with_a_message_field_parses() -> None:
    body = b"message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fconnect%22%2C%22id%22%3A%223%22%7D%5D"
    ctype = "application/x-www-form-urlencoded; charset=UTF-8"
    assert bx.parse_messages(body, ctype) == [{"channel": bx.CONNECT, "id": "3"}]


def test_a_form_content_type_is_not_needed_for_json() -> None:
    body = orjson.dumps([{"channel": "/a"}])
    assert bx.parse_messages(body, "application/json;charset=UTF-8") == [{"channel": "/a"}]


@pytest.mark.parametrize(
    ("body", "ctype", "says"),
    [
        (b"", None, "not valid JSON"),
        (b"[{", None, "not valid JSON"),
        (b"hello", None, "not valid JSON"),
        (b"\xff\xfe[]", None, "not valid JSON"),
        (b"[]", None, "non-empty array"),
        (b"42", None, "non-empty array"),
        (b'"/meta/connect"', None, "non-empty array"),
        (b"null", None, "non-empty array"),
        (b"[1]", None, "message 0 is not an object"),
        (b'[{"channel": "/a"}, []]', None, "message 1 is not an object"),
        (b"[{}]", None, "message 0 has no valid 'channel'"),
        (b'[{"channel": 5}]', None, "no valid 'channel'"),
        (b'[{"channel": null}]', None, "no valid 'channel'"),
        (b'[{"channel": ""}]', None, "no valid 'channel'"),
        (b'[{"channel": "/"}]', None, "no valid 'channel'"),
        (b'[{"channel": "meta/connect"}]', None, "no valid 'channel'"),
        (b'[{"channel": "/a//b"}]', None, "no valid 'channel'"),
        (b'[{"channel": "/a/"}]', None, "no valid 'channel'"),
        (b'[{"channel": "/a/*"}]', None, "no valid 'channel'"),
        (b'[{"channel": "/a", "id": [1]}]', None, "'id'"),
        (b'[{"channel": "/a", "id": {"x": 1}}]', None, "'id'"),
        (b'[{"channel": "/a", "id": 1.5}]', None, "'id'"),
        (b'[{"channel": "/a", "id": true}]', None, "'id'"),
        (b'[{"channel": "/a", "clientId": 12}]', None, "'clientId'"),
        (b"other=1", "application/x-www-form-urlencoded", "no 'message' field"),
        (b"message=%7B", "application/x-www-form-urlencoded", "not valid JSON"),
        (b"message=\xff", "application/x-www-form-urlencoded", "not UTF-8"),
        (b"message=%5B%5D", "application/x-www-form-urlencoded", "non-empty array"),
    ],
)
def test_malformed_bodies_are_a_400(body: bytes, ctype: str | None, says: str) -> None:
    with pytest.raises(BayeuxError) as info:
        bx.parse_messages(body, ctype)
    assert info.value.status == 400
    assert says in str(info.value)


def test_string_and_integer_ids_are_accepted() -> None:
    messages = [{"channel": "/a", "id": "x"}, {"channel": "/b", "id": 3}]
    assert bx.validate_messages(messages) == messages


# --- fuzzing the parser ---------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
channels = st.sampled_from(
    [
        bx.HANDSHAKE,
        bx.CONNECT,
        bx.SUBSCRIBE,
        bx.UNSUBSCRIBE,
        bx.DISCONNECT,
        "/meta/other",
        "/meta",
        "/v2/me/calls",
        "/service/x",
        "/a/*",
        "/a/**",
        "/",
        "",
        "no-slash",
    ]
)
# Objects shaped like Bayeux messages, so that the fuzzing reaches past the first checks.
message_like = st.fixed_dictionaries(
    {"channel": channels | json_values},
    optional={
        "id": json_values,
        "clientId": json_values | st.just("KNOWN"),
        "subscription": json_values,
        "advice": json_values,
        "supportedConnectionTypes": json_values,
        "data": json_values,
    },
)
bodies_as_values = json_values | message_like | st.lists(message_like | json_values, max_size=4)
content_types = st.sampled_from(
    [None, "application/json", "application/x-www-form-urlencoded", "text/plain"]
)


def _check_parsed(messages: list[Any]) -> None:
    assert isinstance(messages, list) and messages
    for m in messages:
        assert isinstance(m, dict)
        assert isinstance(m["channel"], str)
        assert bx.is_valid_channel(m["channel"], wildcards=False)
        assert m.get("id") is None or isinstance(m["id"], str | int)
        assert not isinstance(m.get("id"), bool)
        assert m.get("clientId") is None or isinstance(m["clientId"], str)


@given(body=st.binary(max_size=200), ctype=content_types)
def test_any_bytes_parse_or_raise_the_protocol_error(body: bytes, ctype: str | None) -> None:
    try:
        messages = bx.parse_messages(body, ctype)
    except BayeuxError as e:
        assert e.status == 400
    else:
        _check_parsed(messages)


@given(value=bodies_as_values, as_form=st.booleans())
def test_any_json_value_parses_or_raises_the_protocol_error(value: Any, as_form: bool) -> None:
    data = orjson.dumps(value)
    ctype = None
    if as_form:
        from urllib.parse import urlencode

        data = urlencode({"message": data.decode()}).encode()
        ctype = "application/x-www-form-urlencoded"
    try:
        messages = bx.parse_messages(data, ctype)
    except BayeuxError as e:
        assert e.status == 400
    else:
        _check_parsed(messages)
        assert messages == (value if isinstance(value, list) else [value])


# --- fuzzing the server ---------------------------------------------------------------------

client_ids = st.sampled_from(["KNOWN", "unknown", ""])
fuzz_message = st.fixed_dictionaries(
    {"channel": channels.filter(lambda c: bx.is_valid_channel(c, wildcards=False))},
    optional={
        "id": st.text(max_size=3) | st.integers(-5, 5),
        "clientId": client_ids,
        "subscription": json_values | st.sampled_from(["/a/b", "/a/*", "/meta/**", "/**"]),
        "advice": json_values | st.just({"timeout": 0}),
        "supportedConnectionTypes": json_values
        | st.lists(st.sampled_from(["long-polling", "websocket", "flash"]), max_size=3),
        "connectionType": json_values,
        "data": json_values,
    },
)


@given(
    batches=st.lists(st.lists(fuzz_message, min_size=1, max_size=4), min_size=1, max_size=5),
    queued=st.integers(0, 2),
)
def test_the_server_answers_any_valid_messages_or_raises_the_protocol_error(
    batches: list[list[dict[str, Any]]], queued: int
) -> None:
    b = server()
    cid = handshake(b)
    for _ in range(queued):
        b.enqueue(b.clients[cid], event())
    for batch in batches:
        try:
            messages = bx.validate_messages(
                [{**m, "clientId": cid} if m.get("clientId") == "KNOWN" else m for m in batch]
            )
        except BayeuxError as e:  # a subscription with nested structure
            assert e.status == 400 and "'subscription'" in str(e)
            continue
        try:
            outcome = b.process(messages, transport="long-polling", owner=OWNER)
        except BayeuxError as e:
            assert e.status in (400, 500)
            assert len(messages) > 1 and any(m["channel"] == bx.HANDSHAKE for m in messages)
            continue
        assert len(outcome.replies) == len(messages)
        for message, reply in zip(messages, outcome.replies, strict=True):
            assert reply["channel"] == message["channel"]
            assert isinstance(reply["successful"], bool)
            assert ("id" in reply) == ("id" in message)
            assert reply.get("id") == message.get("id")
        if outcome.hold:
            assert len(messages) == 1
            assert outcome.replies[outcome.hold_index]["channel"] == bx.CONNECT
            assert outcome.events == []
        orjson.dumps([*outcome.events, *outcome.replies])  # always serialisable


@given(value=bodies_as_values)
def test_whatever_parses_is_answered_or_refused_with_the_protocol_error(value: Any) -> None:
    b = server()
    cid = handshake(b)

    def known(m: Any) -> Any:
        return {**m, "clientId": cid} if isinstance(m, dict) and m.get("clientId") == "KNOWN" else m

    value = [known(m) for m in value] if isinstance(value, list) else known(value)
    try:
        messages = bx.parse_messages(orjson.dumps(value))
        outcome = b.process(messages, transport="long-polling", owner=OWNER)
    except BayeuxError:
        return
    assert len(outcome.replies) == len(messages)


@given(offered=json_values, version=json_values, mid=st.text(max_size=3))
def test_any_handshake_is_answered(offered: Any, version: Any, mid: str) -> None:
    b = server()
    message = {"channel": bx.HANDSHAKE, "supportedConnectionTypes": offered, "version": version}
    (reply,) = send(b, {**message, "id": mid}).replies
    assert reply["id"] == mid
    assert reply["successful"] is (reply.get("clientId") in b.clients)
    if not reply["successful"]:
        assert reply["error"].startswith("301::")


# --- /meta/handshake ------------------------------------------------------------------------


def test_handshake_reply_has_every_field_a_client_needs() -> None:
    b = server()
    outcome = send(
        b,
        {
            "channel": bx.HANDSHAKE,
            "version": "1.0",
            "supportedConnectionTypes": ["websocket", "long-polling"],
            "id": "17",
        },
    )
    (reply,) = outcome.replies
    cid = f"{0xABC0:032x}"
    assert reply == {
        "channel": bx.HANDSHAKE,
        "successful": True,
        "clientId": cid,
        "version": "1.0",
        "minimumVersion": "1.0",
        "supportedConnectionTypes": ["websocket", "long-polling", "callback-polling"],
        "advice": {"reconnect": "retry", "interval": 0, "timeout": TIMEOUT_MS},
        "id": "17",
    }
    assert len(reply["clientId"]) >= 32
    assert set(reply["clientId"]) <= set(string.hexdigits)
    assert outcome.handshaken is outcome.client is b.clients[cid]
    assert outcome.client.owner == OWNER
    assert outcome.client.connected is False
    assert outcome.hold is False


def test_each_handshake_gets_a_fresh_client_id_from_new_id() -> None:
    b = server()
    first, second = handshake(b), handshake(b, owner="session-2")
    assert first != second
    assert set(b.clients) == {first, second}
    assert b.clients[second].owner == "session-2"


def test_advice_carries_the_configured_timeout_and_interval() -> None:
    b = server(timeout_ms=45000, interval_ms=250)
    reply = send(b, {"channel": bx.HANDSHAKE}).replies[0]
    assert reply["advice"] == {"reconnect": "retry", "interval": 250, "timeout": 45000}
    assert "id" not in reply


def test_a_handshake_must_be_alone() -> None:
    b = server()
    cid = handshake(b)
    with pytest.raises(BayeuxError) as info:
        send(b, {"channel": bx.HANDSHAKE}, connect(cid))
    assert info.value.status == 400
    assert len(b.clients) == 1


def test_a_handshake_without_a_session_is_a_server_error() -> None:
    with pytest.raises(BayeuxError) as info:
        server().process([{"channel": bx.HANDSHAKE}], transport="long-polling", owner=None)
    assert info.value.status == 500


def test_no_common_connection_type_is_a_301_failure() -> None:
    b = server(connection_types=["long-polling"])
    outcome = send(
        b, {"channel": bx.HANDSHAKE, "supportedConnectionTypes": ["websocket"], "id": "1"}
    )
    (reply,) = outcome.replies
    assert reply["successful"] is False
    assert reply["error"].startswith("301::")
    assert reply["supportedConnectionTypes"] == ["long-polling"]
    assert reply["advice"] == {"reconnect": "none"}
    assert reply["id"] == "1"
    assert "clientId" not in reply
    assert b.clients == {}
    assert outcome.handshaken is None


@pytest.mark.parametrize("offered", [[["long-polling"]], [{"a": 1}], [None, 3]])
def test_odd_connection_type_lists_are_refused_not_a_crash(offered: list[Any]) -> None:
    b = server()
    reply = send(b, {"channel": bx.HANDSHAKE, "supportedConnectionTypes": offered}).replies[0]
    assert reply["successful"] is False
    assert reply["error"].startswith("301::")


# --- unknown clients ------------------------------------------------------------------------


def test_unknown_client_gets_exactly_the_genesys_402_reply() -> None:
    b = server()
    outcome = send(b, connect("no-such-client"))
    assert outcome.replies == [
        {
            "channel": "/meta/connect",
            "successful": False,
            "error": "402::Unknown client",
            "advice": {"reconnect": "handshake", "interval": 0},
        }
    ]
    assert outcome.hold is False
    assert outcome.client is None


@pytest.mark.parametrize(
    "message",
    [
        {"channel": bx.SUBSCRIBE, "subscription": "/a", "id": "4"},
        {"channel": "/service/x", "clientId": "", "data": {}, "id": "4"},
        {"channel": bx.DISCONNECT, "clientId": "nope", "id": "4"},
    ],
)
def test_any_message_without_a_known_client_gets_402(message: dict[str, Any]) -> None:
    (reply,) = send(server(), message).replies
    assert reply == {
        "channel": message["channel"],
        "successful": False,
        "error": "402::Unknown client",
        "advice": {"reconnect": "handshake", "interval": 0},
        "id": "4",
    }


# --- /meta/connect --------------------------------------------------------------------------


def test_the_first_connect_is_answered_at_once() -> None:
    b = server()
    cid = handshake(b)
    outcome = send(b, connect(cid, id="2"))
    assert outcome.hold is False
    assert outcome.hold_index == -1
    assert outcome.replies == [
        {
            "channel": bx.CONNECT,
            "successful": True,
            "clientId": cid,
            "advice": {"reconnect": "retry", "interval": 0, "timeout": TIMEOUT_MS},
            "id": "2",
        }
    ]
    assert b.clients[cid].connected is True


def test_a_second_connect_alone_is_held() -> None:
    b = server()
    cid = connected(b)
    outcome = send(b, connect(cid, id="3"))
    assert outcome.hold is True
    assert outcome.hold_index == 0
    assert outcome.replies[0]["successful"] is True
    assert outcome.replies[0]["id"] == "3"
    assert outcome.events == []
    assert outcome.client is b.clients[cid]


def test_a_connect_batched_with_another_message_is_not_held() -> None:
    b = server()
    cid = connected(b)
    outcome = send(
        b,
        {"channel": bx.SUBSCRIBE, "clientId": cid, "subscription": "/a", "id": "3"},
        connect(cid, id="4"),
    )
    assert outcome.hold is False
    assert outcome.hold_index == -1
    assert [r["id"] for r in outcome.replies] == ["3", "4"]


def test_a_connect_asking_timeout_zero_is_not_held() -> None:
    b = server()
    cid = connected(b)
    assert send(b, connect(cid, advice={"timeout": 0})).hold is False
    # Other advice does not prevent the hold.
    assert send(b, connect(cid, advice={"timeout": 5000})).hold is True


def test_a_connect_with_events_queued_is_answered_with_them() -> None:
    b = server()
    cid = connected(b)
    b.enqueue(b.clients[cid], event(1))
    b.enqueue(b.clients[cid], event(2))
    outcome = send(b, connect(cid))
    assert outcome.hold is False
    assert outcome.events == [event(1), event(2)]
    assert b.clients[cid].queue == []
    # Queue now empty: the next lone connect is held again.
    assert send(b, connect(cid)).hold is True


def test_events_ride_on_any_reply_not_only_connects() -> None:
    b = server()
    cid = handshake(b)
    b.enqueue(b.clients[cid], event())
    outcome = send(b, {"channel": bx.SUBSCRIBE, "clientId": cid, "subscription": "/v2/me/*"})
    assert outcome.events == [event()]
    assert b.clients[cid].queue == []


# --- /meta/subscribe and /meta/unsubscribe --------------------------------------------------


@pytest.mark.parametrize("subscription", ["/v2/me/*", ["/v2/me/calls", "/v2/me/**"], ["/**"]])
def test_subscribe_echoes_the_subscription_exactly(subscription: str | list[str]) -> None:
    b = server()
    cid = handshake(b)
    outcome = send(
        b, {"channel": bx.SUBSCRIBE, "clientId": cid, "subscription": subscription, "id": "5"}
    )
    assert outcome.replies == [
        {
            "channel": bx.SUBSCRIBE,
            "successful": True,
            "clientId": cid,
            "subscription": subscription,
            "id": "5",
        }
    ]
    assert outcome.subscribed is True
    expected = {subscription} if isinstance(subscription, str) else set(subscription)
    assert b.clients[cid].subscriptions == expected


@pytest.mark.parametrize("subscription", ["/meta/**", "/meta/connect", "/meta/*", "/meta"])
def test_subscribing_to_meta_channels_is_refused_with_403(subscription: str) -> None:
    b = server()
    cid = handshake(b)
    (reply,) = send(
        b, {"channel": bx.SUBSCRIBE, "clientId": cid, "subscription": subscription, "id": "6"}
    ).replies
    assert reply["successful"] is False
    assert reply["error"].startswith("403::")
    assert reply["subscription"] == subscription
    assert reply["id"] == "6"
    assert b.clients[cid].subscriptions == set()


@pytest.mark.parametrize(
    "subscription",
    ["/a/*/b", "/a/b*", "/a/***", "/*/b", "a/b", "/a/", "", 5, None, [], ["/a", "/a/*/b"]],
)
def test_invalid_subscriptions_are_refused(subscription: Any) -> None:
    b = server()
    cid = handshake(b)
    message: dict[str, Any] = {"channel": bx.SUBSCRIBE, "clientId": cid, "id": "7"}
    if subscription is not None:
        message["subscription"] = subscription
    (reply,) = send(b, message).replies
    assert reply["successful"] is False
    assert reply["error"] == "405::Invalid channel"
    assert reply["subscription"] == subscription
    assert b.clients[cid].subscriptions == set()


def test_unsubscribe_removes_only_what_it_names() -> None:
    b = server()
    cid = handshake(b)
    send(b, {"channel": bx.SUBSCRIBE, "clientId": cid, "subscription": ["/a/*", "/b"]})
    outcome = send(b, {"channel": bx.UNSUBSCRIBE, "clientId": cid, "subscription": "/a/*"})
    assert outcome.replies[0] == {
        "channel": bx.UNSUBSCRIBE,
        "successful": True,
        "clientId": cid,
        "subscription": "/a/*",
    }
    assert outcome.subscribed is False
    assert b.clients[cid].subscriptions == {"/b"}
    assert not b.clients[cid].subscribed_to("/a/x")
    assert b.clients[cid].subscribed_to("/b")


def test_subscribed_to_is_true_once_however_many_patterns_match() -> None:
    client = bx.Client(client_id="c", owner=OWNER, subscriptions={"/v2/me/*", "/**"})
    assert client.subscribed_to("/v2/me/calls") is True
    assert client.subscribed_to("/other/deep/channel") is True
    assert bx.Client(client_id="c", owner=OWNER).subscribed_to("/v2/me/calls") is False


@pytest.mark.parametrize(
    ("pattern", "channel", "matches"),
    [
        ("/a/b", "/a/b", True),
        ("/a/b", "/a/bc", False),
        ("/a/b", "/a/b/c", False),
        ("/a/*", "/a/b", True),
        ("/a/*", "/a/b/c", False),
        ("/a/*", "/a", False),
        ("/a/*", "/ab", False),
        ("/a/*", "/ab/c", False),
        ("/a/**", "/a/b", True),
        ("/a/**", "/a/b/c", True),
        ("/a/**", "/a", False),
        ("/a/**", "/ab/c", False),
        ("/*", "/a", True),
        ("/*", "/a/b", False),
        ("/**", "/a/b/c", True),
        ("/v2/me/*", "/v2/me/calls", True),
        ("/v2/me/*", "/v2/me", False),
    ],
)
def test_channel_matches(pattern: str, channel: str, matches: bool) -> None:
    assert bx.channel_matches(pattern, channel) is matches


@pytest.mark.parametrize(
    ("channel", "wildcards", "valid"),
    [
        ("/a", False, True),
        ("/a/b/c", False, True),
        ("/a/*", False, False),
        ("/a/*", True, True),
        ("/a/**", True, True),
        ("/**", True, True),
        ("/a/*/b", True, False),
        ("/a/b*", True, False),
        ("/a/***", True, False),
        ("/", True, False),
        ("", True, False),
        ("a", True, False),
        ("/a/", True, False),
        ("//a", True, False),
    ],
)
def test_is_valid_channel(channel: str, wildcards: bool, valid: bool) -> None:
    assert bx.is_valid_channel(channel, wildcards=wildcards) is valid


# --- /meta/disconnect, publish, unknown meta channels ---------------------------------------


def test_disconnect_drops_the_client_and_later_messages_get_402() -> None:
    b = server()
    cid = connected(b)
    client = b.clients[cid]
    outcome = send(b, {"channel": bx.DISCONNECT, "clientId": cid, "id": "8"})
    assert outcome.replies == [{"channel": bx.DISCONNECT, "successful": True, "id": "8"}]
    assert outcome.disconnected is client
    assert cid not in b.clients
    (reply,) = send(b, connect(cid, id="9")).replies
    assert reply["error"] == "402::Unknown client"
    assert reply["advice"] == {"reconnect": "handshake", "interval": 0}


def test_messages_after_a_disconnect_in_the_same_batch_get_402() -> None:
    b = server()
    cid = handshake(b)
    outcome = send(b, {"channel": bx.DISCONNECT, "clientId": cid}, connect(cid))
    assert outcome.replies[0]["successful"] is True
    assert outcome.replies[1]["error"] == "402::Unknown client"


def test_a_publish_is_acknowledged() -> None:
    b = server()
    cid = handshake(b)
    outcome = send(b, {"channel": "/service/x", "clientId": cid, "data": {"a": 1}, "id": "10"})
    assert outcome.replies == [{"channel": "/service/x", "successful": True, "id": "10"}]
    assert outcome.hold is False


def test_an_unknown_meta_channel_is_a_failure_reply() -> None:
    b = server()
    cid = handshake(b)
    (reply,) = send(b, {"channel": "/meta/bogus", "clientId": cid, "id": "11"}).replies
    assert reply == {
        "channel": "/meta/bogus",
        "successful": False,
        "error": "400::Unknown meta channel",
        "id": "11",
    }


def test_ids_are_echoed_even_when_repeated() -> None:
    b = server()
    cid = handshake(b)
    first = send(
        b,
        {"channel": bx.SUBSCRIBE, "clientId": cid, "subscription": "/a", "id": "0"},
        {"channel": bx.SUBSCRIBE, "clientId": cid, "subscription": "/b", "id": "0"},
    )
    assert [r["id"] for r in first.replies] == ["0", "0"]
    assert all(r["successful"] for r in first.replies)
    again = send(b, connect(cid, id="0"), {"channel": "/x", "clientId": cid, "id": 0})
    assert [r["id"] for r in again.replies] == ["0", 0]
    assert b.clients[cid].subscriptions == {"/a", "/b"}


# --- events and sessions --------------------------------------------------------------------


def test_enqueue_and_drain_keep_order_and_empty_the_queue() -> None:
    b = server()
    client = b.clients[handshake(b)]
    b.enqueue(client, event(1))
    b.enqueue(client, event(2))
    assert bx.Bayeux.drain(client) == [event(1), event(2)]
    assert client.queue == []
    assert b.drain(client) == []


def test_end_held_connect_after_a_timeout_is_the_reply_unchanged() -> None:
    b = server()
    cid = connected(b)
    held = send(b, connect(cid, id="3"))
    reply = held.replies[held.hold_index]
    assert b.end_held_connect(reply, disconnected=False) == reply


def test_end_held_connect_after_a_disconnect_advises_reconnect_none() -> None:
    b = server()
    cid = connected(b)
    held = send(b, connect(cid, id="3"))
    reply = held.replies[held.hold_index]
    before = dict(reply)
    ended = b.end_held_connect(reply, disconnected=True)
    assert ended == {
        **before,
        "advice": {"reconnect": "none", "interval": 0, "timeout": TIMEOUT_MS},
    }
    assert reply == before  # the held reply itself is not changed


def test_drop_owner_forgets_only_that_sessions_clients() -> None:
    b = server()
    a1, a2 = handshake(b, owner="A"), handshake(b, owner="A")
    other = handshake(b, owner="B")
    gone = b.drop_owner("A")
    assert sorted(c.client_id for c in gone) == sorted([a1, a2])
    assert set(b.clients) == {other}
    assert b.drop_owner("A") == []
    assert send(b, connect(a1)).replies[0]["error"] == "402::Unknown client"


@pytest.mark.parametrize(
    "subscription",
    [{"a": 1}, [["/a"]], ["/a", {"b": 2}], [[[]]]],
)
def test_a_subscription_with_nested_structure_is_a_protocol_error(subscription: Any) -> None:
    with pytest.raises(BayeuxError) as info:
        bx.validate_messages([{"channel": bx.SUBSCRIBE, "subscription": subscription}])
    assert info.value.status == 400
    assert "'subscription'" in str(info.value)


def test_a_subscription_nested_too_deep_to_echo_is_refused_when_parsed() -> None:
    deep = b"[" * 300 + b"]" * 300
    with pytest.raises(BayeuxError) as info:
        bx.parse_messages(
            b'[{"channel":"/meta/subscribe","clientId":"c","subscription":%s}]' % deep
        )
    assert info.value.status == 400
