"""The ``relay`` command: a thin click layer over the core. Each verb lives in its own module
under ``relay/cli/`` and is registered below."""

from __future__ import annotations

import importlib

import click

from relay import __version__

#: module name -> command name, one line per verb.
COMMANDS: dict[str, str] = {
    "show": "show",
    "replay": "replay",
    "record": "record",
    "recover": "recover",
    "diff": "diff",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relay")
def main() -> None:
    """Record and replay Genesys Web Services API v2 sessions, CometD notifications included."""


for _module, _name in COMMANDS.items():
    main.add_command(getattr(importlib.import_module(f"relay.cli.{_module}"), _name))
