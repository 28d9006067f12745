"""Run the ``relay`` command as a user does: a subprocess, its first line, its output, its exit.

One helper for every test that starts a serving verb (``replay``, ``record``): the child's
output is collected in the background, so a chatty server never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from jspeers import Lines, stop_process

RELAY = [sys.executable, "-m", "relay"]
START_TIMEOUT = 20.0


@dataclass
class Served:
    """A running ``relay`` serving verb: its URL and its output so far."""

    url: str
    process: asyncio.subprocess.Process
    stdout: Lines
    stderr: Lines

    def output(self) -> str:
        return f"--- stdout:\n{self.stdout.text}\n--- stderr:\n{self.stderr.text}"

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` (if it still runs), wait for the exit and the rest of its output;
        its exit status."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 15.0) -> int:
        """Wait for the exit (after a signal the test sent itself: a second one could land
        after the event loop closed, when the default action applies) and the rest of the
        output; the exit status."""
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError as e:
            raise AssertionError(f"relay did not exit within {timeout}s:\n{self.output()}") from e
        await self.stdout.finish()
        await self.stderr.finish()
        return code


@contextlib.asynccontextmanager
async def relay_server(
    *args: str, stdin: int = asyncio.subprocess.DEVNULL, grace: float = 5.0
) -> AsyncIterator[Served]:
    """Start ``relay ARGS`` (a serving verb with ``--port 0``) and yield it once it printed
    ``listening on http://HOST:PORT``; leaving the block stops it (SIGTERM, then SIGKILL)."""
    process = await asyncio.create_subprocess_exec(
        *RELAY,
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = Lines(process.stdout), Lines(process.stderr)
    try:
        try:
            first = await stdout.wait_for(lambda lines: lines[:1], START_TIMEOUT)
        except (TimeoutError, EOFError) as e:
            raise AssertionError(f"relay {args[0]} did not start:\n{stderr.text}") from e
        assert first[0].startswith("listening on http://"), f"{first[0]!r}\n{stderr.text}"
        yield Served(first[0].removeprefix("listening on "), process, stdout, stderr)
    finally:
        await stop_process(process, grace=grace)
        await stdout.finish()
        await stderr.finish()


async def run_relay(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run ``relay ARGS`` to completion: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *RELAY, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
