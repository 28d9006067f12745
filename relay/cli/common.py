"""What the CLI verbs share: user errors with exit status 2, loading a cassette, checking
where output goes and that a port is free."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import socket
from pathlib import Path

import click

from relay import cassette as cassette_mod
from relay.errors import RelayError


class UserError(click.ClickException):
    """A user mistake (bad cassette, bad option value): one line on stderr, exit status 2."""

    exit_code = 2


def load_cassette(path: str) -> cassette_mod.Cassette:
    """Load a cassette or stop with one clear line naming the file."""
    try:
        return cassette_mod.load(path)
    except RelayError as e:
        raise UserError(str(e)) from e


def output_directory(path: str | os.PathLike[str]) -> None:
    """Stop with one line unless the directory that will hold ``path`` exists (relay never
    creates a directory tree behind a typo)."""
    parent = Path(path).absolute().parent
    if not parent.is_dir():
        raise UserError(f"{parent}: no such directory")


def port_free(host: str, port: int) -> None:
    """Stop with one line when HOST:PORT cannot be listened on (in use, no such address).

    Checked before starting a server whose own error would be noisier (mitmproxy's suggests
    its own options); the server still reports a port taken between this check and its start.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    family, kind, proto, _, address = infos[0]
    try:
        with contextlib.closing(socket.socket(family, kind, proto)) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as e:
        reason = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
        raise UserError(f"cannot listen on {host}:{port}: {reason}") from e


def pause_collector() -> None:
    """Pause the cyclic garbage collector until the command ends.

    ``relay diff`` and ``relay show`` build a few hundred thousand acyclic objects from big
    cassettes; the collector would only rescan them (a quarter of a 10,000-event diff). It is
    turned back on when the command's context closes, so that a command run in-process
    (click's CliRunner, a script calling ``main``) leaves the interpreter as it found it.
    """
    if gc.isenabled():
        gc.disable()
        click.get_current_context().call_on_close(gc.enable)
