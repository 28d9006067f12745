"""``relay show CASSETTE``: print a cassette as a person reads it."""

from __future__ import annotations

import click

from relay.cli.common import load_cassette
from relay.show import render


@click.command("show")
@click.argument("cassette_path", metavar="CASSETTE")
def show(cassette_path: str) -> None:
    """Print CASSETTE: a header, then one line per exchange and notification in time order."""
    for line in render(load_cassette(cassette_path)):
        click.echo(line)
