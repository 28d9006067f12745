"""``relay recover``: finish the cassette of a killed recording from its journal."""

from __future__ import annotations

import click

from relay.cli.common import UserError
from relay.errors import RelayError


@click.command("recover")
@click.argument("output", type=click.Path(dir_okay=False))
def recover(output: str) -> None:
    """Rebuild the cassette OUTPUT from the journal a killed `relay record` left."""
    from relay import journal

    skipped: list[int] = []
    try:
        cassette = journal.recover(output, skipped)
    except RelayError as e:
        raise UserError(str(e)) from e
    if skipped:
        lines = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        click.echo(
            f"warning: skipped {len(skipped)} unreadable journal line(s) (line {lines})", err=True
        )
    n = sum(len(d.events) for d in cassette.desktops)
    click.echo(f"recovered {output} ({n} events, {len(cassette.assets)} assets)")
