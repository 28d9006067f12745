"""The ``relay`` command: a thin click layer over the core. Each verb lives in its own module
under ``relay/cli/`` and is registered below.

Verbs are imported when they run, not at start-up: ``relay show`` or ``relay diff`` need
neither aiohttp nor mitmproxy, which take most of a second to import.
"""

from __future__ import annotations

import importlib

import click

from relay import __version__

#: verb -> the module under relay/cli/ that defines it (as a click command of the same name).
COMMANDS: dict[str, str] = {
    "show": "show",
    "replay": "replay",
    "record": "record",
    "recover": "recover",
    "diff": "diff",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (the pattern of click's docs)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(f"relay.cli.{module}"), cmd_name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relay")
def main() -> None:
    """Record and replay Genesys Web Services API v2 sessions, CometD notifications included."""
