"""Redaction: secrets become numbered placeholders before anything reaches the disk.

A placeholder reads ``<redacted:KIND:N>``: KIND says where the secret was (a header name, a
JSON key, ``cookie``), N numbers the distinct secrets of that kind in one recording, in the
order they were first seen. The number is never derived from the secret (a hash of Basic
credentials falls to a dictionary attack); the table that maps secrets to numbers lives only in
memory (:class:`Placeholders`).

What is redacted by default (GWS doc, ``shared/reference/gws.md``: "Authorization, Cookie,
Set-Cookie, X-CSRF-TOKEN are secrets in a recording"):

- the whole value of ``Authorization``, ``Proxy-Authorization`` and ``X-CSRF-TOKEN``;
- the value of every cookie in ``Cookie`` and ``Set-Cookie`` (the cookie's name and the
  ``Set-Cookie`` attributes are kept, so that a replay still sets a cookie of that name); the
  same secret seen in ``Set-Cookie`` and later in ``Cookie`` gets the same placeholder;
- JSON fields (and form / query fields) whose key looks like a password or a token.

``X-CSRF-HEADER`` is not a secret: its value is the NAME of the token header. It is kept.

Rules are values (:class:`Rules`); :func:`rules` extends the defaults with more header names
and JSON paths. A JSON path is dot-separated keys: a single key (``userData``) matches that key
at any depth; a dotted path (``data.call.userData``) is anchored at the root of the document;
``*`` matches any one key; lists are walked through transparently. A matched object or list has
every scalar leaf replaced (its keys stay); booleans and ``null`` carry no secret and stay.

Redaction is idempotent: a placeholder is never redacted again, so recording a replay of a
redacted cassette keeps its placeholders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from relay.cassette import Body, Pairs, Request, Response

#: A placeholder anywhere in a string (use ``fullmatch`` for "the whole value is one").
PLACEHOLDER_RE = re.compile(r"<redacted:([A-Za-z0-9_.\-]+):([0-9]+)>")


def is_placeholder(value: object) -> bool:
    """True when ``value`` is exactly one placeholder, i.e. a recorded field that matches any
    value on replay."""
    return isinstance(value, str) and PLACEHOLDER_RE.fullmatch(value) is not None


def contains_placeholder(value: object) -> bool:
    """True when the string ``value`` has a placeholder somewhere (``JSESSIONID=<redacted..>``)."""
    return isinstance(value, str) and PLACEHOLDER_RE.search(value) is not None


def matches_redacted(recorded: str, actual: str) -> bool:
    """True when ``actual`` equals ``recorded`` with each placeholder standing for any text."""
    parts = PLACEHOLDER_RE.split(recorded)
    # split() yields text, kind, number, text, kind, number, ..., text
    literal = parts[::3]
    pattern = ".*?".join(re.escape(p) for p in literal)
    return re.fullmatch(pattern, actual, flags=re.DOTALL) is not None


class Placeholders:
    """Numbers each distinct secret per kind. Holds the secrets in memory only: never persist."""

    def __init__(self) -> None:
        self._numbers: dict[tuple[str, str], int] = {}
        self._counts: dict[str, int] = {}

    def __call__(self, kind: str, secret: str) -> str:
        """The placeholder for ``secret`` of ``kind`` (the same secret always gets the same)."""
        if is_placeholder(secret):
            return secret
        kind = _kind(kind)
        key = (kind, secret)
        number = self._numbers.get(key)
        if number is None:
            number = self._counts.get(kind, 0) + 1
            self._counts[kind] = number
            self._numbers[key] = number
        return f"<redacted:{kind}:{number}>"


def _kind(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name.strip().lower()).strip("-")
    return cleaned or "secret"


# --- rules ----------------------------------------------------------------------------------

#: Headers whose whole value is a secret.
DEFAULT_HEADERS = frozenset({"authorization", "proxy-authorization", "x-csrf-token"})
#: Headers holding cookies: each cookie's value is a secret, its name is kept.
COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})
#: JSON / form keys that look like a password or a token.
PASSWORD_LIKE = re.compile(
    r"(?i)(pass(word|wd|phrase|code)|^pass$|pwd|secret|token|credential|api_?key|private_?key)"
)


@dataclass(frozen=True, slots=True)
class Rules:
    """What to redact. Build with :func:`rules`."""

    headers: frozenset[str] = DEFAULT_HEADERS
    cookie_headers: frozenset[str] = COOKIE_HEADERS
    key_pattern: re.Pattern[str] | None = PASSWORD_LIKE
    json_paths: tuple[tuple[str, ...], ...] = field(default_factory=tuple)


def parse_json_path(path: str) -> tuple[str, ...]:
    """``"data.call.userData"`` -> ``("data", "call", "userData")``; raises ValueError."""
    parts = tuple(path.split("."))
    if not path or any(not p for p in parts):
        raise ValueError(f"not a JSON path: {path!r} (expected keys separated by dots)")
    return parts


def rules(*, headers: Iterable[str] = (), json_paths: Iterable[str] = ()) -> Rules:
    """The default rules plus more secret headers and JSON paths; raises ValueError."""
    extra = frozenset(h.strip().lower() for h in headers)
    if any(not h or ":" in h for h in extra):
        raise ValueError("a header name must be non-empty and hold no ':'")
    return Rules(
        headers=DEFAULT_HEADERS | (extra - COOKIE_HEADERS),
        json_paths=tuple(parse_json_path(p) for p in json_paths),
    )


DEFAULT_RULES = Rules()


# --- headers --------------------------------------------------------------------------------


def redact_headers(headers: Pairs, r: Rules, ph: Placeholders) -> Pairs:
    """A copy of ``headers`` with secret values replaced."""
    out: Pairs = []
    for name, value in headers:
        lname = name.lower()
        if lname in r.cookie_headers:
            value = _redact_cookies(value, lname == "set-cookie", ph)
        elif lname in r.headers:
            value = ph(lname, value)
        out.append((name, value))
    return out


def _redact_cookies(value: str, set_cookie: bool, ph: Placeholders) -> str:
    # Set-Cookie: only the first pair is the cookie; the rest are attributes (RFC 6265 4.1.1).
    parts = value.split(";")
    secret_parts = parts[:1] if set_cookie else parts
    out = []
    for part in secret_parts:
        name, eq, secret = part.partition("=")
        if not eq:  # a bare token: treat the whole as a secret
            out.append(ph("cookie", part.strip()) if part.strip() else part)
            continue
        lead = secret[: len(secret) - len(secret.lstrip())]
        out.append(f"{name}={lead}{ph('cookie', secret.strip())}" if secret.strip() else part)
    return ";".join(out + parts[len(secret_parts) :])


# --- JSON -----------------------------------------------------------------------------------


def redact_json(value: Any, r: Rules, ph: Placeholders) -> Any:
    """A copy of the JSON ``value`` with password-like keys and the rules' paths redacted."""
    return _walk(value, r, ph, [p for p in r.json_paths if len(p) > 1], "")


def _walk(
    value: Any, r: Rules, ph: Placeholders, anchored: list[tuple[str, ...]], kind: str
) -> Any:
    # Copy on write: a body without secrets (nearly every one) comes back as the same object,
    # with no dict or list built on the way (the recorder runs this on every body it sees).
    if isinstance(value, list):
        items = [_walk(v, r, ph, anchored, kind) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if not isinstance(value, dict):
        return value
    changed: dict[str, Any] | None = None
    for key, child in value.items():
        if _key_is_secret(key, r) or (
            anchored and any(p[0] in (key, "*") and len(p) == 1 for p in anchored)
        ):
            new = _all_leaves(child, ph, key)
        elif isinstance(child, dict | list):
            rest = [p[1:] for p in anchored if p[0] in (key, "*") and len(p) > 1]
            new = _walk(child, r, ph, rest, key)
        else:
            continue
        if new is not child:
            if changed is None:
                changed = {}
            changed[key] = new
    if changed is None:
        return value
    return {k: changed.get(k, v) for k, v in value.items()}


@functools.lru_cache(maxsize=4096)
def _key_is_secret(key: str, r: Rules) -> bool:
    # Remembered: payloads repeat a small set of keys, and this runs for every key of every
    # body and notification the recorder sees (a regex search each time showed in profiles).
    if r.key_pattern is not None and r.key_pattern.search(key):
        return True
    return any(len(p) == 1 and p[0] == key for p in r.json_paths)


def _all_leaves(value: Any, ph: Placeholders, kind: str) -> Any:
    if isinstance(value, dict):
        return {k: _all_leaves(v, ph, kind) for k, v in value.items()}
    if isinstance(value, list):
        return [_all_leaves(v, ph, kind) for v in value]
    if value is None or isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else str(value)
    return ph(kind, text)


# --- bodies, requests, responses ------------------------------------------------------------


def redact_form(text: str, r: Rules, ph: Placeholders) -> str:
    """An ``a=1&b=2`` string with password-like (or rule-named) fields redacted."""
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        return text
    return urlencode(redact_pairs(pairs, r, ph))


def redact_pairs(pairs: Pairs, r: Rules, ph: Placeholders) -> Pairs:
    """Query or form pairs with password-like (or rule-named) fields redacted."""
    return [(k, ph(k, v) if _key_is_secret(k, r) else v) for k, v in pairs]


def redact_body(
    body: Body | None, r: Rules, ph: Placeholders, content_type: str = ""
) -> Body | None:
    """A copy of ``body`` with its secrets redacted (JSON always, text when it is a form)."""
    if body is None:
        return None
    if body.kind == "json":
        return Body("json", redact_json(body.value, r, ph))
    if body.kind == "text" and "x-www-form-urlencoded" in content_type.lower():
        return Body("text", redact_form(str(body.value), r, ph))
    return body


def redact_request(request: Request, r: Rules, ph: Placeholders) -> Request:
    """A copy of ``request`` with secrets in headers, query and body redacted."""
    ctype = request.header("content-type") or ""
    return replace(
        request,
        query=redact_pairs(request.query, r, ph),
        headers=redact_headers(request.headers, r, ph),
        body=redact_body(request.body, r, ph, ctype),
    )


def redact_response(response: Response, r: Rules, ph: Placeholders) -> Response:
    """A copy of ``response`` with secrets in headers and body redacted."""
    ctype = response.header("content-type") or ""
    return replace(
        response,
        headers=redact_headers(response.headers, r, ph),
        body=redact_body(response.body, r, ph, ctype),
    )


def redact_message(message: dict[str, Any], r: Rules, ph: Placeholders) -> dict[str, Any]:
    """A copy of a Bayeux message (a notification) with its secrets redacted."""
    result: dict[str, Any] = redact_json(message, r, ph)
    return result
