"""Redaction: secrets become numbered placeholders before anything reaches the disk.

A placeholder reads ``<redacted:KIND:N>``: KIND says where the secret was (a header name, a
JSON key, ``cookie``), N numbers the distinct secrets of that kind in one recording, in the
order they were first seen. The number is never derived from the secret (a hash of Basic
credentials falls to a dictionary attack); the table that maps secrets to numbers lives only in
memory (:class:`Placeholders`).

What is redacted by default (GWS doc, ``shared/reference/gws.md``: "Authorization, Cookie,
Set-Cookie, X-CSRF-TOKEN are secrets in a recording"):

- the whole value of ``Authorization``, ``Proxy-Authorization`` and ``X-CSRF-TOKEN``, of every
  header whose name looks like a credential (``token``, ``auth``, ``api-key``/``apikey``,
  ``session``, ``secret``, ``password`` in it: ``X-Auth-Token``, ``X-XSRF-TOKEN``; not
  ``X-CSRF-HEADER``, ``WWW-Authenticate`` and ``Proxy-Authenticate``, which carry none), and of
  every header named by an ``X-CSRF-HEADER`` seen earlier in the recording or in the same
  message (GWS may name its CSRF header anything; both directions);
- the value of every cookie in ``Cookie`` and ``Set-Cookie`` (the cookie's name and the
  ``Set-Cookie`` attributes are kept, so that a replay still sets a cookie of that name); the
  same secret seen in ``Set-Cookie`` and later in ``Cookie`` gets the same placeholder;
- JSON fields (and form / query / multipart fields) whose key looks like a password, a token
  or a session: ``PASSWORD_LIKE``, plus ``auth`` as a word of the key, ``authorization``,
  ``authentication``, ``cookie``, ``jsessionid``, ``sessionid``/``session_id``. GWS's own
  ``sessionId`` (camel case, an interaction's session, which ``relay.canon`` treats as an
  identifier) is kept: replay and diff need it, and it grants no access by itself;
- JSON sent as ``text/plain`` (fetch's default), or with a UTF-8 byte order mark: parsed and
  redacted like JSON (stored as JSON once a secret was replaced; unchanged bytes otherwise);
- password-, token- and OAuth-``code``-like query and fragment parameters inside URL-valued
  headers (``Location``, ``Referer``, ``Content-Location``): ``code`` only there, where it is an
  OAuth authorization code (``statusCode``-like JSON keys must stay);
- ``;jsessionid=`` path parameters (Jetty's URL rewriting) in recorded paths and URL headers.

``X-CSRF-HEADER`` is not a secret: its value is the NAME of the token header. It is kept.

Rules are values (:class:`Rules`); :func:`rules` extends the defaults with more header names
and JSON paths. A JSON path is dot-separated keys: a single key (``userData``) matches that key
at any depth; a dotted path (``data.call.userData``) is anchored at the root of the document;
``*`` matches any one key; lists are walked through transparently. A matched object or list has
every scalar leaf replaced (its keys stay); booleans and ``null`` carry no secret and stay.

Redaction is idempotent: a placeholder is never redacted again, so recording a replay of a
redacted cassette keeps its placeholders, and the numbers they carry are not given to new
secrets of the same kind (a new secret seen BEFORE a replayed placeholder of its number can
still share it: numbers are handed out in the order secrets are seen).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import orjson

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
        self._taken: dict[str, set[int]] = {}  # numbers in placeholders that passed through
        #: Lower-cased header names announced by ``X-CSRF-HEADER`` in this recording.
        self.csrf_headers: set[str] = set()

    def __call__(self, kind: str, secret: str) -> str:
        """The placeholder for ``secret`` of ``kind`` (the same secret always gets the same)."""
        m = PLACEHOLDER_RE.fullmatch(secret)
        if m is not None:  # already redacted (a replay being recorded): keep, and its number
            self._taken.setdefault(m.group(1), set()).add(int(m.group(2)))
            return secret
        kind = _kind(kind)
        key = (kind, secret)
        number = self._numbers.get(key)
        if number is None:
            number = self._counts.get(kind, 0) + 1
            taken = self._taken.get(kind, ())
            while number in taken:
                number += 1
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
#: JSON / form keys that look like a password, a token or a session. ``auth`` counts as a word
#: of the key (``auth``, ``x_auth``, ``basicAuth``; not ``author``); GWS's ``sessionId`` (camel
#: case, exactly) is an interaction's identifier and stays (see the module docstring).
PASSWORD_LIKE = re.compile(
    r"(?i:pass(word|wd|phrase|code)|^pass$|pwd|secret|token|credential|api_?key|private_?key"
    r"|authori[sz]ation|authentication|cookie)"
    r"|(?:^|[^A-Za-z]|(?<=[a-z])(?=A))(?:auth|Auth|AUTH)(?![a-z])"
    r"|^(?!sessionId$).*?(?i:j?session[_-]?id)"
)
#: Header names that look like credentials (whole value secret), and the exceptions.
SECRET_HEADER_LIKE = re.compile(r"(?i)token|auth|api-?key|session|secret|passw")
NOT_SECRET_HEADERS = frozenset({"x-csrf-header", "www-authenticate", "proxy-authenticate"})
#: Headers whose value is a URL: their password- and token-like parameters are redacted.
URL_HEADERS = frozenset({"location", "referer", "content-location"})
#: In a URL (a redirect's ``Location``), ``code`` is an OAuth authorization code.
_URL_ONLY_KEYS = frozenset({"code"})
_JSESSIONID = re.compile(r"(?i)(;jsessionid=)([^;/?#]*)")
_BOM = "\ufeff"


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
    """A copy of ``headers`` with secret values replaced. Remembers (in ``ph``) the header names
    an ``X-CSRF-HEADER`` announces, for this message and every later one."""
    for name, value in headers:
        if name.lower() == "x-csrf-header" and value.strip():
            ph.csrf_headers.add(value.strip().lower())
    out: Pairs = []
    for name, value in headers:
        lname = name.lower()
        if lname in r.cookie_headers:
            value = _redact_cookies(value, lname == "set-cookie", ph)
        elif lname in r.headers or lname in ph.csrf_headers or _header_is_secret(lname):
            value = ph(lname, value)
        elif lname in URL_HEADERS:
            value = redact_url(value, r, ph)
        out.append((name, value))
    return out


@functools.lru_cache(maxsize=1024)
def _header_is_secret(lname: str) -> bool:
    return lname not in NOT_SECRET_HEADERS and SECRET_HEADER_LIKE.search(lname) is not None


def redact_path(path: str, ph: Placeholders) -> str:
    """``path`` with the value of each ``;jsessionid=`` path parameter redacted."""
    if ";" not in path:
        return path
    return _JSESSIONID.sub(lambda m: m.group(1) + ph("jsessionid", m.group(2)), path)


def redact_url(url: str, r: Rules, ph: Placeholders) -> str:
    """A URL with its ``;jsessionid=`` and its secret query and fragment parameters (the key
    rule, and ``code``) redacted; the rest of the text is kept as it was."""
    base, hash_, fragment = url.partition("#")
    base, question, query = base.partition("?")
    out = redact_path(base, ph)
    if question:
        out += "?" + _redact_params(query, r, ph)
    if hash_:
        out += "#" + (_redact_params(fragment, r, ph) if "=" in fragment else fragment)
    return out


def _redact_params(text: str, r: Rules, ph: Placeholders) -> str:
    parts = []
    for part in text.split("&"):
        key, eq, value = part.partition("=")
        name = unquote(key.replace("+", " "))
        if eq and value and (name.lower() in _URL_ONLY_KEYS or _key_is_secret(name, r)):
            part = f"{key}={ph(name, unquote(value.replace('+', ' ')))}"
        parts.append(part)
    return "&".join(parts)


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
    """A copy of ``body`` with its secrets redacted: JSON always (also when it came as text:
    ``text/plain``, a byte order mark), a form, the fields of a ``multipart/form-data``. A body
    with nothing secret comes back as it was."""
    if body is None:
        return None
    ctype = content_type.lower()
    if body.kind == "json":
        return Body("json", redact_json(body.value, r, ph))
    if body.kind == "text" and "x-www-form-urlencoded" in ctype:
        return Body("text", redact_form(str(body.value), r, ph))
    if "multipart/form-data" in ctype:
        return _redact_multipart(body, content_type, r, ph)
    if body.kind == "text":
        text = str(body.value).removeprefix(_BOM)
        if text.lstrip()[:1] in ("{", "["):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                return body
            redacted = redact_json(value, r, ph)
            if redacted is not value:
                return Body("json", redacted)
    return body


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PART_NAME = re.compile(rb'(?im)^content-disposition:[^\r\n]*?\bname="([^"]*)"')


def _redact_multipart(body: Body, ctype: str, r: Rules, ph: Placeholders) -> Body:
    """Each part whose ``name=`` is secret by the key rule gets a placeholder for content."""
    m = _BOUNDARY.search(ctype)
    if m is None or body.kind not in ("text", "base64"):
        return body
    data = body.to_bytes()
    delimiter = b"--" + m.group(1).encode("latin-1")
    parts = data.split(delimiter)
    changed = False
    for i, part in enumerate(parts):
        head, sep, content = part.partition(b"\r\n\r\n")
        named = _PART_NAME.search(head)
        if not sep or named is None:
            continue
        name = named.group(1).decode("utf-8", "replace")
        if not _key_is_secret(name, r):
            continue
        end = b"\r\n" if content.endswith(b"\r\n") else b""
        secret = content[: len(content) - len(end)].decode("utf-8", "backslashreplace")
        parts[i] = head + sep + ph(name, secret).encode() + end
        changed = True
    if not changed:
        return body
    new = delimiter.join(parts)
    try:
        return Body("text", new.decode("utf-8"))
    except UnicodeDecodeError:
        return Body("base64", base64.b64encode(new).decode("ascii"))


def redact_asset(content: bytes, content_type: str, r: Rules, ph: Placeholders) -> bytes:
    """An asset's bytes with its secrets redacted when it is JSON (``config.json`` holding an
    ``apiKey``); the very same bytes when nothing was secret or it is not JSON."""
    body = Body.from_bytes(content, content_type)
    if body is None or body.kind == "base64":
        return content
    redacted = redact_body(body, r, ph, content_type)
    if redacted is body or redacted is None or redacted == body:
        return content
    return redacted.to_bytes()


def redact_request(request: Request, r: Rules, ph: Placeholders) -> Request:
    """A copy of ``request`` with secrets in headers, query and body redacted."""
    ctype = request.header("content-type") or ""
    return replace(
        request,
        path=redact_path(request.path, ph),
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
