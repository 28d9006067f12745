"""``relay record``: mitmproxy in reverse (or regular) proxy mode with the recording addon."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from relay.cli.common import UserError, output_directory, port_free
from relay.errors import RelayError


def _upstream(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter("expected http://HOST[:PORT] or https://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise click.BadParameter("give the server's origin only (no path)")
    return f"{parts.scheme}://{parts.netloc}"


class _Announce:
    """Prints ``listening on http://HOST:PORT`` once mitmproxy listens (the real port)."""

    def __init__(self, host: str) -> None:
        self.host = host

    def running(self) -> None:
        from mitmproxy import ctx

        addons: Any = ctx.master.addons
        addrs = addons.get("proxyserver").listen_addrs()
        port = addrs[0][1] if addrs else 0
        host = f"[{self.host}]" if ":" in self.host else self.host
        print(f"listening on http://{host}:{port}", flush=True)


async def _record(
    options: dict[str, Any], recorder_options: dict[str, Any], host: str, recorder: Any
) -> None:
    from mitmproxy import options as mitm_options
    from mitmproxy.tools.dump import DumpMaster

    opts = mitm_options.Options()
    # No termlog: stdout's first line is ours. Warnings and errors still go to stderr.
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    addons: Any = master.addons
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("relay record: %(message)s"))
    logging.getLogger().addHandler(handler)
    addons.add(recorder, _Announce(host))
    update: Any = opts.update  # options exist once the addons that declare them are loaded
    update(**options, **recorder_options)
    loop = asyncio.get_running_loop()
    # SIGTERM must reach done() so that the cassette is finished, like SIGINT.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    await master.run()


@click.command("record")
@click.option(
    "--upstream", required=True, callback=_upstream, help="The GWS server, e.g. http://gws:8080."
)
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Cassette."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0: any."
)
@click.option(
    "--mode",
    type=click.Choice(["reverse", "regular"]),
    default="reverse",
    show_default=True,
    help="reverse: desktops connect to relay as if it were the server; regular: desktops use "
    "relay as their HTTP proxy.",
)
@click.option("--insecure", is_flag=True, help="Accept the upstream's self-signed certificate.")
@click.option("--redact-header", multiple=True, metavar="NAME", help="Another secret header.")
@click.option("--redact-json", multiple=True, metavar="PATH", help="Another secret JSON path.")
@click.option(
    "--confdir",
    type=click.Path(file_okay=False),
    default=None,
    help="mitmproxy's directory (its CA); default ~/.mitmproxy.",
)
@click.option("--title", default="", help="The cassette's title (shown by relay show).")
@click.option("--notes", default="", help="Free-form notes kept in the cassette.")
@click.option(
    "--desktop", default="agent", show_default=True, help="The desktop's name in the cassette."
)
@click.option("--quiet", "-q", is_flag=True, help="No status line.")
def record(
    upstream: str,
    output: str,
    host: str,
    port: int,
    mode: str,
    insecure: bool,
    redact_header: tuple[str, ...],
    redact_json: tuple[str, ...],
    confdir: str | None,
    title: str,
    notes: str,
    desktop: str,
    quiet: bool,
) -> None:
    """Record a desktop's session with UPSTREAM into a cassette (mitmproxy underneath)."""
    from relay import redact
    from relay.journal import journal_path
    from relay.record import Recorder

    try:
        redact.rules(headers=redact_header, json_paths=redact_json)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--redact-header/--redact-json") from e
    out = Path(output)
    output_directory(out)
    if journal_path(out).exists():
        raise UserError(
            f"{journal_path(out)} exists: a recording to {out} is running or was killed "
            f"(run `relay recover {out}`)"
        )
    port_free(host, port)
    options: dict[str, Any] = {
        "mode": [f"reverse:{upstream}" if mode == "reverse" else "regular"],
        "listen_host": host,
        "listen_port": port,
        "ssl_insecure": insecure,
        # One request, one upstream connection attempt: an upstream that is down answers that
        # request with a 502 instead of closing the desktop's connection.
        "connection_strategy": "lazy",
    }
    if confdir is not None:
        Path(confdir).mkdir(parents=True, exist_ok=True)
        options["confdir"] = confdir
    recorder_options = {
        "relay_output": str(out),
        "relay_upstream": upstream,
        "relay_redact_header": list(redact_header),
        "relay_redact_json": list(redact_json),
        "relay_status": not quiet,
        "relay_title": title,
        "relay_notes": notes,
        "relay_desktop": desktop,
    }
    recorder = Recorder()
    try:
        asyncio.run(_record(options, recorder_options, host, recorder))
    except RelayError as e:
        raise UserError(str(e)) from e
    except SystemExit as e:  # mitmproxy's errorcheck, after printing why startup failed
        raise UserError(f"cannot record on {host}:{port} (see above)") from e
    except Exception as e:  # mitmproxy's OptionsError and the like: one line, exit 2
        if type(e).__name__ == "OptionsError":
            raise UserError(str(e)) from e
        raise
    if recorder.finish_error is not None:
        # The addon logged why; the cassette at OUT (if any) is NOT this recording.
        click.echo(
            f"relay record: the cassette was not saved ({recorder.finish_error}); the journal "
            f"is kept: run `relay recover {out}`",
            err=True,
        )
        sys.exit(1)
    if not out.exists():
        sys.exit(1)
