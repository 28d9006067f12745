"""relay: record and replay Genesys Web Services API v2 sessions, CometD notifications included."""

__version__ = "0.1.0"
