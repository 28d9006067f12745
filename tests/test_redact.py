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


# --- regressions (review of the recording side) ---------------------------------------------


def test_a_csrf_header_announced_by_x_csrf_header_is_redacted_both_ways() -> None:
    ph = Placeholders()
    response = [("X-CSRF-HEADER", "X-My-Csrf"), ("X-My-Csrf", "csrf-secret-uuid")]
    assert redact_headers(response, DEFAULT_RULES, ph) == [
        ("X-CSRF-HEADER", "X-My-Csrf"),  # a header NAME: kept
        ("X-My-Csrf", "<redacted:x-my-csrf:1>"),
    ]
    # remembered for the desktop's later requests
    assert redact_headers([("x-my-csrf", "csrf-secret-uuid")], DEFAULT_RULES, ph) == [
        ("x-my-csrf", "<redacted:x-my-csrf:1>")
    ]


@pytest.mark.parametrize(
    "name", ["X-Auth-Token", "X-XSRF-TOKEN", "X-Api-Key", "ApiKey", "X-Session-Id", "X-Secret"]
)
def test_token_like_header_names_are_redacted(name: str) -> None:
    assert redact_headers([(name, "s3cret")], DEFAULT_RULES, Placeholders())[0][1].startswith(
        "<redacted:"
    )


@pytest.mark.parametrize(
    "name", ["X-CSRF-HEADER", "WWW-Authenticate", "Content-Type", "Accept", "User-Agent"]
)
def test_ordinary_header_names_are_kept(name: str) -> None:
    assert redact_headers([(name, "v")], DEFAULT_RULES, Placeholders()) == [(name, "v")]


def test_tokens_in_url_valued_headers() -> None:
    ph = Placeholders()
    headers = [
        ("Location", "http://x/cb;jsessionid=J1?code=oauthcode123&next=/a#access_token=tok&x=1"),
        ("Referer", "http://h/ui/?access_token=referer-secret&tab=2"),
        ("Content-Location", "/api/v2/me?password=p"),
        ("Origin", "http://h"),
    ]
    assert redact_headers(headers, DEFAULT_RULES, ph) == [
        (
            "Location",
            "http://x/cb;jsessionid=<redacted:jsessionid:1>?code=<redacted:code:1>&next=/a"
            "#access_token=<redacted:access_token:1>&x=1",
        ),
        ("Referer", "http://h/ui/?access_token=<redacted:access_token:2>&tab=2"),
        ("Content-Location", "/api/v2/me?password=<redacted:password:1>"),
        ("Origin", "http://h"),
    ]
    # ``code`` is a secret only in a URL: GWS's statusCode-like JSON keys stay
    assert redact_pairs([("code", "1")], DEFAULT_RULES, ph) == [("code", "1")]


def test_jsessionid_path_parameter_is_redacted() -> None:
    request = Request(method="GET", path="/api/v2/me;JSESSIONID=pathsess-secret")
    out = redact_request(request, DEFAULT_RULES, Placeholders())
    assert out.path == "/api/v2/me;JSESSIONID=<redacted:jsessionid:1>"
    assert matches_redacted(out.path, "/api/v2/me;JSESSIONID=other")


@pytest.mark.parametrize(
    "key",
    [
        *("authorization", "Authorization", "auth", "x_auth", "basicAuth", "authentication"),
        *("jsessionid", "JSESSIONID", "sessionid", "session_id", "cookie", "Cookies"),
    ],
)
def test_more_secret_json_keys(key: str) -> None:
    out = redact_json({key: "s3cret"}, DEFAULT_RULES, Placeholders())
    assert is_placeholder(out[key])


@pytest.mark.parametrize(
    "key",
    [
        *("sessionId", "userState", "capabilities", "statusCode", "author", "authority", "code"),
        *("operationName", "referenceId", "clientId", "uri", "path"),
    ],
)
def test_gws_keys_are_kept(key: str) -> None:
    value = {key: "v"}
    assert redact_json(value, DEFAULT_RULES, Placeholders()) is value


def test_json_bodies_not_labelled_or_parsed_as_json_are_redacted() -> None:
    ph = Placeholders()
    text_plain = Body.from_bytes(b'{"operationName":"Answer","password":"pw1"}', "text/plain")
    assert text_plain is not None and text_plain.kind == "text"
    assert redact_body(text_plain, DEFAULT_RULES, ph, "text/plain;charset=UTF-8") == Body(
        "json", {"operationName": "Answer", "password": "<redacted:password:1>"}
    )
    bom = Body.from_bytes(b'\xef\xbb\xbf{"password":"pw-bom"}', "application/json")
    assert bom is not None and bom.kind == "text"  # orjson refuses the BOM
    assert redact_body(bom, DEFAULT_RULES, ph, "application/json") == Body(
        "json", {"password": "<redacted:password:2>"}
    )
    # nothing secret: the body is kept as it came
    plain = Body("text", '{"operationName":"Answer"}')
    assert redact_body(plain, DEFAULT_RULES, ph, "text/plain") is plain
    not_json = Body("text", "{not json")
    assert redact_body(not_json, DEFAULT_RULES, ph, "text/plain") is not_json


def test_multipart_form_fields_are_redacted_by_name() -> None:
    boundary = "XyZ"
    raw = (
        b'--XyZ\r\nContent-Disposition: form-data; name="username"\r\n\r\nu\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="password"\r\n\r\npw-multipart\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\xff\x00\r\n--XyZ--\r\n"
    )
    ctype = f"multipart/form-data; boundary={boundary}"
    body = Body.from_bytes(raw, ctype)
    assert body is not None
    out = redact_body(body, DEFAULT_RULES, Placeholders(), ctype)
    assert out is not None
    data = out.to_bytes()
    assert b"pw-multipart" not in data
    assert b'name="password"\r\n\r\n<redacted:password:1>\r\n--XyZ' in data
    assert b'name="username"\r\n\r\nu\r\n' in data and b"\xff\x00" in data
    clean = raw.replace(b"password", b"other")
    kept = Body.from_bytes(clean, ctype)
    assert redact_body(kept, DEFAULT_RULES, Placeholders(), ctype) is kept


def test_json_assets_are_redacted_and_other_assets_kept() -> None:
    from relay.redact import redact_asset

    ph = Placeholders()
    out = redact_asset(b'{"apiKey":"asset-secret","x":1}', "application/json", DEFAULT_RULES, ph)
    assert json.loads(out) == {"apiKey": "<redacted:apikey:1>", "x": 1}
    same = b'{ "x": 1 }'
    assert redact_asset(same, "application/json", DEFAULT_RULES, ph) is same
    js = b"var apiKey = 'k';"
    assert redact_asset(js, "application/javascript", DEFAULT_RULES, ph) is js


def test_placeholders_passing_through_keep_their_numbers_for_themselves() -> None:
    ph = Placeholders()
    replayed = "JSESSIONID=<redacted:cookie:1>"
    assert redact_headers([("Cookie", replayed)], DEFAULT_RULES, ph) == [("Cookie", replayed)]
    # the first new secret of that kind does not get the replayed one's number
    assert redact_headers([("Cookie", "JSESSIONID=new")], DEFAULT_RULES, ph) == [
        ("Cookie", "JSESSIONID=<redacted:cookie:2>")
    ]
    assert ph("cookie", "<redacted:cookie:5>") == "<redacted:cookie:5>"
    assert ph("cookie", "another") == "<redacted:cookie:3>"
    assert ph("cookie", "a third") == "<redacted:cookie:4>"
    assert ph("cookie", "a fourth") == "<redacted:cookie:6>"
