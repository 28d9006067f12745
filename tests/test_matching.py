"""relay/matching.py: requests compared by meaning, placeholders, ranking and explanations."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from factories import CALL, CONSULT, exchange, request
from hypothesis import given
from hypothesis import strategies as st

from relay import redact
from relay.matching import Difference, closest, compare, describe_request, explain, match

TRANSFER = {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}}


def wheres(actual: Any, recorded: Any) -> list[str]:
    return [d.where for d in compare(actual, recorded)]


# --- method, path -----------------------------------------------------------------------------


def test_an_identical_request_matches() -> None:
    r = request(query=[("a", "1")], json=TRANSFER)
    assert compare(r, request(query=[("a", "1")], json=TRANSFER)) == ()
    assert match(r, exchange(json=TRANSFER, query=[("a", "1")])).ok


def test_method_is_compared_without_case() -> None:
    assert compare(request(method="post"), request(method="POST")) == ()
    assert compare(request(method="GET"), request(method="POST")) == (
        Difference("method", "POST", "GET"),
    )


def test_path_is_compared_exactly() -> None:
    assert compare(request(path=CONSULT), request(path=CALL)) == (
        Difference("path", CALL, CONSULT),
    )
    assert wheres(request(path=CALL + "/"), request(path=CALL)) == ["path"]


def test_headers_are_not_compared() -> None:
    actual = request(headers=[("User-Agent", "a"), ("Cookie", "x=1")])
    assert compare(actual, request(headers=[("User-Agent", "b")])) == ()


# --- JSON bodies --------------------------------------------------------------------------------


def test_json_is_compared_by_meaning_not_key_order() -> None:
    recorded = request(json={"a": 1, "b": {"c": [1, {"d": 2, "e": 3}], "f": None}})
    actual = request(json={"b": {"f": None, "c": [1, {"e": 3, "d": 2}]}, "a": 1})
    assert compare(actual, recorded) == ()


def test_nested_differences_name_their_path() -> None:
    recorded = request(
        json={**TRANSFER, "userData": {"k": "v"}, "participants": [{"n": "1"}, {"n": "2"}]}
    )
    actual = request(
        json={
            "operationName": "InitiateTransfer",
            "destination": {"phoneNumber": "5002"},
            "participants": [{"n": "1"}, {"n": "3"}],
            "extra": True,
        }
    )
    assert compare(actual, recorded) == (
        Difference("body.destination.phoneNumber", "5001", "5002"),
        Difference("body.extra", "(missing)", True),
        Difference("body.participants[1].n", "2", "3"),
        Difference("body.userData", {"k": "v"}, "(missing)"),
    )


def test_lists_of_another_length_differ_as_a_whole() -> None:
    recorded, actual = request(json={"l": [1, 2]}), request(json={"l": [1, 2, 3]})
    assert compare(actual, recorded) == (Difference("body.l", [1, 2], [1, 2, 3]),)


def test_a_different_operation_name_is_named_first_and_once() -> None:
    recorded = request(json={"operationName": "Answer", "a": 1, "z": 1})
    actual = request(json={"operationName": "Hold", "a": 2, "z": 1})
    diffs = compare(actual, recorded)
    assert diffs == (
        Difference("operationName", "Answer", "Hold"),
        Difference("body.a", 1, 2),
    )
    assert "body.operationName" not in [d.where for d in diffs]


def test_a_missing_operation_name_is_named_too() -> None:
    diffs = compare(request(json={"a": 1}), request(json={"operationName": "Answer", "a": 1}))
    assert diffs == (Difference("operationName", "Answer", None),)


@pytest.mark.parametrize(
    ("recorded", "actual", "equal"),
    [
        (1, 1.0, True),
        (1.0, 1, True),
        (0, 0.0, True),
        ([1, 2.0], [1.0, 2], True),
        (1, 1.5, False),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (0.0, False, False),
        (True, True, True),
        ("1", 1, False),
        (None, 0, False),
        (None, None, True),
        ({}, [], False),
        ("", None, False),
    ],
)
def test_json_scalars(recorded: Any, actual: Any, equal: bool) -> None:
    result = compare(request(json={"v": actual}), request(json={"v": recorded}))
    assert (result == ()) is equal
    if not equal:
        assert result == (Difference("body.v", recorded, actual),)


def test_top_level_json_scalars_and_lists_compare_too() -> None:
    assert compare(request(json=[1, {"a": 2}]), request(json=[1.0, {"a": 2}])) == ()
    assert compare(request(json=[True]), request(json=[1])) == (Difference("body[0]", 1, True),)


# --- placeholders ---------------------------------------------------------------------------

PH = "<redacted:password:1>"


@pytest.mark.parametrize("value", ["s3cret", "", 42, None, {"deep": [1]}, [1, 2], True])
def test_a_placeholder_in_a_recorded_json_body_matches_any_value(value: Any) -> None:
    recorded = request(json={"user": "bob", "password": PH, "nested": {"token": PH}})
    actual = request(json={"user": "bob", "password": value, "nested": {"token": "t"}})
    assert compare(actual, recorded) == ()


def test_a_placeholder_does_not_excuse_a_missing_key_or_other_fields() -> None:
    recorded = request(json={"user": "bob", "password": PH})
    assert wheres(request(json={"user": "bob"}), recorded) == ["body.password"]
    assert wheres(request(json={"user": "eve", "password": "x"}), recorded) == ["body.user"]


def test_a_redacted_operation_name_is_not_reported_as_a_difference() -> None:
    recorded = request(json={"operationName": "<redacted:op:1>", "a": 1})
    actual = request(json={"operationName": "Answer", "a": 2})
    assert compare(actual, recorded) == (Difference("body.a", 1, 2),)


def test_a_placeholder_in_the_request_does_not_match_a_recorded_value() -> None:
    assert wheres(request(json={"password": PH}), request(json={"password": "x"})) == [
        "body.password"
    ]


def test_a_placeholder_is_a_whole_value_not_a_substring() -> None:
    recorded = request(json={"auth": "Bearer " + PH})
    assert wheres(request(json={"auth": "Bearer abc"}), recorded) == ["body.auth"]


def test_a_placeholder_in_the_recorded_query_matches_any_value_of_that_key() -> None:
    recorded = request(method="GET", query=[("user", "bob"), ("token", "<redacted:token:1>")])
    assert compare(request(method="GET", query=[("token", "t1"), ("user", "bob")]), recorded) == ()
    assert compare(request(method="GET", query=[("token", ""), ("user", "bob")]), recorded) == ()
    assert wheres(request(method="GET", query=[("tok", "t1"), ("user", "bob")]), recorded) == [
        "query"
    ]
    assert wheres(request(method="GET", query=[("user", "bob")]), recorded) == ["query"]


def test_a_query_placeholder_leaves_the_exact_value_to_its_pair() -> None:
    # The placeholder must not take the "1" that the exact pair needs.
    recorded = request(method="GET", query=[("a", "<redacted:a:1>"), ("a", "1")])
    assert compare(request(method="GET", query=[("a", "1"), ("a", "2")]), recorded) == ()
    assert compare(request(method="GET", query=[("a", "2"), ("a", "1")]), recorded) == ()
    assert wheres(request(method="GET", query=[("a", "2"), ("a", "3")]), recorded) == ["query"]


def test_a_whole_text_body_placeholder_matches_any_text() -> None:
    assert compare(request(text="anything"), request(text="<redacted:body:1>")) == ()


def test_a_redacted_form_body_matches_the_request_it_came_from() -> None:
    form = "username=bob&password=s3cret&remember=1"
    original = request(
        path="/api/v2/login",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        text=form,
    )
    recorded = redact.redact_request(original, redact.DEFAULT_RULES, redact.Placeholders())
    assert recorded.body is not None and "s3cret" not in recorded.body.value
    assert compare(original, recorded) == ()
    other_password = request(path="/api/v2/login", text="username=bob&password=x&remember=1")
    assert compare(other_password, recorded) == ()
    other_user = request(path="/api/v2/login", text="username=eve&password=s3cret&remember=1")
    assert wheres(other_user, recorded) == ["body"]
    fewer_fields = request(path="/api/v2/login", text="username=bob&password=s3cret")
    assert wheres(fewer_fields, recorded) == ["body"]


# --- query ----------------------------------------------------------------------------------


def test_the_query_is_a_multiset_in_any_order() -> None:
    recorded = request(method="GET", query=[("a", "1"), ("a", "2"), ("b", "x")])
    actual = request(method="GET", query=[("b", "x"), ("a", "2"), ("a", "1")])
    assert compare(actual, recorded) == ()


@pytest.mark.parametrize(
    "actual",
    [
        [("a", "1")],
        [("a", "1"), ("a", "1")],
        [("a", "1"), ("a", "2"), ("a", "2")],
        [("a", "1"), ("b", "2")],
        [],
    ],
)
def test_query_counts_and_values_matter(actual: list[tuple[str, str]]) -> None:
    recorded = request(method="GET", query=[("a", "1"), ("a", "2")])
    diffs = compare(request(method="GET", query=actual), recorded)
    assert diffs == (Difference("query", "a=1&a=2", "&".join(f"{k}={v}" for k, v in actual)),)


# --- text, base64 and empty bodies ----------------------------------------------------------


def test_text_bodies_compare_exactly() -> None:
    assert compare(request(text="a=1&b=2"), request(text="a=1&b=2")) == ()
    assert compare(request(text="a=1&b=3"), request(text="a=1&b=2")) == (
        Difference("body", "a=1&b=2", "a=1&b=3"),
    )


def test_base64_bodies_compare_exactly() -> None:
    one = base64.b64encode(b"\x00\x01\xff").decode()
    two = base64.b64encode(b"\x00\x02\xff").decode()
    assert compare(request(base64=one), request(base64=one)) == ()
    assert compare(request(base64=two), request(base64=one)) == (Difference("body", one, two),)


def test_a_text_body_does_not_match_a_base64_body_of_the_same_string() -> None:
    assert wheres(request(text="AAEC"), request(base64="AAEC")) == ["body"]


def test_empty_and_non_empty_bodies_differ() -> None:
    assert compare(request(), request()) == ()
    assert compare(request(json={}), request()) == (Difference("body", None, {}),)
    assert compare(request(), request(json={"operationName": "Answer"})) == (
        Difference("body", {"operationName": "Answer"}, None),
    )
    assert compare(request(text="x"), request()) == (Difference("body", None, "x"),)


# --- ranking and explanations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "distance"),
    [
        ({}, 0),
        ({"query": []}, 1),
        ({"json": {"operationName": "Answer", "x": 1}}, 1),
        ({"json": {"operationName": "Answer", "x": 1, "y": 2}}, 2),
        ({"json": {"operationName": "Hold"}}, 3),
        ({"path": CONSULT}, 3),
        ({"method": "PUT"}, 4),
        ({"method": "PUT", "path": CONSULT, "json": {"operationName": "Hold"}}, 10),
    ],
)
def test_distance_weighs_method_path_and_operation_most(
    changes: dict[str, Any], distance: int
) -> None:
    actual = request(json={"operationName": "Answer"}, query=[("q", "1")])
    fields: dict[str, Any] = {"json": {"operationName": "Answer"}, "query": [("q", "1")]}
    assert match(actual, exchange(**{**fields, **changes})).distance == distance


def test_closest_ranks_by_distance_and_keeps_recorded_order_on_ties() -> None:
    actual = request(json={"operationName": "Answer"}, query=[("q", "1")])
    wrong_method = exchange(id="m", method="PUT", json={"operationName": "Answer"})  # 4 + 1
    wrong_path = exchange(
        id="p", path=CONSULT, json={"operationName": "Answer"}, query=[("q", "1")]
    )
    wrong_op = exchange(id="o", json={"operationName": "Hold"}, query=[("q", "1")])
    wrong_query = exchange(id="q", json={"operationName": "Answer"}, query=[("q", "2")])
    candidates = [wrong_method, wrong_path, wrong_op, wrong_query]
    assert [m.exchange.id for m in closest(actual, candidates)] == ["q", "p", "o"]
    assert [m.exchange.id for m in closest(actual, candidates, limit=10)] == ["q", "p", "o", "m"]
    assert [m.exchange.id for m in closest(actual, [wrong_op, wrong_path])] == ["o", "p"]
    assert closest(actual, []) == []


def test_explain_names_each_candidate_and_what_differed() -> None:
    actual = request(json={"operationName": "Hold", "n": 2})
    recorded = exchange(
        id="x7", query=[("a", "1")], json={"operationName": "Answer", "n": 1, "s": "x" * 100}
    )
    assert explain([match(actual, recorded)]) == [
        {
            "id": "x7",
            "request": f"POST {CALL}?a=1 (Answer)",
            "differences": [
                # method, path, query, then the body with its operation first
                "query: recorded 'a=1', got ''",
                "operationName: recorded 'Answer', got 'Hold'",
                "body.n: recorded 1, got 2",
                "body.s: recorded '" + "x" * 58 + "…, got '(missing)'",
            ],
        }
    ]
    assert explain([]) == []
    # Every entry is plain JSON, ready for a no-match answer.
    orjson.dumps(explain(closest(actual, [recorded, exchange(id="x8")])))


def test_describe_request() -> None:
    assert describe_request(request(json={"operationName": "Answer"})) == f"POST {CALL} (Answer)"
    get = request(method="GET", path="/api/v2/me", query=[("fields", "*"), ("a", "b")])
    assert describe_request(get) == "GET /api/v2/me?fields=*&a=b"
    assert describe_request(request(json={"operationName": 5})) == f"POST {CALL}"


# --- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=15,
)


@given(value=json_values)
def test_any_json_body_matches_itself_and_its_round_trip(value: Any) -> None:
    assert compare(request(json=value), request(json=value)) == ()
    assert compare(request(json=orjson.loads(orjson.dumps(value))), request(json=value)) == ()


@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["1", "2", "3", ""])),
        max_size=6,
    ),
    redacted=st.lists(st.booleans(), min_size=6, max_size=6),
    data=st.data(),
)
def test_a_query_matches_its_redacted_recording_in_any_order(
    pairs: list[tuple[str, str]], redacted: list[bool], data: st.DataObject
) -> None:
    recorded = [
        (k, f"<redacted:{k}:1>" if r else v) for (k, v), r in zip(pairs, redacted, strict=False)
    ]
    actual = data.draw(st.permutations(pairs))
    assert compare(request(method="GET", query=actual), request(method="GET", query=recorded)) == ()


def test_a_difference_too_deep_for_json_is_still_described() -> None:
    deep: Any = []
    for _ in range(300):  # orjson.loads takes this; orjson.dumps refuses it
        deep = [deep]
    text = Difference("operationName", "Answer", deep).describe()
    assert text.startswith("operationName: recorded 'Answer', got [[[")
    assert len(text) < 200


# --- what the recorder redacts beyond JSON, forms and queries -------------------------------


def _recorded(original: Any) -> Any:
    return redact.redact_request(original, redact.DEFAULT_RULES, redact.Placeholders())


def test_a_redacted_jsessionid_path_parameter_matches_any_session() -> None:
    original = request(path=CALL + ";jsessionid=node0abc123", json={"operationName": "Answer"})
    recorded = _recorded(original)
    assert "node0abc123" not in recorded.path
    assert compare(original, recorded) == ()
    other_session = request(path=CALL + ";jsessionid=node0zzz", json={"operationName": "Answer"})
    assert compare(other_session, recorded) == ()
    assert wheres(
        request(path=CONSULT + ";jsessionid=x", json={"operationName": "Answer"}), recorded
    ) == ["path"]


@pytest.mark.parametrize("prefix", ["", "\ufeff"])
def test_json_sent_as_text_matches_its_redacted_recording(prefix: str) -> None:
    text = prefix + '{"operationName": "Login", "password": "s3cret"}'
    original = request(headers=[("Content-Type", "text/plain;charset=UTF-8")], text=text)
    recorded = _recorded(original)
    assert recorded.body is not None and "s3cret" not in str(recorded.body.value)
    assert compare(original, recorded) == ()
    other = text.replace("Login", "Logout")
    assert wheres(request(text=other), recorded) == ["operationName"]


def test_a_redacted_multipart_field_matches_any_value_of_it() -> None:
    form = (
        '--b\r\nContent-Disposition: form-data; name="user"\r\n\r\nbob\r\n'
        '--b\r\nContent-Disposition: form-data; name="password"\r\n\r\n{pw}\r\n--b--\r\n'
    )
    headers = [("Content-Type", "multipart/form-data; boundary=b")]
    original = request(headers=headers, text=form.format(pw="s3cret"))
    recorded = _recorded(original)
    assert recorded.body is not None and "s3cret" not in str(recorded.body.value)
    assert compare(original, recorded) == ()
    assert compare(request(headers=headers, text=form.format(pw="other")), recorded) == ()
    assert wheres(request(headers=headers, text=form.replace("bob", "eve")), recorded) == ["body"]
