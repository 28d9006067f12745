"""The real JavaScript peers of the tests, driven from pytest: a desktop and a fake GWS upstream.

- ``tests/js/desktop.mjs``: an agent desktop on the official CometD client (long-polling or
  WebSocket); it can log in (Basic + CSRF + cookies) and play the two-step transfer.
- ``tests/js/upstream.mjs``: a fake GWS server on faye 1.4 that plays a cassette's upstream part.

Both run as real processes on loopback; every wait here is bounded. Tests that use them carry
``pytestmark = jspeers.node_marks`` (the ``node`` marker, and a skip when Node.js or
``node_modules`` is absent)::

    async with jspeers.upstream_server(cassette, user="agent", password="secret") as upstream:
        async with jspeers.start_desktop(upstream.url, transport="websocket", count=6,
                                         login=True, user="agent", password="secret") as desktop:
            await desktop.ready()
            await upstream.ring()
            result = await desktop.result()
    assert result.notifications == jspeers.cassette_notifications(cassette)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "tests" / "js"
DESKTOP_JS = JS_DIR / "desktop.mjs"
UPSTREAM_JS = JS_DIR / "upstream.mjs"
NODE_PACKAGES = ("cometd", "cometd-nodejs-client", "faye", "ws")

#: Credentials the tests use by convention (the peers have no defaults of their own).
USER = "agent"
PASSWORD = "secret"

START_TIMEOUT = 20.0  # seconds for a process to print its first line (cold node on 2 cores)


def node_available() -> bool:
    """True when ``node`` is on PATH and the npm packages of package.json are installed."""
    if shutil.which("node") is None:
        return False
    return all((ROOT / "node_modules" / name / "package.json").is_file() for name in NODE_PACKAGES)


#: ``pytestmark = jspeers.node_marks`` in a module whose tests run the JS peers.
node_marks = [
    pytest.mark.node,
    pytest.mark.skipif(
        not node_available(), reason="needs node and node_modules (run `npm ci` in the checkout)"
    ),
]


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise AssertionError("node is not on PATH")
    return node


async def _stop(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """Terminate a process we started (by its pid only) and reap it, bounded."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.wait_for(process.wait(), grace)


class _Lines:
    """Collects a pipe's lines in the background so that the child never blocks on it."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self.closed = False
        self._task = asyncio.ensure_future(self._pump(stream))

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        try:
            while line := await stream.readline():
                self.lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
                self._changed.set()
        finally:
            self.closed = True
            self._changed.set()

    async def wait_for(self, predicate: Callable[[list[str]], Any], timeout: float) -> Any:
        """The first truthy ``predicate(lines)``; TimeoutError, or EOFError if the pipe closed."""
        async with asyncio.timeout(timeout):
            while True:
                found = predicate(self.lines)
                if found:
                    return found
                if self.closed:
                    raise EOFError("the process closed its output")
                self._changed.clear()
                await self._changed.wait()

    async def finish(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        self._task.cancel()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


#: Public names for the two process helpers other test modules reuse for their own processes
#: (``_Lines`` and ``_stop`` stay importable).
Lines = _Lines
stop_process = _stop


# --- the upstream ---------------------------------------------------------------------------


@dataclass
class Upstream:
    """A running ``upstream.mjs``: its base URL and the requests it has logged so far."""

    url: str
    process: asyncio.subprocess.Process
    _stdout: _Lines
    _stderr: _Lines

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON lines it printed, one per answered request (see upstream.mjs)."""
        out = []
        for line in self._stdout.lines[1:]:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    @property
    def stderr(self) -> str:
        return self._stderr.text

    async def sync(self, timeout: float = 10) -> list[dict[str, Any]]:
        """The logged requests, once every request answered so far has been logged."""
        marker = f"/test/ping?{uuid.uuid4().hex}"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(self.url + marker) as response,
        ):
            assert response.status == 200, f"{marker} answered {response.status}"
        await self._stdout.wait_for(lambda lines: any(marker in line for line in lines), timeout)
        return [r for r in self.requests if r.get("path") != marker]

    async def ring(self) -> int:
        """POST /test/ring: publish the cassette's unsolicited notifications; how many."""
        return int((await self.post_json("/test/ring", {}))["published"])

    async def forget(self) -> int:
        """POST /test/forget: every client's next connect gets 402::Unknown client; how many."""
        return int((await self.post_json("/test/forget", {}))["forgotten"])

    async def publish(self, channel: str, data: Any) -> None:
        """POST /test/publish: publish one message on ``channel``."""
        await self.post_json("/test/publish", {"channel": channel, "data": data})

    async def post_json(self, path: str, body: Any) -> Any:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(self.url + path, json=body) as response,
        ):
            text = await response.text()
            assert response.status == 200, f"{path} answered {response.status}: {text}"
            return json.loads(text)


@contextlib.asynccontextmanager
async def upstream_server(
    cassette: str | os.PathLike[str],
    *,
    user: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    ui: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[Upstream]:
    """Run ``upstream.mjs`` on a free loopback port; yields an :class:`Upstream` handle.

    ``timeout`` is faye's long-poll hold in seconds. On exit the process is terminated; if it
    had died on its own, AssertionError with its stderr.
    """
    args = ["--port", "0", "--host", host, "--cassette", os.fspath(cassette)]
    if user is not None:
        args += ["--user", user, "--password", password or ""]
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    if ui is not None:
        args += ["--ui", os.fspath(ui)]
    process = await asyncio.create_subprocess_exec(
        _node(),
        str(UPSTREAM_JS),
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = _Lines(process.stdout), _Lines(process.stderr)
    try:
        try:
            first = await stdout.wait_for(lambda lines: lines[:1], START_TIMEOUT)
        except (TimeoutError, EOFError) as e:
            raise AssertionError(
                f"upstream.mjs did not start ({type(e).__name__}):\n{stderr.text}"
            ) from e
        prefix = "listening on "
        assert first[0].startswith(prefix), f"upstream.mjs printed {first[0]!r}\n{stderr.text}"
        url = first[0][len(prefix) :]
        print(f"upstream.mjs (pid {process.pid}) {first[0]}", file=sys.stderr)
        yield Upstream(url=url, process=process, _stdout=stdout, _stderr=stderr)
        if process.returncode is not None:
            raise AssertionError(
                f"upstream.mjs exited early with {process.returncode}:\n{stderr.text}"
            )
    finally:
        await _stop(process)
        await stdout.finish()
        await stderr.finish()


@contextlib.asynccontextmanager
async def start_upstream(
    cassette: str | os.PathLike[str],
    *,
    user: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    ui: str | os.PathLike[str] | None = None,
) -> AsyncIterator[str]:
    """Run ``upstream.mjs`` for ``cassette``; yields its base URL ``http://127.0.0.1:PORT``.

    Without ``user`` it accepts any Basic credentials, but still demands some on /api/v2.
    Use :func:`upstream_server` for the handle (``ring()``, logged requests).
    """
    async with upstream_server(
        cassette, user=user, password=password, timeout=timeout, ui=ui
    ) as upstream:
        yield upstream.url


# --- the desktop ----------------------------------------------------------------------------


@dataclass
class DesktopResult:
    """What ``desktop.mjs`` printed: its JSON events, exit code and stderr."""

    returncode: int | None
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    @property
    def notifications(self) -> list[dict[str, Any]]:
        """Every message received, in order, as ``{"channel", "data"}``."""
        return [
            {"channel": e["channel"], "data": e.get("data")}
            for e in self.events
            if e.get("event") == "notification"
        ]

    @property
    def rest(self) -> list[dict[str, Any]]:
        """Every REST exchange, in order: ``{"method", "path", "body", "status", "response"}``."""
        return [
            {k: v for k, v in e.items() if k != "event"}
            for e in self.events
            if e.get("event") == "rest"
        ]

    @property
    def done(self) -> bool:
        return any(e.get("event") == "done" for e in self.events)

    def describe(self) -> str:
        events = "\n".join(json.dumps(e)[:300] for e in self.events[-20:])
        return (
            f"exit code {self.returncode}\n--- stderr:\n{self.stderr}\n--- last events:\n{events}"
        )


def desktop_args(
    url: str,
    *,
    transport: str,
    count: int | None = None,
    login: bool = False,
    user: str | None = None,
    password: str | None = None,
    subscribe: list[str] | None = None,
    destination: str | None = None,
    deadline_ms: int | None = None,
    no_ops: bool = False,
    extra: list[str] | None = None,
) -> list[str]:
    """The command line of ``desktop.mjs`` (without ``node`` and the script)."""
    args = ["--url", url, "--transport", transport]
    if count is not None:
        args += ["--count", str(count)]
    if login:
        args.append("--login")
    if user is not None:
        args += ["--user", user, "--password", password or ""]
    for channel in subscribe or []:
        args += ["--subscribe", channel]
    if destination is not None:
        args += ["--destination", destination]
    if deadline_ms is not None:
        args += ["--deadline-ms", str(deadline_ms)]
    if no_ops:
        args.append("--no-ops")
    return args + list(extra or [])


class DesktopProcess:
    """A running ``desktop.mjs``; use as ``async with start_desktop(...) as desktop``."""

    def __init__(self, args: list[str], *, wait_timeout: float) -> None:
        self.args = args
        self.wait_timeout = wait_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._stdout: _Lines | None = None
        self._stderr: _Lines | None = None

    async def __aenter__(self) -> DesktopProcess:
        self.process = await asyncio.create_subprocess_exec(
            _node(),
            str(DESKTOP_JS),
            *self.args,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._stdout, self._stderr = _Lines(self.process.stdout), _Lines(self.process.stderr)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None and self._stdout and self._stderr
        await _stop(self.process)
        await self._stdout.finish()
        await self._stderr.finish()

    def snapshot(self) -> DesktopResult:
        """What it printed so far."""
        assert self.process is not None and self._stdout and self._stderr
        events = []
        for line in self._stdout.lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": "garbage", "line": line})
        return DesktopResult(self.process.returncode, events, self._stderr.text)

    async def wait_event(
        self, name: str, timeout: float | None = None, *, nth: int = 1
    ) -> dict[str, Any]:
        """The ``nth`` ``{"event": name}`` line; AssertionError if it does not come in time."""
        assert self._stdout is not None

        def find(lines: list[str]) -> dict[str, Any] | None:
            seen = 0
            for line in lines:
                if f'"{name}"' in line:
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if event.get("event") == name:
                            seen += 1
                            if seen == nth:
                                return dict(event)
            return None

        try:
            found: dict[str, Any] = await self._stdout.wait_for(
                find, timeout if timeout is not None else self.wait_timeout
            )
        except (TimeoutError, EOFError) as e:
            if self.process is not None and self.process.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 1)
            raise AssertionError(
                f"desktop.mjs printed no {name!r} event #{nth} ({type(e).__name__}):\n"
                + self.snapshot().describe()
            ) from e
        return found

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until it is subscribed (``{"event":"ready"}``)."""
        await self.wait_event("ready", timeout)

    async def result(self, timeout: float | None = None) -> DesktopResult:
        """Wait for it to exit; its result, or AssertionError with its stderr if it failed."""
        assert self.process is not None and self._stdout and self._stderr
        try:
            await asyncio.wait_for(
                self.process.wait(), timeout if timeout is not None else self.wait_timeout
            )
        except TimeoutError as e:
            raise AssertionError(
                "desktop.mjs did not exit in time:\n" + self.snapshot().describe()
            ) from e
        await self._stdout.finish()
        await self._stderr.finish()
        result = self.snapshot()
        if result.returncode != 0 or not result.done:
            raise AssertionError("desktop.mjs failed: " + result.describe())
        return result


def start_desktop(
    url: str,
    *,
    transport: str,
    count: int | None = None,
    login: bool = False,
    user: str | None = None,
    password: str | None = None,
    subscribe: list[str] | None = None,
    destination: str | None = None,
    deadline_ms: int = 30_000,
    no_ops: bool = False,
    extra: list[str] | None = None,
) -> DesktopProcess:
    """A desktop to run as ``async with``: ``await d.ready()``, ring, ``await d.result()``.

    Leaving the block terminates it if still running (SIGTERM: it disconnects and exits).
    """
    args = desktop_args(
        url,
        transport=transport,
        count=count,
        login=login,
        user=user,
        password=password,
        subscribe=subscribe,
        destination=destination,
        deadline_ms=deadline_ms,
        no_ops=no_ops,
        extra=extra,
    )
    # The desktop enforces its own deadline; wait a little longer for it to say why.
    return DesktopProcess(args, wait_timeout=deadline_ms / 1000 + 10 if deadline_ms else 60)


async def run_desktop(
    url: str,
    *,
    transport: str,
    count: int,
    login: bool = False,
    user: str | None = None,
    password: str | None = None,
    subscribe: list[str] | None = None,
    destination: str | None = None,
    deadline_ms: int = 30_000,
    no_ops: bool = False,
    extra: list[str] | None = None,
) -> DesktopResult:
    """Run a desktop until it has seen ``count`` notifications; AssertionError if it failed."""
    desktop = start_desktop(
        url,
        transport=transport,
        count=count,
        login=login,
        user=user,
        password=password,
        subscribe=subscribe,
        destination=destination,
        deadline_ms=deadline_ms,
        no_ops=no_ops,
        extra=extra,
    )
    async with desktop:
        return await desktop.result()


# --- cassettes ------------------------------------------------------------------------------


def cassette_notifications(cassette: str | os.PathLike[str] | dict[str, Any]) -> list[dict]:
    """A cassette's notifications, in time order, as ``{"channel", "data"}``."""
    raw = cassette if isinstance(cassette, dict) else json.loads(Path(cassette).read_text())
    events = sorted((e for d in raw["desktops"] for e in d["events"]), key=lambda e: e["at_ms"])
    return [
        {"channel": e["channel"], "data": e["message"].get("data")}
        for e in events
        if e["type"] == "notification"
    ]


CALL_5 = "011DJV5JI898NB2L04000VTAES000005"
CALL_6 = "011DJV5JI898NB2L04000VTAES000006"
_BASE = "http://127.0.0.1:8080/api/v2"


def _call_event(call_id: str, state: str, capabilities: list[str], **extra: Any) -> dict:
    consult = call_id == CALL_6
    number = "5001" if consult else "5000"
    call: dict[str, Any] = {
        "id": call_id,
        "state": state,
        "callUuid": call_id,
        "connId": "007102385535e006" if consult else "007102385535e005",
        "deviceUri": f"{_BASE}/devices/efe1ab32-53f9-43ce-b65e-5768c61f7d4a",
        "participants": [
            {
                "e164Number": "",
                "formattedPhoneNumber": number,
                "phoneNumber": number,
                "digits": number,
            }
        ],
        "dnis": "5001" if consult else "5005",
        "callType": "Consult" if consult else "Internal",
        "capabilities": capabilities,
        "mute": "Off",
        "supervisorListeningIn": False,
        "monitoredUserMuted": False,
        "uri": f"{_BASE}/me/calls/{call_id}",
        "path": f"/calls/{call_id}",
        **extra,
    }
    if consult:
        call["parentCallUri"] = f"{_BASE}/me/calls/{CALL_5}"
    return {
        "notificationType": "StatusChange",
        "call": call,
        "phoneNumber": "5005",
        "extensions": {"WrapUpTime": 0, "BusinessCall": 0},
        "messageType": "CallStateChangeMessage",
    }


def two_step_transfer_cassette() -> dict[str, Any]:
    """A small version-1 cassette of the seed's Sample 2 (two-step transfer), as a JSON value.

    Payloads follow the seed, trimmed of some capabilities; for tests that need a cassette
    before (or instead of) ``cassettes/two-step-transfer.json``.
    """
    events: list[dict[str, Any]] = []
    clock = iter(range(0, 100_000, 100))

    def notification(data: dict, cause: str | None) -> None:
        n = len([e for e in events if e["type"] == "notification"]) + 1
        message = {"channel": "/v2/me/calls", "data": data}
        events.append(
            {
                "type": "notification",
                "id": f"n{n}",
                "at_ms": next(clock),
                "channel": "/v2/me/calls",
                "message": message,
                "cause": cause,
            }
        )

    def exchange(call_id: str, body: dict) -> str:
        n = len([e for e in events if e["type"] == "exchange"]) + 1
        at = next(clock)
        events.append(
            {
                "type": "exchange",
                "id": f"x{n}",
                "at_ms": at,
                "response_ms": at + 20,
                "request": {
                    "method": "POST",
                    "path": f"/api/v2/me/calls/{call_id}",
                    "query": [],
                    "headers": [["content-type", "application/json"]],
                    "body": {"json": body},
                },
                "response": {
                    "status": 200,
                    "reason": "OK",
                    "headers": [["content-type", "application/json;charset=UTF-8"]],
                    "body": {"json": {"statusCode": 0}},
                },
                "error": None,
            }
        )
        return f"x{n}"

    notification(_call_event(CALL_5, "Ringing", ["Answer"], duration="0"), None)
    x1 = exchange(CALL_5, {"operationName": "Answer"})
    notification(
        _call_event(CALL_5, "Established", ["Hangup", "Hold", "InitiateTransfer"], duration="10"),
        x1,
    )
    x2 = exchange(
        CALL_5, {"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}}
    )
    notification(_call_event(CALL_5, "Held", ["Retrieve", "Hangup"], duration="36"), x2)
    notification(_call_event(CALL_6, "Dialing", ["Hangup", "CompleteTransfer"], duration="0"), x2)
    x3 = exchange(CALL_6, {"operationName": "CompleteTransfer"})
    notification(_call_event(CALL_5, "Released", [], duration="48"), x3)
    notification(_call_event(CALL_6, "Released", [], duration="12"), x3)
    return {
        "version": 1,
        "meta": {"title": "two-step transfer (seed, Sample 2, trimmed)", "notes": "tests"},
        "desktops": [{"name": "agent", "events": events}],
        "assets": [],
    }


def write_cassette(path: str | os.PathLike[str], cassette: dict[str, Any]) -> Path:
    """Write a cassette's JSON value to ``path``; the path."""
    p = Path(path)
    p.write_text(json.dumps(cassette, indent=2, sort_keys=True) + "\n")
    return p
