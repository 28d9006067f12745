"""The recording addon for mitmproxy: thin hooks over ``relay.recorder``, ``relay.redact``,
``relay.journal``.

Used by ``relay record`` and directly by mitmproxy::

    mitmdump -q --mode reverse:http://gws:8080 -s relay/record.py --set relay_output=OUT.json

Every hook journals what it saw (redacted) before mitmproxy forwards the message, keeps no flow
and clears ``flow.websocket.messages`` once a frame is journaled. ``done`` (SIGINT, SIGTERM, or
mitmproxy's shutdown) turns the journal into the cassette.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions, http

from relay import __version__, redact
from relay import journal as journal_mod
from relay import recorder as rec
from relay.cassette import DEFAULT_BAYEUX_PATH, Asset, assets_dir
from relay.errors import RelayError

logger = logging.getLogger("relay.record")

_XID = "relay.exchange_id"  # flow.metadata key: the journaled exchange's id
_DONE = "relay.answered"  # flow.metadata key: its answer was journaled
_ROUTE = "relay.route"  # flow.metadata key: how it is recorded (None: not at all)


def _bad_option(message: str) -> Exception:
    error: Exception = exceptions.OptionsError(message)  # type: ignore[no-untyped-call]
    return error


def _items(multidict: Any) -> list[tuple[str, str]]:
    """Every (name, value) of a mitmproxy headers or query multidict, repeats included."""
    return list(multidict.items(multi=True))


class Status:
    """One status line: updated in place on a terminal, plain lines (at most one a tick)
    otherwise."""

    def __init__(self, out: IO[str], enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.tty = enabled and out.isatty()
        self.exchanges = self.notifications = self.assets = self.errors = 0
        self._shown = ""

    def line(self) -> str:
        return (
            f"relay: {self.exchanges} exchanges, {self.notifications} notifications, "
            f"{self.assets} assets, {self.errors} errors"
        )

    def changed(self) -> None:
        if self.tty:
            self.show()

    def show(self, final: bool = False) -> None:
        if not self.enabled:
            return
        text = self.line()
        if text == self._shown and not final:
            return
        self._shown = text
        if self.tty:
            self.out.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()


class Recorder:
    """Records REST exchanges, CometD notifications and the desktop's assets into a cassette."""

    def __init__(self) -> None:
        self.journal: journal_mod.Journal | None = None
        self.out: Path | None = None
        self.rules = redact.DEFAULT_RULES
        self.placeholders = redact.Placeholders()
        self.status = Status(sys.stderr, False)
        self._next = {"x": 0, "n": 0}
        self._ticker: asyncio.Task[None] | None = None
        #: Why finishing the cassette failed (the journal is kept), None when it did not.
        self.finish_error: str | None = None

    # --- options ------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option("relay_output", str, "", "Record a cassette to this file.")
        loader.add_option(
            "relay_redact_header",
            Sequence[str],
            [],
            "More header names whose values are secrets (Authorization, Cookie, Set-Cookie "
            "and X-CSRF-TOKEN always are).",
        )
        loader.add_option(
            "relay_redact_json",
            Sequence[str],
            [],
            "More JSON paths whose values are secrets: a key (anywhere) or dotted keys from "
            "the root, '*' for any key (password-like keys always are).",
        )
        loader.add_option(
            "relay_bayeux_path", str, DEFAULT_BAYEUX_PATH, "The CometD (Bayeux) endpoint."
        )
        loader.add_option("relay_desktop", str, "agent", "The desktop's name in the cassette.")
        loader.add_option(
            "relay_upstream",
            str,
            "",
            "The recorded server's origin (default: the reverse proxy's target). In regular "
            "proxy mode, only requests to this origin are recorded.",
        )
        loader.add_option("relay_status", bool, True, "Show the status line on stderr.")
        loader.add_option("relay_title", str, "", "The cassette's title.")
        loader.add_option("relay_notes", str, "", "Free-form notes kept in the cassette.")

    def configure(self, updated: set[str]) -> None:
        if "relay_redact_header" in updated or "relay_redact_json" in updated:
            try:
                self.rules = redact.rules(
                    headers=ctx.options.relay_redact_header,
                    json_paths=ctx.options.relay_redact_json,
                )
            except ValueError as e:
                raise _bad_option(str(e)) from e
        if "relay_bayeux_path" in updated and not ctx.options.relay_bayeux_path.startswith("/"):
            raise _bad_option("relay_bayeux_path must start with '/'")
        if "relay_output" in updated and ctx.options.relay_output:
            if self.journal is not None:
                raise _bad_option("relay_output cannot change while recording")
            self.out = Path(ctx.options.relay_output)
            if not self.out.parent.is_dir():
                raise _bad_option(f"{self.out.parent}: no such directory")
            if journal_mod.journal_path(self.out).exists():
                raise _bad_option(
                    f"{journal_mod.journal_path(self.out)} exists: a recording to {self.out} "
                    f"is running or was killed (run `relay recover {self.out}`)"
                )
        if "relay_status" in updated:
            self.status = Status(sys.stderr, ctx.options.relay_status)

    # --- lifecycle ----------------------------------------------------------------------

    def running(self) -> None:
        self._open()
        if self.journal is not None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.journal is not None:
                try:  # off the event loop: an fsync may take a while on a busy disk
                    await asyncio.to_thread(self.journal.sync)
                except OSError as e:
                    self.status.errors += 1
                    logger.error("relay: cannot sync the journal (%s)", e)
            if not self.status.tty:
                self.status.show()

    def done(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self.journal is None or self.out is None:
            return
        self.journal.close()
        self.journal = None
        self.status.show(final=True)
        skipped: list[int] = []
        try:
            cassette = journal_mod.finish(self.out, skipped)
        except Exception as e:  # any failure: the journal is kept, say so
            self.finish_error = str(e)
            logger.error("relay: %s (the journal is kept: run `relay recover %s`)", e, self.out)
            return
        if skipped:
            logger.warning("relay: skipped %d unreadable journal line(s)", len(skipped))
        if self.status.enabled:
            n = sum(len(d.events) for d in cassette.desktops)
            print(f"relay: saved {self.out} ({n} events)", file=sys.stderr, flush=True)

    def _open(self) -> None:
        if self.journal is not None or self.out is None:
            return
        try:
            self.journal = journal_mod.Journal(journal_mod.journal_path(self.out))
        except RelayError as e:
            raise _bad_option(str(e)) from e
        self._write(
            rec.start_record(
                at=time.time(),
                upstream=self._upstream(),
                relay_version=__version__,
                desktop=ctx.options.relay_desktop,
                bayeux_path=ctx.options.relay_bayeux_path,
                title=ctx.options.relay_title,
                notes=ctx.options.relay_notes,
            )
        )

    def _upstream(self) -> str:
        if ctx.options.relay_upstream:
            return str(ctx.options.relay_upstream).rstrip("/")
        for mode in ctx.options.mode:
            if mode.startswith("reverse:"):
                return str(mode.removeprefix("reverse:")).rstrip("/")
        return ""

    # --- hooks --------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._route(flow) in (rec.Route.EXCHANGE, rec.Route.ASSET):
            for name in rec.CONDITIONAL_HEADERS:
                flow.request.headers.pop(name, None)

    def request(self, flow: http.HTTPFlow) -> None:
        if self._route(flow) is not rec.Route.EXCHANGE:
            return
        xid = self._id("x")
        flow.metadata[_XID] = xid

        def record() -> dict[str, Any]:
            request = redact.redact_request(
                rec.build_request(
                    method=flow.request.method,
                    path=flow.request.path.split("?", 1)[0],
                    query=_items(flow.request.query),
                    headers=_items(flow.request.headers),
                    content=flow.request.get_content(strict=False),
                ),
                self.rules,
                self.placeholders,
            )
            return rec.request_record(xid, flow.request.timestamp_start, request)

        self._write(record)

    def response(self, flow: http.HTTPFlow) -> None:
        route = self._route(flow)
        if route is None or flow.response is None:
            return
        if route is rec.Route.BAYEUX:
            # arrival at relay, on the same clock as the exchanges' answers (timestamp_end)
            at = flow.response.timestamp_end or time.time()
            self._scan(flow.response.get_content(strict=False) or b"", at)
        elif route is rec.Route.EXCHANGE and _XID in flow.metadata:
            xid, at = flow.metadata[_XID], flow.response.timestamp_end or time.time()

            def record() -> dict[str, Any]:
                response = redact.redact_response(
                    self._response(flow), self.rules, self.placeholders
                )
                return rec.response_record(xid, at, response)

            if self._write(record):
                flow.metadata[_DONE] = True
            self.status.exchanges += 1
        elif route is rec.Route.ASSET:
            self._asset(flow)
        self.status.changed()

    def error(self, flow: http.HTTPFlow) -> None:
        if _XID not in flow.metadata or _DONE in flow.metadata:
            return
        why = flow.error.msg if flow.error is not None else "unknown error"
        if self._write(rec.error_record(flow.metadata[_XID], time.time(), why)):
            flow.metadata[_DONE] = True
        self.status.exchanges += 1
        self.status.errors += 1
        self.status.changed()

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        bayeux = self._route(flow) is rec.Route.BAYEUX
        if bayeux and not message.from_client:  # text or binary: scan_bayeux skips non-JSON
            self._scan(message.content, message.timestamp)
            self.status.changed()
        # mitmproxy keeps every frame for the life of the connection: drop them once journaled.
        flow.websocket.messages.clear()

    # --- helpers ------------------------------------------------------------------------

    def _recorded(self, flow: http.HTTPFlow) -> bool:
        if self.out is None:
            return False
        self._open()
        origin = ctx.options.relay_upstream
        if origin and not any(m.startswith("reverse:") for m in ctx.options.mode):
            parts = urlsplit(str(origin))
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                return False
            host = (parts.hostname or "").lower()
            return flow.request.host.strip("[]").lower() == host and flow.request.port == port
        return True

    def _route(self, flow: http.HTTPFlow) -> rec.Route | None:
        """How ``flow`` is recorded, None when not at all; decided at its first hook and kept
        in its metadata as plain text (``mitmdump -w`` saves metadata: no enums there)."""
        try:
            kept: str = flow.metadata[_ROUTE]
        except KeyError:
            kept = ""
            if self._recorded(flow):
                path, bayeux = flow.request.path, ctx.options.relay_bayeux_path
                kept = rec.route(flow.request.method, path, bayeux).value
            flow.metadata[_ROUTE] = kept
        return rec.Route(kept) if kept else None

    def _id(self, prefix: str) -> str:
        self._next[prefix] += 1
        return f"{prefix}{self._next[prefix]}"

    def _write(self, record: dict[str, Any] | Callable[[], dict[str, Any]]) -> bool:
        """Journal ``record`` (or what building it returns); True when it is in the journal.
        Any failure, building or writing, is counted and logged: the flow goes on."""
        if self.journal is None:
            return False
        try:
            self.journal.append(record() if callable(record) else record)
        except Exception as e:  # never lose the flow over one record
            self.status.errors += 1
            logger.error("relay: cannot journal (%s: %s)", type(e).__name__, e)
            return False
        return True

    def _response(self, flow: http.HTTPFlow) -> Any:
        assert flow.response is not None
        return rec.build_response(
            status=flow.response.status_code,
            reason=flow.response.reason,
            headers=_items(flow.response.headers),
            content=flow.response.get_content(strict=False),
        )

    def _scan(self, content: bytes, at: float) -> None:
        scan = rec.scan_bayeux(content)
        if scan.advice is not None:
            self._write(rec.advice_record(scan.advice))
        for message in scan.notifications:
            clean = redact.redact_message(message, self.rules, self.placeholders)
            if self._write(rec.notification_record(self._id("n"), at, clean)):
                self.status.notifications += 1

    def _asset(self, flow: http.HTTPFlow) -> None:
        assert self.out is not None and flow.response is not None
        try:
            response = redact.redact_response(self._response(flow), self.rules, self.placeholders)
            content = redact.redact_asset(
                flow.response.get_content(strict=False) or b"",
                response.header("content-type") or "",
                self.rules,
                self.placeholders,
            )
            store = assets_dir(self.out)
            digest = journal_mod.store_asset(store, content)
            if self.journal is not None:
                self.journal.track(store / digest)
            asset = Asset(
                path=redact.redact_path(flow.request.path.split("?", 1)[0], self.placeholders),
                sha256=digest,
                status=response.status,
                query=redact.redact_pairs(
                    _items(flow.request.query), self.rules, self.placeholders
                ),
                headers=response.headers,
            )
        except Exception as e:  # counted and logged, like a journal failure
            self.status.errors += 1
            logger.error("relay: cannot store the asset %s (%s)", flow.request.path, e)
            return
        if self._write(rec.asset_record(asset)):
            self.status.assets += 1


addons = [Recorder()]
