"""``relay replay``: serve a cassette to real desktops and CometD clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys

import click
from aiohttp import web

from relay.cassette import assets_dir
from relay.cli.common import UserError, load_cassette, port_free
from relay.errors import RelayError
from relay.replay import REPLAYER, ReplayOptions, create_app


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


def _release_on_enter(app: web.Application) -> None:
    """Step mode: each line on standard input (Enter) releases the next group."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def on_line() -> None:
        if not sys.stdin.readline():  # end of input: no presenter at this terminal
            loop.remove_reader(fd)
            return
        if not app[REPLAYER].release_next():
            _echo("step: nothing to release now (the desktops have to act first)")

    # stdin may be nothing to wait on (a regular file): the control page still works then.
    with contextlib.suppress(OSError, ValueError, NotImplementedError):
        loop.add_reader(fd, on_line)


async def serve_until_stopped(
    app: web.Application, host: str, port: int, *, step: bool = False
) -> None:
    """Listen, print ``listening on http://HOST:PORT`` (flushed), serve until SIGINT/SIGTERM."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    _echo(f"listening on http://{shown}:{bound[1]}")
    if step:
        _echo(f"step mode: press Enter (or use http://{shown}:{bound[1]}/_relay/) to release")
        _release_on_enter(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


@click.command()
@click.argument("cassette", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on; 0 picks a free one (printed).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Pace: 1 as recorded, 2 twice as fast, 0 no waiting (order kept).",
)
@click.option(
    "--timeout",
    "timeout_ms",
    type=click.IntRange(min=0),
    default=None,
    help="Long-poll timeout advertised to clients, in ms [default: the recorded advice].",
)
@click.option(
    "--keep-origin",
    is_flag=True,
    help="Do not rewrite the recorded server's origin in bodies, notifications and Location.",
)
@click.option(
    "--desktop", default=None, help="Which recorded desktop to replay [default: the first]."
)
@click.option(
    "--subscribe-wait",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a due notification waits for a matching subscription before it is skipped.",
)
@click.option(
    "--step",
    is_flag=True,
    help="Release notifications one group at a time, on Enter or from the control page.",
)
@click.option(
    "--loop",
    is_flag=True,
    help="When a session has played the whole cassette, start again on its next request.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the listening line and errors.")
def replay(
    cassette: str,
    host: str,
    port: int,
    speed: float,
    timeout_ms: int | None,
    keep_origin: bool,
    desktop: str | None,
    subscribe_wait: float,
    step: bool,
    loop: bool,
    quiet: bool,
) -> None:
    """Replay CASSETTE: its REST answers and its CometD notifications, in order."""
    loaded = load_cassette(cassette)
    port_free(host, port)
    options = ReplayOptions(
        speed=speed,
        timeout_ms=timeout_ms,
        keep_origin=keep_origin,
        desktop=desktop,
        subscribe_wait=subscribe_wait,
        step=step,
        loop=loop,
    )
    store = assets_dir(cassette)
    try:
        app = create_app(
            loaded,
            options,
            log=_echo,
            verbose=not quiet,
            assets_dir=store if store.is_dir() else None,
        )
    except RelayError as e:
        raise UserError(f"{cassette}: {e}") from e
    # The cassette lives as long as the server: keep it out of the cyclic garbage collector's
    # walks, and collect less often (thousands of sessions otherwise make full collections,
    # which walk every live object, the largest cost of a big fan-out; see scripts/bench.py).
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    asyncio.run(serve_until_stopped(app, host, port, step=step))
