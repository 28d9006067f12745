"""Real-browser helpers: headless Chromium (Debian's, driven by Playwright), the desktop page of
``tests/ui/``, and relay's serving verbs as subprocesses with their output kept.

- :func:`chromium` starts ``/usr/bin/chromium`` headless with a fresh profile (a new
  ``--user-data-dir`` each time); browsers are never downloaded. ``chromium_marks`` skips a
  module's tests when that binary is absent (CI installs it, see ``.ci/run``).
- :func:`ui_dir` builds the page's directory: ``tests/ui`` plus the official ``cometd`` package's
  ES modules under ``cometd/`` (the page imports ``./cometd/cometd.js``; its modules import each
  other by relative path, so they are served as they are).
- :class:`DesktopPage` reads and clicks the page: ``[data-call-id=ID] [data-state]``,
  ``button[data-op=Answer|InitiateTransfer|CompleteTransfer]``, ``#status``.
- :func:`relay_record`, :func:`relay_replay`: ``relay record`` / ``relay replay`` with
  ``--port 0``, their URL from the ``listening on`` line, their output for failure messages.
- :func:`static_server`: a tiny aiohttp static server, the "other origin" of the CORS test.
- :func:`artifacts_dir`: ``artifacts/`` at the top of the checkout (git-ignored).

Playwright is imported lazily, so that a checkout without it still collects every other test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jspeers
import pytest
from aiohttp import web
from relayproc import Served, relay_server

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

ROOT = jspeers.ROOT
UI_SOURCE = ROOT / "tests" / "ui"
COMETD_PACKAGE = ROOT / "node_modules" / "cometd"
CHROMIUM = Path(os.environ.get("RELAY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Default wait for anything the page should show (a cold Chromium on 2 shared cores).
TIMEOUT_MS = 15_000
RELAY = [sys.executable, "-m", "relay"]

#: ``pytestmark = browser.chromium_marks`` in a module whose tests run Chromium.
chromium_marks = [
    *jspeers.node_marks,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it)",
    ),
]


def artifacts_dir() -> Path:
    """``artifacts/`` at the top of the checkout, created if needed (git-ignored)."""
    path = ROOT / "artifacts"
    path.mkdir(exist_ok=True)
    return path


def ui_dir(dest: Path) -> Path:
    """The desktop page's directory at ``dest``: tests/ui plus cometd's modules in cometd/."""
    shutil.copytree(UI_SOURCE, dest)
    (dest / "cometd").mkdir()
    modules = sorted(COMETD_PACKAGE.glob("*.js"))
    assert modules, f"no cometd modules in {COMETD_PACKAGE} (npm ci)"
    for module in modules:
        shutil.copy2(module, dest / "cometd" / module.name)
    return dest


def localhost(url: str) -> str:
    """A URL as a person types it (``localhost``, not ``127.0.0.1``)."""
    return url.replace("//127.0.0.1:", "//localhost:")


# --- Chromium ---------------------------------------------------------------------------------


@dataclass
class Browser:
    """One headless Chromium with a fresh profile; what its pages said on the console."""

    context: BrowserContext
    console: list[str] = field(default_factory=list)

    async def open(self, url: str) -> Page:
        page = await self.context.new_page()
        page.on("console", lambda m: self.console.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.on(
            "requestfailed",
            lambda r: self.console.append(f"requestfailed: {r.method} {r.url} {r.failure}"),
        )
        await page.goto(url)
        return page


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Browser]:
    """Headless /usr/bin/chromium with ``--user-data-dir=profile`` (a new directory)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as e:  # the test extra brings it
        raise AssertionError("playwright is not installed: pip install -e '.[test]'") from e
    assert not profile.exists(), f"{profile} is not a fresh profile"
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 640},
            timeout=30_000,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield Browser(context)
        finally:
            await context.close()


class DesktopPage:
    """The desktop page of tests/ui in a browser tab."""

    def __init__(self, page: Page, browser: Browser, transport: str) -> None:
        self.page = page
        self.browser = browser
        self.transport = transport

    @classmethod
    async def open(
        cls,
        browser: Browser,
        base: str,
        *,
        transport: str,
        server: str | None = None,
        address_transport: str | None = None,
    ) -> DesktopPage:
        """Open ``BASE/ui/index.html?transport=T[&server=S]``: the page on ``transport``.

        ``address_transport``: the transport in the page's address when it must differ (the
        address a page was recorded at); the page then takes ``transport`` from the fragment
        (``#transport=websocket``), which never reaches the server. The page's credentials are
        its defaults (agent / secret): a password in its address would be recorded (redacted)
        as part of the asset's address.
        """
        url = f"{base}/ui/index.html?transport={address_transport or transport}"
        if server is not None:
            url += f"&server={server}"
        if address_transport is not None and address_transport != transport:
            url += f"#transport={transport}"
        return cls(await browser.open(url), browser, transport)

    async def log(self) -> list[str]:
        with contextlib.suppress(Exception):
            return list(await self.page.evaluate("window.desktopLog || []"))
        return []

    async def describe(self) -> str:
        """The page's status, its calls and log, and the console: for failure messages."""
        try:
            status, body = await self.page.evaluate(
                """() => [document.getElementById("status")?.textContent ?? null,
                          document.body ? document.body.innerText.slice(0, 500) : ""]"""
            )
            states: object = await self.states()
        except Exception as e:  # the page itself is gone or broken
            status, body, states = f"(cannot read the page: {e})", "", {}
        if status is None:  # not the desktop page at all (an error answer?)
            status = f"(no #status) {self.page.url} shows: {body}"
        log = "\n".join(await self.log())
        console = "\n".join(self.browser.console[-30:])
        return f"#status: {status}\n--- calls: {states}\n--- log:\n{log}\n--- browser:\n{console}"

    async def wait_status(self, status: str, timeout_ms: int = TIMEOUT_MS) -> None:
        try:
            await self.page.wait_for_selector(
                f'#status[data-status="{status}"]', timeout=timeout_ms
            )
        except Exception as e:
            raise AssertionError(f"the page is not {status!r}:\n{await self.describe()}") from e

    async def states(self) -> dict[str, str]:
        """Each call shown, by id: its state as the DOM shows it."""
        value: dict[str, str] = await self.page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll("[data-call-id]")]
                 .map(r => [r.dataset.callId, r.querySelector("[data-state]").textContent]))"""
        )
        return value

    async def wait_states(self, expected: dict[str, str], timeout_ms: int = TIMEOUT_MS) -> None:
        """Until the page shows (at least) these calls in these states."""
        script = """(expected) => Object.entries(expected).every(([id, state]) => {
            const cell = document.querySelector(`[data-call-id="${id}"] [data-state]`);
            return cell !== null && cell.textContent === state;
        })"""
        try:
            await self.page.wait_for_function(script, arg=expected, timeout=timeout_ms)
        except Exception as e:
            raise AssertionError(
                f"the page never showed {expected}:\n{await self.describe()}"
            ) from e

    async def click(self, call_id: str, operation: str) -> None:
        """Click a call's button (``Answer``, ``InitiateTransfer``, ``CompleteTransfer``)."""
        button = self.page.locator(f'[data-call-id="{call_id}"] button[data-op="{operation}"]')
        try:
            await button.click(timeout=TIMEOUT_MS)
        except Exception as e:
            raise AssertionError(
                f"cannot click {operation} on {call_id} ({str(e).splitlines()[0]}):\n"
                + await self.describe()
            ) from e

    async def notifications(self) -> list[str]:
        """What the page received, in order, as ``"CALLID-SUFFIX STATE"`` (from its log)."""
        out = []
        for line in await self.log():
            _, _, rest = line.partition(" ")
            if rest.startswith("<= /v2/me/calls"):
                *_, suffix, state = rest.split()
                out.append(f"{suffix} {state}")
        return out


# --- relay as a subprocess --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def relay_record(upstream: str, out: Path) -> AsyncIterator[Served]:
    """``relay record --upstream UPSTREAM -o OUT --port 0`` (its own mitmproxy confdir).

    Leaving the block sends SIGTERM, which finishes the cassette, and waits for the exit.
    """
    confdir = out.parent / f".mitmproxy-{out.stem}"
    async with relay_server(
        *("record", "--upstream", upstream, "-o", str(out), "--port", "0"),
        *("--confdir", str(confdir)),
        grace=15,
    ) as served:
        yield served


@contextlib.asynccontextmanager
async def relay_replay(cassette: Path, *args: str) -> AsyncIterator[Served]:
    """``relay replay CASSETTE --port 0 [ARGS]``."""
    async with relay_server("replay", str(cassette), "--port", "0", *args, grace=15) as served:
        yield served


async def finish(served: Served, timeout: float = 20) -> int:
    """SIGTERM a relay we started and wait for it: its exit status."""
    return await served.stop(signal.SIGTERM, timeout)


# --- another origin ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def static_server(root: Path) -> AsyncIterator[str]:
    """Serve ``root`` under ``/ui/`` on a free loopback port; yields ``http://127.0.0.1:PORT``."""
    app = web.Application()
    app.router.add_static("/ui/", root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def eventually(predicate: Any, timeout: float = 10, what: str = "condition") -> None:
    """Poll an (async or plain) predicate until it is true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
