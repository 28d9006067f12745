"""A real replay server for tests of desktop code, in a background thread.

    with ReplayServer("cassettes/two-step-transfer.json") as server:
        run_my_desktop(base_url=server.url)
        server.check(played=True)

The server is the one ``relay replay`` runs (``relay.replay.create_app``), on 127.0.0.1 and a
port the OS picks, with its own asyncio loop in its own thread: the code under test may be
synchronous (requests, urllib) or asynchronous on any loop (aiohttp, aiocometd). Everything
that touches the replay state runs on the server's loop. ``relay.pytest_plugin`` builds the
``relay`` marker and the ``relay_replay`` fixture on this module.

    RelayError
    ├── CassetteError          the cassette cannot be loaded (the message names the file)
    └── ReplayServerError      the server cannot start, is not running, or no such session
    AssertionError
    └── ReplayMismatch         ``check()``: a request matched nothing, or the scenario is unfinished
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from relay import cassette as cassette_mod
from relay import control
from relay.cassette import Cassette
from relay.errors import CassetteError, RelayError
from relay.replay import REPLAYER, Replayer, ReplayOptions, create_app

__all__ = ["ReplayMismatch", "ReplayServer", "ReplayServerError"]

T = TypeVar("T")

#: Seconds to wait for the server to start, for a call on its loop, and for its thread to end.
START_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class ReplayServerError(RelayError):
    """The test server cannot do what it was asked (start, a call while stopped, a session)."""


class ReplayMismatch(AssertionError):
    """What ``ReplayServer.check`` found: the desktop did not do what the cassette recorded."""


class ReplayServer:
    """A relay replay server on 127.0.0.1 in a background thread; a context manager.

    ``cassette`` is a path or a loaded ``Cassette``; the keyword arguments are those of
    ``ReplayOptions`` (``speed`` defaults to 0 here: no waiting, order kept). ``assets_dir``
    defaults to the asset store beside the cassette file when there is one.
    """

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

    def __enter__(self) -> ReplayServer:
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
            raise ReplayServerError(f"{self.name}: the replay server is not started")
        return self._url

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
