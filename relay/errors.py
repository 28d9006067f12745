"""The exceptions relay raises, drawn once.

    RelayError                 anything relay reports to a user as one clear line
    ├── CassetteError          a cassette that cannot be read, parsed, validated or upgraded
    ├── BayeuxError            a Bayeux request that is not well-formed (carries an HTTP status)
    ├── RecordError            the recorder cannot do what it was asked (bad option, bad output)
    └── DiffError              a comparison that cannot be made as asked (bad --ignore, --only)

The core raises these; only the edges (the CLI, the aiohttp handlers, the mitmproxy addon)
turn them into exit codes, HTTP answers or log lines.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error relay reports to a user."""


class CassetteError(RelayError):
    """A cassette that cannot be loaded or saved; the message names the file."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class BayeuxError(RelayError):
    """A malformed Bayeux request. ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class RecordError(RelayError):
    """The recorder was asked something it cannot do."""


class DiffError(RelayError):
    """A comparison that cannot be made as asked (bad ``--ignore`` path, unknown ``--only``)."""
