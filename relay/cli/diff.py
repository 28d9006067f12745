"""``relay diff A B``: what changed between two recordings of one scenario."""

from __future__ import annotations

import click

from relay import diff as core
from relay.cli.common import UserError, load_cassette, pause_collector
from relay.diff_html import page as render_html
from relay.diff_render import render_json, render_text
from relay.errors import RelayError


@click.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
    help="text for a person, json for CI, html for a self-contained page of A and B side by "
    "side (redirect it to a file: > diff.html).",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="PATH",
    help="Drop this dotted JSON path before comparing, e.g. data.call.monitoring "
    "('*' matches one segment; a key with a dot is quoted: data.userData[\"a.b\"]). Repeatable.",
)
@click.option(
    "--keep-numbers",
    is_flag=True,
    help="Compare phone numbers (renamed like ids) instead of ignoring them.",
)
@click.option(
    "--noise",
    "noise_path",
    metavar="A2",
    help="A second recording of A's version: whatever differs between A and A2 is ignored.",
)
@click.option(
    "--only",
    multiple=True,
    metavar="OPERATION",
    help="Compare only the steps of this operation, e.g. InitiateTransfer. Repeatable.",
)
@click.pass_context
def diff(
    ctx: click.Context,
    a: str,
    b: str,
    fmt: str,
    ignore: tuple[str, ...],
    keep_numbers: bool,
    noise_path: str | None,
    only: tuple[str, ...],
) -> None:
    """Compare two recordings A and B of one scenario, ignoring ids, durations and timestamps.

    Exit status: 0 when equivalent, 1 when different, 2 on error.
    """
    pause_collector()
    try:
        options = core.DiffOptions(
            ignore=tuple(core.PathPattern.parse(p) for p in ignore),
            keep_numbers=keep_numbers,
            only=frozenset(only),
        )
        cassette_a, cassette_b = load_cassette(a), load_cassette(b)
        noise = load_cassette(noise_path) if noise_path is not None else None
        result = core.diff(cassette_a, cassette_b, options, noise=noise)
    except RelayError as e:
        raise UserError(str(e)) from e
    if fmt == "json":
        click.echo(render_json(result), nl=False)
    elif fmt == "html":
        steps_a = core.steps_of(cassette_a, options)
        steps_b = core.named_like(steps_a, core.steps_of(cassette_b, options))
        titles = {"a_title": cassette_a.meta.title, "b_title": cassette_b.meta.title}
        click.echo(render_html(result, steps_a, steps_b, a_name=a, b_name=b, **titles), nl=False)
    else:
        # click.echo drops the colour when standard output is not a terminal.
        click.echo(render_text(result, a_name=a, b_name=b, color=True), nl=False)
    ctx.exit(0 if result.equivalent else 1)
