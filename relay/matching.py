"""Matching an incoming request against recorded ones, with the reasons when it fails.

A request matches a recorded one when the method, the path, the query (as a multiset of pairs)
and the body are equal; JSON bodies are compared by meaning (key order and white space do not
matter). A value that was redacted in the recording (``<redacted:KIND:N>``) matches any value.
Headers are not compared: desktops and browsers vary them freely.

Results are values that carry the reason (after respx): a :class:`Match` lists what differed,
and :func:`closest` ranks recorded requests by how little differs, for no-match reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from relay.cassette import Body, Exchange, Pairs, Request
from relay.redact import contains_placeholder, is_placeholder, matches_redacted

#: How much each kind of difference weighs when ranking the closest recorded requests.
_WEIGHT = {"method": 4, "path": 3, "operationName": 3, "query": 1, "body": 1}


@dataclass(frozen=True, slots=True)
class Difference:
    """One way an incoming request differs from a recorded one."""

    where: str  # "method", "path", "query", "body", "body.destination.phoneNumber", ...
    recorded: Any
    actual: Any

    def describe(self) -> str:
        return f"{self.where}: recorded {_short(self.recorded)}, got {_short(self.actual)}"


@dataclass(frozen=True, slots=True)
class Match:
    """The comparison of an incoming request with one recorded exchange."""

    exchange: Exchange
    differences: tuple[Difference, ...]

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def distance(self) -> int:
        return sum(_WEIGHT.get(d.where.split(".")[0], 1) for d in self.differences)


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (it reads deeper)
        text = repr(value)[:limit]
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare(actual: Request, recorded: Request) -> tuple[Difference, ...]:
    """Every difference between an incoming request and a recorded one (empty: a match)."""
    diffs: list[Difference] = []
    if actual.method.upper() != recorded.method.upper():
        diffs.append(Difference("method", recorded.method, actual.method))
    if actual.path != recorded.path and not (
        # ;jsessionid=<redacted..> (Jetty's URL rewriting): the recorded value was a secret
        contains_placeholder(recorded.path) and matches_redacted(recorded.path, actual.path)
    ):
        diffs.append(Difference("path", recorded.path, actual.path))
    if not query_matches(actual.query, recorded.query):
        diffs.append(Difference("query", _query_str(recorded.query), _query_str(actual.query)))
    diffs.extend(_body_differences(actual.body, recorded.body))
    return tuple(diffs)


def query_matches(actual: Pairs, recorded: Pairs) -> bool:
    """Equal as multisets of pairs; a recorded placeholder value matches any value."""
    if len(actual) != len(recorded):
        return False
    remaining = list(actual)
    # Exact values first: a placeholder then takes any value of its key that is left over
    # (the other way round, it could take the value an exact pair needs).
    for key, value in sorted(recorded, key=lambda pair: is_placeholder(pair[1])):
        for i, (k, v) in enumerate(remaining):
            if k == key and (v == value or is_placeholder(value)):
                del remaining[i]
                break
        else:
            return False
    return True


def _query_str(pairs: Pairs) -> str:
    return "&".join(f"{k}={v}" for k, v in pairs)


def _body_differences(actual: Body | None, recorded: Body | None) -> list[Difference]:
    if recorded is None or actual is None:
        if recorded is None and actual is None:
            return []
        return [Difference("body", _body_value(recorded), _body_value(actual))]
    if recorded.kind == "json" and actual.kind == "text":
        # JSON sent as text/plain (fetch's default) or with a BOM: the recorder stores it as
        # JSON once it redacted something in it, so read it as JSON here too.
        actual = _as_json(actual)
    if recorded.kind == "json" and actual.kind == "json":
        out: list[Difference] = []
        _json_differences(recorded.value, actual.value, "body", out)
        if out and isinstance(recorded.value, dict) and isinstance(actual.value, dict):
            # The operation is what a person looks for first: name it on its own.
            ra, aa = recorded.value.get("operationName"), actual.value.get("operationName")
            if ra != aa and not is_placeholder(ra):
                out = [d for d in out if d.where != "body.operationName"]
                out.insert(0, Difference("operationName", ra, aa))
        return out
    if recorded.kind == actual.kind and recorded.value == actual.value:
        return []
    if recorded.kind == "text" and is_placeholder(recorded.value):
        return []
    if recorded.kind == "text" and actual.kind == "text":
        if _form_matches(actual, recorded):
            return []
        text = str(recorded.value)
        if contains_placeholder(text) and matches_redacted(text, str(actual.value)):
            return []  # a redacted multipart field, a token inside a text body
    return [Difference("body", _body_value(recorded), _body_value(actual))]


def _as_json(body: Body) -> Body:
    """``body`` read as JSON when its text is JSON (after a byte-order mark), else as it is."""
    text = str(body.value).removeprefix("\ufeff")
    if not text.lstrip().startswith(("{", "[")):
        return body
    try:
        return Body("json", orjson.loads(text))
    except orjson.JSONDecodeError:
        return body


def _form_matches(actual: Body, recorded: Body) -> bool:
    """A redacted form body (``a=1&password=<redacted..>``) matched field by field.

    ``redact.redact_form`` percent-encodes its placeholders, so they are only seen once the
    form is parsed.
    """
    fields = parse_qsl(str(recorded.value), keep_blank_values=True)
    if not any(is_placeholder(v) for _, v in fields):
        return False
    return query_matches(parse_qsl(str(actual.value), keep_blank_values=True), fields)


def _body_value(body: Body | None) -> Any:
    return None if body is None else body.value


def _json_differences(recorded: Any, actual: Any, where: str, out: list[Difference]) -> None:
    """JSON equality by meaning; a recorded placeholder string matches anything."""
    if isinstance(recorded, str) and is_placeholder(recorded):
        return
    if isinstance(recorded, dict) and isinstance(actual, dict):
        for key in sorted(recorded.keys() | actual.keys()):
            sub = f"{where}.{key}"
            if key not in actual:
                out.append(Difference(sub, recorded[key], "(missing)"))
            elif key not in recorded:
                out.append(Difference(sub, "(missing)", actual[key]))
            else:
                _json_differences(recorded[key], actual[key], sub, out)
        return
    if isinstance(recorded, list) and isinstance(actual, list) and len(recorded) == len(actual):
        for i, (r, a) in enumerate(zip(recorded, actual, strict=True)):
            _json_differences(r, a, f"{where}[{i}]", out)
        return
    # bool is an int in Python: keep True distinct from 1.
    if (
        type(recorded) is not type(actual)
        and not (
            isinstance(recorded, int | float)
            and isinstance(actual, int | float)
            and not isinstance(recorded, bool)
            and not isinstance(actual, bool)
        )
    ) or recorded != actual:
        out.append(Difference(where, recorded, actual))


def match(actual: Request, exchange: Exchange) -> Match:
    return Match(exchange, compare(actual, exchange.request))


def closest(actual: Request, candidates: Iterable[Exchange], *, limit: int = 3) -> list[Match]:
    """The recorded exchanges nearest to ``actual``, nearest first (ties: recorded order)."""
    matches = [match(actual, e) for e in candidates]
    matches.sort(key=lambda m: m.distance)
    return matches[:limit]


def describe_request(request: Request) -> str:
    """``POST /api/v2/me/calls/X (Answer)``: how the console and reports name a request."""
    query = f"?{_query_str(request.query)}" if request.query else ""
    op = request.operation_name
    return f"{request.method} {request.path}{query}" + (f" ({op})" if op else "")


def explain(matches: Sequence[Match]) -> list[dict[str, Any]]:
    """The closest matches as JSON for a no-match answer."""
    return [
        {
            "id": m.exchange.id,
            "request": describe_request(m.exchange.request),
            "differences": [d.describe() for d in m.differences],
        }
        for m in matches
    ]
