"""What the CLI verbs share: user errors with exit status 2, loading a cassette."""

from __future__ import annotations

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
