"""pytest integration: the ``relay`` marker and the ``relay_replay`` fixture.

    @pytest.mark.relay("two-step-transfer.json", played=True)
    def test_answer(relay_replay):
        desktop = Desktop(base_url=relay_replay.url)
        ...

The fixture starts a ``relay.testing.ReplayServer`` for the marker's cassette (the marker may
sit on the test, its class or its module) and stops it after the test; then, with ``strict``
(the default), the test fails when a request matched nothing, and with ``played`` also when the
desktop did not play the whole cassette. Registered as a ``pytest11`` entry point.

Record modes, like pytest-recording's ``--record-mode``: ``--relay-record-mode=none`` (the
default) only replays; ``once`` records a cassette that is not found, through ``relay record
--upstream URL`` (``--relay-upstream``), and replays it ever after; ``all`` records every time.
While recording the fixture yields a ``relay.testing.RecordingServer`` (``mode == "record"``):
the same ``url``, no replay checks; relay record finishing the cassette is checked at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from relay.errors import RelayError

if TYPE_CHECKING:
    from relay.testing import RecordingServer, ReplayServer

MARKER = "relay"
INI_DIR = "relay_cassette_dir"
INI_MODE = "relay_record_mode"
INI_UPSTREAM = "relay_upstream"
RECORD_MODES = ("none", "once", "all")
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
    parser.addini(INI_MODE, "relay record mode: none, once or all (default none)", default="")
    parser.addini(INI_UPSTREAM, "the GWS server relay records from (once/all)", default="")
    group = parser.getgroup("relay", "relay: replay and record GWS cassettes")
    group.addoption(
        "--relay-record-mode",
        choices=RECORD_MODES,
        default=None,
        help="none (default): replay only; once: record cassettes that are not found, "
        "replay the others; all: record every cassette again (ini: relay_record_mode)",
    )
    group.addoption(
        "--relay-upstream",
        metavar="URL",
        default=None,
        help="the GWS server to record from, e.g. http://gws-lab:8080 (ini: relay_upstream)",
    )
    group.addoption(
        "--relay-insecure",
        action="store_true",
        default=False,
        help="accept the upstream's self-signed certificate while recording",
    )


def record_mode(config: pytest.Config) -> Literal["none", "once", "all"]:
    """``--relay-record-mode``, else the ``relay_record_mode`` ini option, else ``none``."""
    mode = config.getoption("relay_record_mode") or str(config.getini(INI_MODE) or "none")
    mode = mode.strip().lower()
    if mode == "once":
        return "once"
    if mode == "all":
        return "all"
    if mode == "none":
        return "none"
    raise pytest.UsageError(f"{INI_MODE} = {mode!r}: expected one of {', '.join(RECORD_MODES)}")


def pytest_configure(config: pytest.Config) -> None:
    record_mode(config)  # a wrong ini value is a usage error before any test runs
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


def record_path(name: str, *, test_dir: Path) -> Path:
    """Where a recording of a marker's cassette goes when it is not found: an absolute path as
    given, a relative one beside the test file (the first place ``find_cassette`` looks)."""
    given = Path(name)
    return given if given.is_absolute() else test_dir / given


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
def relay_replay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplayServer | RecordingServer]:
    """A started ``ReplayServer`` for the test's ``@pytest.mark.relay`` cassette, or, when the
    record mode asks for it, a ``RecordingServer`` writing it."""
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
    mode = record_mode(config)
    test_dir = request.path.parent
    # Each failure is raised outside its except block: one message, no exception chain.
    problem = ""
    path: Path | None = None
    try:
        path = find_cassette(
            name,
            test_dir=test_dir,
            rootdir=config.rootpath,
            cassette_dir=str(config.getini(INI_DIR) or "cassettes"),
        )
    except LookupError as e:
        problem = str(e)
    if mode == "none" and problem:
        pytest.fail(
            f"{problem}\nTo record it: pytest --relay-record-mode=once --relay-upstream URL",
            pytrace=False,
        )
    if mode == "all" or path is None:
        # "all" rewrites the cassette where it was found; a new one goes beside the test.
        target = path if path is not None else record_path(name, test_dir=test_dir)
        yield from _record(request, tmp_path_factory, target, mode, problem)
        return
    yield from _replay(path, options, strict=strict, played=played)


def _record(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    target: Path,
    mode: str,
    not_found: str,
) -> Iterator[RecordingServer]:
    config = request.config
    upstream = config.getoption("relay_upstream") or str(config.getini(INI_UPSTREAM) or "")
    if not upstream:
        why = f"{not_found}\n" if not_found else ""
        pytest.fail(
            f"{why}relay: --relay-record-mode={mode} needs the server to record "
            f"{target.name} from: --relay-upstream URL (or the {INI_UPSTREAM} ini option)",
            pytrace=False,
        )
    # Imported here: every pytest run loads this plugin, only tests that use relay need aiohttp.
    from relay.testing import RecordingError, RecordingServer

    recorder = RecordingServer(
        target,
        upstream=upstream,
        insecure=bool(config.getoption("relay_insecure")),
        # mitmproxy creates its CA there at the first start: parallel recordings must not share.
        confdir=tmp_path_factory.mktemp("relay-confdir"),
        title=request.node.nodeid,
    )
    _start_or_fail(recorder)
    problem = ""
    try:
        yield recorder
    finally:
        try:
            recorder.stop()
        except RecordingError as e:
            problem = f"relay: {e}"
    if problem:
        pytest.fail(problem, pytrace=False)


def _start_or_fail(server: ReplayServer | RecordingServer) -> None:
    """Start a test server; a failure fails the test with relay's one line (no traceback)."""
    problem = ""
    try:
        server.start()
    except RelayError as e:  # raised outside the except block: one message, no chain
        problem = f"relay: {e}"
    if problem:
        pytest.fail(problem, pytrace=False)


def _replay(
    path: Path, options: dict[str, Any], *, strict: bool, played: bool
) -> Iterator[ReplayServer]:
    from relay.testing import ReplayMismatch, ReplayServer

    server = ReplayServer(path, **options)
    _start_or_fail(server)
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
