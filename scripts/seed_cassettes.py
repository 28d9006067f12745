"""Build the seed cassettes from the GWS API v2 reference page InitiateTransfer.

The page (``shared/reference/gws-api-v2-InitiateTransfer.txt`` beside the checkout) is a PDF
turned into text: JSON strings are broken across lines (``deviceUri``, ``parentCallUri``; the
true values hold no whitespace) and the page footer (the page title, then ``Web Services API
Reference 6``) lands in the middle of a JSON block. This script parses the page, it does not
copy it by hand:

1. drop the footer lines (the page title followed by ``Web Services API Reference N``);
2. walk the lines: ``Sample N`` starts a sample, ``POST api/v2/...`` is a request whose body is
   the next JSON block, ``HTTP response`` announces the answer's JSON block, any other JSON block
   is a CometD notification;
3. read each JSON block with a small scanner that knows when it is inside a string: a line that
   ends inside a string is continued by the next non-blank line, joined without whitespace;
4. turn each sample into a cassette (one desktop, "agent") and write it with relay.cassette.save.

Times: the page gives no clock, but each call's ``duration`` (seconds since the original call
began) gives the pace. A request happens at the duration of the first later notification about
the original call (the call of the sample's first event); the first event is at 0; a notification
that follows a request is caused by it and arrives 100 ms after it; the answer comes 50 ms after
the request. Output is deterministic: same page, same bytes.

Usage: ``python scripts/seed_cassettes.py [--seed PATH] [--out cassettes]``
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import orjson

import relay
from relay import cassette as cm
from relay.errors import RelayError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEED = REPO.parent / "shared" / "reference" / "gws-api-v2-InitiateTransfer.txt"
SEED_NAME = "gws-api-v2-InitiateTransfer.txt"

#: CometD's default advice (the page does not say what the server advertised).
ADVICE: dict[str, Any] = {"interval": 0, "reconnect": "retry", "timeout": 30000}
CAUSED_AFTER_MS = 100
ANSWER_AFTER_MS = 50
JSON_HEADERS: cm.Pairs = [("Content-Type", "application/json")]
#: What GWS answers an accepted operation (the page shows it once, for Sample 1).
ACCEPTED: dict[str, Any] = {"statusCode": 0}

_FOOTER = re.compile(r"^Web Services API Reference \d+$")
_SAMPLE = re.compile(r"^Sample (\d+)$")
_REQUEST = re.compile(r"^(GET|POST|PUT|DELETE|PATCH) +/?(api/\S+)$")
_RESPONSE = re.compile(r"^HTTP response$")


class SeedError(RelayError):
    """The page does not read as expected; the message names the line."""


# --- the page -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeedRequest:
    line: int
    method: str
    path: str
    body: Any


@dataclass(frozen=True, slots=True)
class SeedResponse:
    line: int
    body: Any


@dataclass(frozen=True, slots=True)
class SeedNotification:
    line: int
    message: dict[str, Any]


SeedItem = SeedRequest | SeedResponse | SeedNotification


@dataclass(slots=True)
class Sample:
    number: int
    items: list[SeedItem] = field(default_factory=list)


def strip_footers(lines: list[str]) -> list[str]:
    """Blank out the page footers: the page title line followed by ``Web Services API Reference N``.

    Lines are blanked, not removed, so that line numbers in messages still match the page.
    """
    out = list(lines)
    title = next((s.strip() for s in lines if s.strip()), "")
    for i, line in enumerate(lines):
        if not _FOOTER.match(line.strip()):
            continue
        out[i] = ""
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and lines[j].strip() == title:
            out[j] = ""
    return out


def read_json_block(lines: list[str], start: int) -> tuple[Any, int]:
    """Parse the JSON value starting at ``lines[start]``; returns it and the next line's index.

    A line that ends inside a string is continued by the next non-blank line, with the
    whitespace around the break removed (the PDF broke the string, the value has none).
    """
    text: list[str] = []
    depth = 0
    in_string = escaped = False
    i = start
    while i < len(lines):
        raw = lines[i]
        i += 1
        if not raw.strip():
            continue
        piece = raw.strip() if in_string else raw.rstrip()
        if in_string and text:
            text[-1] = text[-1].rstrip()
        for ch in piece:
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
        text.append(piece)
        if not in_string:
            text.append("\n")
        if depth <= 0 and not in_string:
            try:
                return orjson.loads("".join(text)), i
            except orjson.JSONDecodeError as e:
                raise SeedError(f"line {start + 1}: JSON block does not parse ({e})") from e
    raise SeedError(f"line {start + 1}: JSON block never ends")


def parse_seed(text: str) -> list[Sample]:
    """The samples of the page, each a list of requests, responses and notifications in order."""
    lines = strip_footers(text.splitlines())
    samples: list[Sample] = []
    pending: tuple[str, int, str, str] | None = None  # what the next JSON block is
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if m := _SAMPLE.match(stripped):
            samples.append(Sample(int(m.group(1))))
            pending = None
        elif m := _REQUEST.match(stripped):
            pending = ("request", i + 1, m.group(1), "/" + m.group(2))
        elif _RESPONSE.match(stripped):
            pending = ("response", i + 1, "", "")
        elif stripped.startswith("{"):
            if not samples:
                raise SeedError(f"line {i + 1}: JSON before the first 'Sample N' heading")
            value, next_i = read_json_block(lines, i)
            samples[-1].items.append(_item(value, i + 1, pending))
            pending = None
            i = next_i
            continue
        i += 1
    if not samples:
        raise SeedError("no 'Sample N' heading found: is this the InitiateTransfer page?")
    return samples


def _item(value: Any, line: int, pending: tuple[str, int, str, str] | None) -> SeedItem:
    if pending is not None and pending[0] == "request":
        return SeedRequest(line=pending[1], method=pending[2], path=pending[3], body=value)
    if pending is not None:
        return SeedResponse(line=line, body=value)
    if not isinstance(value, dict) or set(value) != {"channel", "data"}:
        raise SeedError(f"line {line}: a JSON block that is no request, answer or notification")
    return SeedNotification(line=line, message={"channel": value["channel"], "data": value["data"]})


# --- the cassettes --------------------------------------------------------------------------


def _call(item: SeedNotification) -> dict[str, Any]:
    data = item.message["data"]
    call = data.get("call") if isinstance(data, dict) else None
    if not isinstance(call, dict):
        raise SeedError(f"line {item.line}: the notification has no call")
    return call


def _duration_s(item: SeedNotification) -> int:
    value = _call(item).get("duration")
    if isinstance(value, str) and value.isdigit():  # GWS sends it as a string of seconds
        return int(value)
    raise SeedError(f"line {item.line}: call duration {value!r} is not a number of seconds")


def _clocks(items: list[SeedItem]) -> list[int | None]:
    """Each request's and leading notification's time in seconds on the original call's clock."""
    events = [it for it in items if not isinstance(it, SeedResponse)]
    first = events[0]
    original = first.path.rsplit("/", 1)[-1] if isinstance(first, SeedRequest) else None
    if isinstance(first, SeedNotification):
        original = _call(first).get("id")
    clocks: list[int | None] = []
    seen_request = False
    for k, it in enumerate(events):
        if isinstance(it, SeedRequest):
            seen_request = True
            later = (
                n
                for n in events[k + 1 :]
                if isinstance(n, SeedNotification) and _call(n).get("id") == original
            )
            n = next(later, None)
            if n is None:
                raise SeedError(f"line {it.line}: no later notification about call {original}")
            clocks.append(_duration_s(n))
        elif not seen_request:
            clocks.append(_duration_s(it))
        else:
            clocks.append(None)  # caused: timed from its request
    return clocks


def build_cassette(sample: Sample, *, title: str, notes: str) -> cm.Cassette:
    """One sample as a cassette with one desktop, "agent"."""
    events_in = [it for it in sample.items if not isinstance(it, SeedResponse)]
    if not events_in:
        raise SeedError(f"Sample {sample.number} has no request and no notification")
    answers = _answers(sample.items)
    clocks = _clocks(sample.items)
    origin = next(c for c in clocks if c is not None)
    events: list[cm.Event] = []
    cause: cm.Exchange | None = None
    n_x = n_n = 0
    for it, clock in zip(events_in, clocks, strict=True):
        if isinstance(it, SeedRequest):
            n_x += 1
            at = (int(clock or 0) - origin) * 1000
            cause = cm.Exchange(
                id=f"x{n_x}",
                at_ms=at,
                request=cm.Request(
                    method=it.method,
                    path=it.path,
                    headers=list(JSON_HEADERS),
                    body=cm.Body.json(it.body),
                ),
                response=cm.Response(
                    status=200,
                    reason="OK",
                    headers=list(JSON_HEADERS),
                    body=cm.Body.json(answers.get(it.line, ACCEPTED)),
                ),
                response_ms=at + ANSWER_AFTER_MS,
            )
            events.append(cause)
        elif isinstance(it, SeedNotification):
            n_n += 1
            at = (int(clock) - origin) * 1000 if clock is not None else 0
            if cause is not None:
                at = cause.at_ms + CAUSED_AFTER_MS
            events.append(
                cm.Notification(
                    id=f"n{n_n}",
                    at_ms=at,
                    channel=str(it.message["channel"]),
                    message=it.message,
                    cause=cause.id if cause is not None else None,
                )
            )
    meta = cm.Meta(
        title=title,
        recorded_at="",
        upstream=_upstream(events_in),
        relay_version=relay.__version__,
        notes=notes,
    )
    desktop = cm.Desktop(name="agent", events=events, bayeux=cm.BayeuxParams(advice=dict(ADVICE)))
    built = cm.Cassette(meta=meta, desktops=[desktop])
    # Validate as any reader would: ids, time order, causes.
    cm.loads(cm.dumps(built))
    return built


def _answers(items: list[SeedItem]) -> dict[int, Any]:
    """The answer the page shows for a request, keyed by the request's line."""
    out: dict[int, Any] = {}
    last: SeedRequest | None = None
    for it in items:
        if isinstance(it, SeedRequest):
            last = it
        elif isinstance(it, SeedResponse) and last is not None:
            out[last.line] = it.body
    return out


def _upstream(items: Sequence[SeedItem]) -> str:
    """The origin of the calls' URIs: where the samples were recorded."""
    for it in items:
        if isinstance(it, SeedNotification):
            uri = _call(it).get("uri")
            if isinstance(uri, str):
                parts = urlsplit(uri)
                return f"{parts.scheme}://{parts.netloc}"
    return ""


class _UserError(click.ClickException):
    """A bad seed page or output directory: one line, exit status 2 (like relay's verbs)."""

    exit_code = 2


#: file name -> (sample number, title)
CASSETTES: dict[str, tuple[int, str]] = {
    "initiate-transfer.json": (
        1,
        "InitiateTransfer: original call held, consult call dialing (GWS API v2, Sample 1)",
    ),
    "two-step-transfer.json": (
        2,
        "Two-step transfer: Ringing, Answer, InitiateTransfer, CompleteTransfer (GWS API v2, "
        "Sample 2)",
    ),
}


def build_all(text: str) -> dict[str, cm.Cassette]:
    """Every seed cassette, by file name."""
    samples = {s.number: s for s in parse_seed(text)}
    out: dict[str, cm.Cassette] = {}
    for name, (number, title) in CASSETTES.items():
        if number not in samples:
            raise SeedError(f"the page has no Sample {number}")
        notes = (
            f"Built by scripts/seed_cassettes.py from Sample {number} of the GWS API v2 "
            f"reference page InitiateTransfer ({SEED_NAME}). Notifications are the page's JSON; "
            "times follow the calls' duration fields (caused notifications 100 ms after their "
            'request, answers after 50 ms); REST answers are {"statusCode":0}; the Bayeux '
            "advice is CometD's default (the page does not say)."
        )
        out[name] = build_cassette(samples[number], title=title, notes=notes)
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--seed",
    "seed",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SEED,
    show_default=True,
    help="The InitiateTransfer reference page as text.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO / "cassettes",
    show_default=True,
    help="Directory to write the cassettes into.",
)
def main(seed: Path, out: Path) -> None:
    """Write the seed cassettes built from the InitiateTransfer reference page."""
    try:
        text = seed.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _UserError(f"{seed}: cannot read the seed page ({e})") from e
    try:
        for name, cassette in build_all(text).items():
            cm.save(cassette, out / name)
            click.echo(f"wrote {out / name}")
    except RelayError as e:
        raise _UserError(f"{seed}: {e}") from e


if __name__ == "__main__":
    main()
