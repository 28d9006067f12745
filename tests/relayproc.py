"""Run the ``relay`` command as a user does: a subprocess, its first line, its exit."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

RELAY = [sys.executable, "-m", "relay"]
START_TIMEOUT = 20.0


@asynccontextmanager
async def relay_server(*args: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """Start ``relay ARGS`` (a serving verb with ``--port 0``); yield its base URL and process.

    The URL comes from the ``listening on http://HOST:PORT`` line it must print first.
    """
    proc = await asyncio.create_subprocess_exec(
        *RELAY,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)).decode().strip()
        if not line.startswith("listening on http://"):
            assert proc.stderr is not None
            err = (await asyncio.wait_for(proc.stderr.read(), 5)).decode()
            raise AssertionError(f"relay {' '.join(args)} did not start: {line!r} {err}")
        yield line.removeprefix("listening on "), proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run_relay(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run ``relay ARGS`` to completion: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *RELAY, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
