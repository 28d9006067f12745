"""pytest integration: the ``relay`` marker and the ``relay_replay`` fixture.

    @pytest.mark.relay("two-step-transfer.json", played=True)
    def test_answer(relay_replay):
        desktop = Desktop(base_url=relay_replay.url)
        ...

The fixture starts a ``relay.testing.ReplayServer`` for the marker's cassette (the marker may
sit on the test, its class or its module) and stops it after the test; then, with ``strict``
(the default), the test fails when a request matched nothing, and with ``played`` also when the
desktop did not play the whole cassette. Registered as a ``pytest11`` entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from relay.errors import RelayError

if TYPE_CHECKING:
    from relay.testing import ReplayServer

MARKER = "relay"
INI_DIR = "relay_cassette_dir"
#: The marker's options that are not ``ReplayServer``'s.
CHECKS = ("strict", "played")
SERVER_OPTIONS = (
    "speed",
    "timeout_ms",
    "keep_origin",
    "desktop",
    "subscribe_wait",
    "session_idle",
    "step",
    "loop",
    "assets_dir",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_DIR,
        "where @pytest.mark.relay looks for cassettes not beside the test file "
        "(relative to rootdir)",
        default="cassettes",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(cassette, **options): replay CASSETTE for the relay_replay fixture; options: "
        "speed (default 0), timeout_ms, keep_origin, desktop, subscribe_wait, step, loop, "
        "assets_dir, strict=True (fail on an unmatched request), played=False (fail unless "
        "the whole cassette was played)",
    )


def find_cassette(name: str, *, test_dir: Path, rootdir: Path, cassette_dir: str) -> Path:
    """Where a marker's cassette is: an absolute path as given; a relative one beside the test
    file, then under ``relay_cassette_dir``, then under rootdir. ``LookupError`` lists them."""
    given = Path(name)
    if given.is_absolute():
        places = [given]
    else:
        places = [test_dir / given, rootdir / cassette_dir / given, rootdir / given]
    seen: list[Path] = []
    for place in places:
        if place.is_file():
            return place
        if place not in seen:
            seen.append(place)
    where = "\n".join(f"  {p}" for p in seen)
    raise LookupError(f"relay: cassette {name!r} not found; looked at:\n{where}")


def _marker_args(marker: pytest.Mark) -> tuple[str, dict[str, Any]]:
    options = dict(marker.kwargs)
    args = list(marker.args)
    if "cassette" in options:
        args.insert(0, options.pop("cassette"))
    if len(args) != 1 or not isinstance(args[0], str | Path):
        pytest.fail(
            '@pytest.mark.relay takes one cassette path: @pytest.mark.relay("NAME.json", ...)',
            pytrace=False,
        )
    unknown = sorted(set(options) - set(SERVER_OPTIONS) - set(CHECKS))
    if unknown:
        known = ", ".join((*SERVER_OPTIONS, *CHECKS))
        pytest.fail(
            f"@pytest.mark.relay: unknown option {', '.join(unknown)} (known: {known})",
            pytrace=False,
        )
    return str(args[0]), options


@pytest.fixture
def relay_replay(request: pytest.FixtureRequest) -> Iterator[ReplayServer]:
    """A started ``ReplayServer`` for the test's ``@pytest.mark.relay`` cassette."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        pytest.fail(
            'relay_replay needs a cassette: add @pytest.mark.relay("NAME.json") to the test, '
            "its class or its module",
            pytrace=False,
        )
    name, options = _marker_args(marker)
    strict = bool(options.pop("strict", True))
    played = bool(options.pop("played", False))
    config = request.config
    # Each failure is raised outside its except block: one message, no exception chain.
    problem = ""
    try:
        path = find_cassette(
            name,
            test_dir=request.path.parent,
            rootdir=config.rootpath,
            cassette_dir=str(config.getini(INI_DIR) or "cassettes"),
        )
    except LookupError as e:
        problem = str(e)
    if problem:
        pytest.fail(problem, pytrace=False)
    # Imported here: every pytest run loads this plugin, only tests that use relay need aiohttp.
    from relay.testing import ReplayMismatch, ReplayServer

    server = ReplayServer(path, **options)
    try:
        server.start()
    except RelayError as e:
        problem = f"relay: {e}"
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()
    if strict or played:
        report = ""
        try:
            server.check(played=played, unmatched=strict)
        except ReplayMismatch as e:
            report = str(e)
        if report:
            pytest.fail(report, pytrace=False)
