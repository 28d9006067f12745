"""A real replay server for tests of desktop code, in a background thread.

    with ReplayServer("cassettes/two-step-transfer.json") as server:
        run_my_desktop(base_url=server.url)
        server.check(played=True)

The server is the one ``relay replay`` runs (``relay.replay.create_app``), on 127.0.0.1 and a
port the OS picks, with its own asyncio loop in its own thread: the code under test may be
synchronous (requests, urllib) or asynchronous on any loop (aiohttp, aiocometd). Everything
that touches the replay state runs on the server's loop. ``relay.pytest_plugin`` builds the
``relay`` marker and the ``relay_replay`` fixture on this module.

``RecordingServer`` is the other side, for recording a cassette once against a lab server:
``relay record`` in a subprocess (mitmproxy's state is process-wide), the same ``url``:

    with RecordingServer("new.json", upstream="https://gws-lab:8443", insecure=True) as rec:
        run_my_desktop(base_url=rec.url)
    # new.json is written when the block ends (RecordingError if it was not)

    RelayError
    ├── CassetteError          the cassette cannot be loaded (the message names the file)
    ├── ReplayServerError      the server cannot start, is not running, or no such session
    └── RecordingError         ``relay record`` cannot start, or did not write the cassette;
                               also a replay-only method called on a ``RecordingServer``
    AssertionError
    └── ReplayMismatch         ``check()``: a request matched nothing, or the scenario is unfinished
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from relay import cassette as cassette_mod
from relay import control
from relay.cassette import Cassette
from relay.errors import CassetteError, RelayError
from relay.replay import REPLAYER, Replayer, ReplayOptions, create_app

__all__ = [
    "RecordingError",
    "RecordingServer",
    "ReplayMismatch",
    "ReplayServer",
    "ReplayServerError",
]

T = TypeVar("T")

#: Seconds to wait for the server to start, for a call on its loop, and for its thread to end.
START_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class ReplayServerError(RelayError):
    """The test server cannot do what it was asked (start, a call while stopped, a session)."""


class ReplayMismatch(AssertionError):
    """What ``ReplayServer.check`` found: the desktop did not do what the cassette recorded."""


class _Served:
    """What both test servers share: a context manager around ``start``/``stop``, and ``url``
    once started (``_not_started`` says what to raise before that)."""

    name: str
    _url: str | None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _not_started(self) -> RelayError:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash."""
        if self._url is None:
            raise self._not_started()
        return self._url


class ReplayServer(_Served):
    """A relay replay server on 127.0.0.1 in a background thread; a context manager.

    ``cassette`` is a path or a loaded ``Cassette``; the keyword arguments are those of
    ``ReplayOptions`` (``speed`` defaults to 0 here: no waiting, order kept). ``assets_dir``
    defaults to the asset store beside the cassette file when there is one.
    """

    #: What the ``relay_replay`` fixture yields is a ``ReplayServer`` or a ``RecordingServer``.
    mode = "replay"

    def __init__(
        self,
        cassette: str | os.PathLike[str] | Cassette,
        *,
        speed: float = 0.0,
        timeout_ms: int | None = None,
        keep_origin: bool = False,
        desktop: str | None = None,
        subscribe_wait: float = 30.0,
        session_idle: float = 600.0,
        step: bool = False,
        loop: bool = False,
        assets_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.cassette_arg = cassette
        self.options = ReplayOptions(
            speed=speed,
            timeout_ms=timeout_ms,
            keep_origin=keep_origin,
            desktop=desktop,
            subscribe_wait=subscribe_wait,
            session_idle=session_idle,
            step=step,
            loop=loop,
        )
        self.assets_dir = None if assets_dir is None else Path(assets_dir)
        #: The server's console lines (served exchanges, notifications, misses), in order.
        self.log: list[str] = []
        self.name = (
            cassette.meta.title or "the cassette"
            if isinstance(cassette, Cassette)
            else os.fspath(cassette)
        )
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._replayer: Replayer | None = None
        self._final: dict[str, Any] | None = None

    # -- lifecycle

    def start(self) -> ReplayServer:
        """Load the cassette, build the app and serve it; returns when the port is bound."""
        if self._thread is not None:
            raise ReplayServerError(f"{self.name}: the replay server is already started")
        app = self._build_app()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._final = None
        self._thread = threading.Thread(
            target=self._run, args=(app, ready, failure), name="relay-replay", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            raise ReplayServerError(f"{self.name}: the replay server did not start in time")
        if failure:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
            raise ReplayServerError(f"{self.name}: cannot start: {failure[0]}") from failure[0]
        return self

    def stop(self) -> None:
        """Stop at once (held connects are answered, WebSockets closed) and join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            # RuntimeError: the loop has ended on its own already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT)
        self._thread = None
        if thread.is_alive():
            raise ReplayServerError(
                f"{self.name}: the replay server did not stop within {STOP_TIMEOUT:g}s"
            )

    def _not_started(self) -> RelayError:
        return ReplayServerError(f"{self.name}: the replay server is not started")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- what the control API offers, called on the server's loop

    def status(self) -> dict[str, Any]:
        """The JSON of ``GET /_relay/status``; after ``stop()``, as it was when it stopped."""
        if not self.running and self._final is not None:
            return self._final
        return self._call(lambda r: control.status(r))

    @property
    def unmatched(self) -> list[dict[str, Any]]:
        """The requests that matched nothing (the no-match reports, latest 50)."""
        found: list[dict[str, Any]] = self.status()["unmatched"]
        return found

    def release_next(self, session: str | None = None) -> list[str]:
        """Step mode: release the next group of one session, or of all; the sessions' ids."""

        def release(r: Replayer) -> list[str]:
            if session is not None and session not in r.sessions:
                raise ReplayServerError(f"no session {session!r}")
            return r.release_next(session)

        return self._call(release)

    def pause(self) -> None:
        """Hold every notification until ``resume()``."""
        self._call(lambda r: r.set_paused(True))

    def resume(self) -> None:
        """Go on at the replay pace from now."""
        self._call(lambda r: r.set_paused(False))

    def reset(self, session_id: str) -> None:
        """Start a session's scenario again from the top."""

        def reset(r: Replayer) -> None:
            found = r.sessions.get(session_id)
            if found is None:
                raise ReplayServerError(f"no session {session_id!r}")
            r.reset(found)

        self._call(reset)

    # -- assertions

    def check(self, played: bool = False, *, unmatched: bool = True) -> None:
        """Raise ``ReplayMismatch`` when a request matched nothing (unless ``unmatched`` is
        False) or, with ``played``, when no session was started or one has not played the
        whole cassette. The message lists each problem on its own lines."""
        status = self.status()
        if not unmatched:
            status = {**status, "unmatched": [], "unmatched_total": 0}
        report = mismatch_report(status, name=self.name, played=played)
        if report:
            raise ReplayMismatch(report)

    # -- inside

    def _build_app(self) -> web.Application:
        if isinstance(self.cassette_arg, Cassette):
            loaded = self.cassette_arg
            store = self.assets_dir
        else:
            loaded = cassette_mod.load(self.cassette_arg)  # CassetteError names the file
            store = self.assets_dir or cassette_mod.assets_dir(self.cassette_arg)
        try:
            return create_app(
                loaded,
                self.options,
                log=self.log.append,
                verbose=True,
                assets_dir=store if store is not None and store.is_dir() else None,
            )
        except RelayError as e:
            raise CassetteError(str(e), path=self.name) from e

    def _run(
        self, app: web.Application, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        try:
            asyncio.run(self._serve(app, ready))
        except BaseException as e:  # reported to start(), which raises it in the caller's thread
            failure.append(e)
        finally:
            ready.set()

    async def _serve(self, app: web.Application, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._replayer = app[REPLAYER]
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self._url = f"http://{host}:{port}"
            ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            self._final = control.status(self._replayer)

    def _call(self, fn: Callable[[Replayer], T]) -> T:
        loop, replayer = self._loop, self._replayer
        if not self.running or loop is None or replayer is None:
            raise ReplayServerError(f"{self.name}: the replay server is not running")

        async def on_loop() -> T:
            return fn(replayer)

        future = asyncio.run_coroutine_threadsafe(on_loop(), loop)
        try:
            return future.result(CALL_TIMEOUT)
        except FutureTimeout as e:
            future.cancel()
            raise ReplayServerError(
                f"{self.name}: the replay server did not answer within {CALL_TIMEOUT:g}s"
            ) from e


# --- the report ----------------------------------------------------------------------------


def _event_line(summary: dict[str, Any] | None) -> str:
    """``x2 POST /api/v2/me/calls/… (InitiateTransfer)`` or ``n3 /v2/me/calls Held``."""
    if summary is None:
        return "nothing"
    if summary.get("kind") == "exchange":
        parts = [summary["id"], summary["method"], summary["path"]]
        if "operation" in summary:
            parts.append(f"({summary['operation']})")
    else:
        parts = [summary["id"], summary.get("channel", "?")]
        parts += [summary[k] for k in ("notification_type", "state") if k in summary]
    return " ".join(str(p) for p in parts)


_WAITING = {
    "request": "the desktop to send it",
    "subscription": "a subscription to its channel",
    "resume": "resume()",
    "presenter": "release_next() (step mode)",
    "clock": "its time",
}


def mismatch_report(status: dict[str, Any], *, name: str, played: bool = False) -> str:
    """What ``check`` reports for a status (``GET /_relay/status``); empty when all is well."""
    lines: list[str] = []
    unmatched: list[dict[str, Any]] = status["unmatched"]
    total: int = status.get("unmatched_total", len(unmatched))
    if total:
        s = "" if total == 1 else "s"
        lines.append(f"relay: {total} request{s} matched nothing in {name}:")
        for report in unmatched:
            session = report.get("session") or "no session"
            lines.append(f"  [{session}] {report.get('request')}")
            lines.append(f"      {report.get('hint')}")
        if total > len(unmatched):
            lines.append(f"  ... and {total - len(unmatched)} earlier ones not kept")
    if played:
        sessions: list[dict[str, Any]] = status["sessions"]
        if not sessions:
            lines.append(f"relay: no desktop session was started: no request reached {name}")
        for session in sessions:
            if session["finished"]:
                continue
            waiting = _WAITING.get(session["waiting_for"], session["waiting_for"])
            lines.append(
                f"relay: session {session['id']} has not played the whole of {name}: "
                f"{session['position']} of {session['length']} events played"
            )
            lines.append(f"  next: {_event_line(session['next'])}, waiting for {waiting}")
    return "\n".join(lines)


# --- recording -------------------------------------------------------------------------------

#: Seconds to wait for ``relay record`` to listen, and to finish the cassette after SIGTERM.
RECORD_START_TIMEOUT = 20.0
RECORD_STOP_TIMEOUT = 30.0
#: ``ReplayServer``'s methods that a recording does not have (``relay record`` has no control
#: API): on a ``RecordingServer`` they raise ``RecordingError``.
REPLAY_ONLY = ("status", "unmatched", "release_next", "pause", "resume", "reset", "check")


class RecordingError(RelayError):
    """``relay record`` did not start, did not exit 0, or did not write the cassette (the
    message carries its stderr); or a replay-only method was called while recording."""


def _file_id(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is written atomically (a new inode): None when absent."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class RecordingServer(_Served):
    """``relay record --upstream UPSTREAM -o CASSETTE --port 0 -q`` in a subprocess; a context
    manager, and what the ``relay_replay`` fixture yields while recording.

    ``url`` is where the desktop connects instead of the server (``http://127.0.0.1:PORT``).
    ``stop()`` sends SIGTERM, waits for relay record to finish the cassette (written atomically,
    replacing an older one) and raises ``RecordingError`` with relay record's stderr unless it
    exited 0 having written ``cassette_path``. ``confdir`` is mitmproxy's directory (its CA,
    created at the first start; default ``~/.mitmproxy``: give each parallel recording its own).
    ``args`` are more ``relay record`` options (``--redact-json PATH``, ...). The replay
    server's control methods (``status``, ``unmatched``, ``release_next``, ``pause``,
    ``resume``, ``reset``, ``check``) raise ``RecordingError``: check ``mode`` first.
    """

    mode = "record"

    def __init__(
        self,
        cassette: str | os.PathLike[str],
        *,
        upstream: str,
        insecure: bool = False,
        confdir: str | os.PathLike[str] | None = None,
        title: str = "",
        args: tuple[str, ...] | list[str] = (),
        start_timeout: float = RECORD_START_TIMEOUT,
        stop_timeout: float = RECORD_STOP_TIMEOUT,
    ) -> None:
        self.cassette_path = Path(cassette)
        self.upstream = upstream
        self.insecure = insecure
        self.confdir = None if confdir is None else Path(confdir)
        self.title = title
        self.args = tuple(args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.name = os.fspath(self.cassette_path)
        #: relay record's stderr lines (warnings, errors) and stdout lines, as they come.
        self.log: list[str] = []
        self.stdout_lines: list[str] = []
        #: The exit status once stopped.
        self.returncode: int | None = None
        self._url: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []
        self._first_line = threading.Event()
        self._before: tuple[int, int, int] | None = None

    def command(self) -> list[str]:
        """The command line ``start()`` runs."""
        cmd = [sys.executable, "-m", "relay", "record", "--upstream", self.upstream]
        cmd += ["-o", os.fspath(self.cassette_path), "--port", "0", "-q"]
        if self.confdir is not None:
            cmd += ["--confdir", os.fspath(self.confdir)]
        if self.title:
            cmd += ["--title", self.title]
        if self.insecure:
            cmd.append("--insecure")
        return [*cmd, *self.args]

    # -- lifecycle

    def start(self) -> RecordingServer:
        """Start relay record; returns once it printed ``listening on http://HOST:PORT``."""
        if self._process is not None:
            raise RecordingError(f"{self.name}: the recording is already started")
        self.log.clear()
        self.stdout_lines.clear()
        self.returncode = None
        self._url = None
        self._first_line.clear()
        self._before = _file_id(self.cassette_path)
        process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._process = process
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._drain,
                args=(process.stdout, self.stdout_lines, True),
                name="relay-record-stdout",
                daemon=True,
            ),
            threading.Thread(
                target=self._drain,
                args=(process.stderr, self.log, False),
                name="relay-record-stderr",
                daemon=True,
            ),
        ]
        for reader in self._readers:
            reader.start()
        problem = ""
        if not self._first_line.wait(self.start_timeout):
            problem = f"did not print 'listening on' within {self.start_timeout:g}s"
        elif not self.stdout_lines or not self.stdout_lines[0].startswith("listening on http://"):
            problem = "did not start"
        if problem:
            self._end(kill=True)
            raise RecordingError(self._report(f"relay record {problem}"))
        self._url = self.stdout_lines[0].removeprefix("listening on ").rstrip("/")
        return self

    def stop(self) -> None:
        """SIGTERM, wait for the exit; ``RecordingError`` unless it exited 0 and wrote the
        cassette. Does nothing when not started."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._end(kill=True)
            raise RecordingError(
                self._report(
                    f"relay record did not finish {self.name} within {self.stop_timeout:g}s "
                    "of SIGTERM (killed)"
                )
            ) from None
        self._end(kill=False)
        if self.returncode != 0:
            raise RecordingError(self._report(f"relay record exited with status {self.returncode}"))
        after = _file_id(self.cassette_path)
        if after is None or after == self._before:
            raise RecordingError(self._report(f"relay record did not write {self.name}"))

    def _not_started(self) -> RelayError:
        return RecordingError(f"{self.name}: the recording is not started")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def stderr(self) -> str:
        return "\n".join(self.log)

    # -- what a recording does not have

    def _replay_only(self, method: str) -> RecordingError:
        return RecordingError(
            f"{method} is for a replay: {self.name} is being recorded (relay record has no "
            "control API); check relay_replay.mode == 'replay' first"
        )

    def status(self) -> dict[str, Any]:
        raise self._replay_only("status()")

    @property
    def unmatched(self) -> list[dict[str, Any]]:
        raise self._replay_only("unmatched")

    def release_next(self, session: str | None = None) -> list[str]:
        raise self._replay_only("release_next()")

    def pause(self) -> None:
        raise self._replay_only("pause()")

    def resume(self) -> None:
        raise self._replay_only("resume()")

    def reset(self, session_id: str) -> None:
        raise self._replay_only("reset()")

    def check(self, played: bool = False, *, unmatched: bool = True) -> None:
        raise self._replay_only("check()")

    # -- inside

    def _drain(self, stream: Any, lines: list[str], first: bool) -> None:
        """Read a pipe to its end (a chatty process never blocks on a full pipe)."""
        try:
            for line in stream:
                lines.append(line.rstrip("\r\n"))
                if first:
                    self._first_line.set()
        except (OSError, ValueError):  # the pipe closed under us
            pass
        finally:
            if first:
                self._first_line.set()  # EOF: start() stops waiting

    def _end(self, *, kill: bool) -> None:
        """Reap the process (killed first if asked) and its readers; keep the exit status."""
        process = self._process
        if process is None:
            return
        if kill and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
        for reader in self._readers:
            reader.join(STOP_TIMEOUT)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.returncode = process.returncode
        self._process = None
        self._readers = []

    def _report(self, what: str) -> str:
        err = self.stderr.strip() or "(nothing on stderr)"
        return f"{what} (recording {self.name} from {self.upstream}):\n{err}"
