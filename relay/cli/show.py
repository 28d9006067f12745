"""``relay show CASSETTE``: print a cassette as a person reads it, or write it as a page."""

from __future__ import annotations

import click

from relay.cassette import write_atomic
from relay.cli.common import UserError, load_cassette, output_directory, pause_collector
from relay.html import page
from relay.show import render


@click.command("show")
@click.argument("cassette_path", metavar="CASSETTE")
@click.option(
    "--html",
    "html_path",
    metavar="OUT.html",
    help="Write the cassette as a self-contained sequence view (an HTML page that needs no "
    "network) to OUT.html instead of printing it.",
)
def show(cassette_path: str, html_path: str | None) -> None:
    """Print CASSETTE: a header, then one line per exchange and notification in time order."""
    pause_collector()
    if html_path is not None:
        output_directory(html_path)
    cassette = load_cassette(cassette_path)
    if html_path is None:
        for line in render(cassette):
            click.echo(line)
        return
    try:
        write_atomic(html_path, page(cassette).encode("utf-8"))
    except OSError as e:
        raise UserError(f"{html_path}: cannot write ({e.strerror or e})") from e
    click.echo(html_path)
