"""Redaction: placeholders, default and extra rules, idempotence, nothing secret survives."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.cassette import Body, Request, Response
from relay.redact import (
    DEFAULT_RULES,
    PLACEHOLDER_RE,
    Placeholders,
    contains_placeholder,
    is_placeholder,
    matches_redacted,
    parse_json_path,
    redact_body,
    redact_headers,
    redact_json,
    redact_message,
    redact_pairs,
    redact_request,
    redact_response,
    rules,
)

BASIC = "Basic " + base64.b64encode(b"agent:s3cret").decode()


def test_placeholder_shape() -> None:
    assert is_placeholder("<redacted:authorization:1>")
    assert is_placeholder("<redacted:x-csrf-token:12>")
    assert not is_placeholder("JSESSIONID=<redacted:cookie:1>")
    assert not is_placeholder("<redacted:authorization>")
    assert not is_placeholder("<redacted::1>")
    assert not is_placeholder(None)
    assert not is_placeholder(1)
    assert contains_placeholder("JSESSIONID=<redacted:cookie:1>; Path=/")
    assert PLACEHOLDER_RE.fullmatch("<redacted:a.b_c-d:3>") is not None


def test_numbered_per_distinct_secret_and_kind_never_a_hash() -> None:
    ph = Placeholders()
    assert ph("Authorization", BASIC) == "<redacted:authorization:1>"
    assert ph("authorization", BASIC) == "<redacted:authorization:1>"
    assert ph("authorization", "Basic b3RoZXI6b3RoZXI=") == "<redacted:authorization:2>"
    assert ph("x-csrf-token", "t1") == "<redacted:x-csrf-token:1>"
    # a fresh table numbers the same secret 1 again: nothing is derived from the secret
    assert Placeholders()("authorization", "Basic b3RoZXI6b3RoZXI=") == (
        "<redacted:authorization:1>"
    )


def test_default_headers() -> None:
    ph = Placeholders()
    headers = [
        ("Authorization", BASIC),
        ("X-CSRF-HEADER", "X-CSRF-TOKEN"),
        ("X-CSRF-TOKEN", "0c5c7b54-9a1f-4a0e-9f54-1f7f7e0e6b1d"),
        ("Cookie", "JSESSIONID=abc123; BAYEUX_BROWSER=zz9"),
        ("Content-Type", "application/json"),
    ]
    assert redact_headers(headers, DEFAULT_RULES, ph) == [
        ("Authorization", "<redacted:authorization:1>"),
        ("X-CSRF-HEADER", "X-CSRF-TOKEN"),  # the NAME of the token header: not a secret
        ("X-CSRF-TOKEN", "<redacted:x-csrf-token:1>"),
        ("Cookie", "JSESSIONID=<redacted:cookie:1>; BAYEUX_BROWSER=<redacted:cookie:2>"),
        ("Content-Type", "application/json"),
    ]
    # the same session cookie set by the server gets the same placeholder; attributes stay
    set_cookie = [("Set-Cookie", "JSESSIONID=abc123; Path=/; HttpOnly")]
    assert redact_headers(set_cookie, DEFAULT_RULES, ph) == [
        ("Set-Cookie", "JSESSIONID=<redacted:cookie:1>; Path=/; HttpOnly")
    ]


def test_extra_header_rule() -> None:
    r = rules(headers=["X-Api-Key "])
    assert redact_headers([("x-api-key", "k")], r, Placeholders()) == [
        ("x-api-key", "<redacted:x-api-key:1>")
    ]
    with pytest.raises(ValueError):
        rules(headers=["a:b"])
    with pytest.raises(ValueError):
        rules(headers=[""])


def test_password_like_json_keys_anywhere() -> None:
    value = {
        "operationName": "ChangePassword",
        "oldPassword": "a",
        "data": [{"newPassword": "b", "apiKey": 7, "bypass": "kept", "accessToken": "t"}],
        "passive": True,
    }
    assert redact_json(value, DEFAULT_RULES, Placeholders()) == {
        "operationName": "ChangePassword",
        "oldPassword": "<redacted:oldpassword:1>",
        "data": [
            {
                "newPassword": "<redacted:newpassword:1>",
                "apiKey": "<redacted:apikey:1>",
                "bypass": "kept",
                "accessToken": "<redacted:accesstoken:1>",
            }
        ],
        "passive": True,
    }


def test_json_paths_anywhere_anchored_and_wildcard() -> None:
    r = rules(json_paths=["userData", "data.call.participants", "data.*.dnis"])
    message = {
        "channel": "/v2/me/calls",
        "data": {
            "call": {
                "id": "c1",
                "dnis": "5005",
                "participants": [{"phoneNumber": "5000", "digits": "5000"}],
                "userData": {"name": "Ada", "vip": True, "score": 3, "none": None},
            },
            "participants": "not under data.call: kept",
        },
    }
    out = redact_message(message, r, Placeholders())
    call = out["data"]["call"]
    assert call["id"] == "c1"
    assert call["dnis"] == "<redacted:dnis:1>"
    assert call["participants"] == [
        {"phoneNumber": "<redacted:participants:1>", "digits": "<redacted:participants:1>"}
    ]
    assert call["userData"] == {
        "name": "<redacted:userdata:1>",
        "vip": True,
        "score": "<redacted:userdata:2>",
        "none": None,
    }
    assert out["data"]["participants"] == "not under data.call: kept"
    assert message["data"]["call"]["dnis"] == "5005"  # the input is left alone


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a."])
def test_bad_json_paths(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_json_path(bad)


def test_request_and_response_are_redacted_everywhere() -> None:
    ph = Placeholders()
    request = Request(
        method="POST",
        path="/ui/login",
        query=[("user", "agent"), ("password", "s3cret")],
        headers=[("Authorization", BASIC), ("Content-Type", "application/x-www-form-urlencoded")],
        body=Body("text", "j_username=agent&j_password=s3cret"),
    )
    out = redact_request(request, DEFAULT_RULES, ph)
    assert out.query == [("user", "agent"), ("password", "<redacted:password:1>")]
    assert out.body == Body("text", "j_username=agent&j_password=%3Credacted%3Aj_password%3A1%3E")
    assert request.body == Body("text", "j_username=agent&j_password=s3cret")
    response = Response(
        status=200,
        headers=[("Set-Cookie", "JSESSIONID=x; Path=/"), ("Content-Type", "application/json")],
        body=Body("json", {"statusCode": 0, "password": "p"}),
    )
    out_r = redact_response(response, DEFAULT_RULES, ph)
    assert out_r.header("Set-Cookie") == "JSESSIONID=<redacted:cookie:1>; Path=/"
    assert out_r.body == Body("json", {"statusCode": 0, "password": "<redacted:password:2>"})
    assert redact_body(None, DEFAULT_RULES, ph) is None
    binary = Body("base64", "AAEC")
    assert redact_body(binary, DEFAULT_RULES, ph) is binary
    assert redact_pairs([("a", "1")], DEFAULT_RULES, ph) == [("a", "1")]


def test_matches_redacted() -> None:
    assert matches_redacted("<redacted:authorization:1>", BASIC)
    assert matches_redacted("JSESSIONID=<redacted:cookie:1>; a=b", "JSESSIONID=zz; a=b")
    assert not matches_redacted("JSESSIONID=<redacted:cookie:1>; a=b", "JSESSIONID=zz; a=c")
    assert matches_redacted("plain", "plain") and not matches_redacted("plain", "plai")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["password", "userData", "id", "token", "x", "data"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _secret_strings(value: Any, secret: bool = False) -> list[str]:
    """Every scalar (as text) under a password-like or userData key."""
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += _secret_strings(v, secret or k in ("password", "userData", "token"))
        return out
    if isinstance(value, list):
        return [s for v in value for s in _secret_strings(v, secret)]
    if secret and value is not None and not isinstance(value, bool):
        return [str(value)]
    return []


@given(json_values)
def test_redaction_is_idempotent_and_leaves_no_secret_leaf(value: Any) -> None:
    r = rules(json_paths=["userData"])
    once = redact_json(value, r, Placeholders())
    assert redact_json(once, r, Placeholders()) == once
    # every leaf under a secret key is now a placeholder
    assert all(is_placeholder(s) for s in _secret_strings(once))
    json.dumps(once)  # still JSON


@given(json_values)
def test_redaction_never_changes_its_input_and_shares_what_it_does_not_change(value: Any) -> None:
    r = rules(json_paths=["userData"])
    before = json.dumps(value, sort_keys=True)
    out = redact_json(value, r, Placeholders())
    assert json.dumps(value, sort_keys=True) == before
    if not _secret_strings(value):
        assert out == value
    if not _secret_keys(value):  # nothing to look at: the very same object comes back
        assert out is value


def _secret_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            k in ("password", "userData", "token") or _secret_keys(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_secret_keys(v) for v in value)
    return False


def test_a_body_without_secrets_is_not_copied() -> None:
    body = {"user": {"id": "7", "devices": [{"id": "d1", "phoneNumber": "5001"}]}}
    assert redact_json(body, DEFAULT_RULES, Placeholders()) is body
    mixed = {"user": {"id": "7", "password": "pw"}, "devices": [{"id": "d1"}]}
    out = redact_json(mixed, DEFAULT_RULES, Placeholders())
    assert out["user"]["password"] == "<redacted:password:1>"
    assert mixed["user"]["password"] == "pw"
    assert out["devices"] is mixed["devices"]
