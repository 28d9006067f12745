"""The journal: what relay writes while it records, so that nothing reaching the desktop is lost.

``OUT.journal`` beside the cassette holds one JSON record per line (``relay.recorder`` lists
them). Each record is handed to the operating system with one ``write()`` on an ``O_APPEND``
descriptor before the response it belongs to is forwarded: a SIGKILL loses nothing that reached
the desktop. ``fsync`` runs on a timer (the owner calls :meth:`Journal.sync`), so a power cut
loses at most the last interval.

Finishing (:func:`finish`) builds the cassette from the journal, saves it atomically and removes
the journal. :func:`recover` does the same for a journal left by a killed run; a truncated last
line (the write the kill interrupted) is tolerated, and so is an unreadable line in the middle
(skipped and counted: ``relay recover`` says how many). A write that fails part way (a full
disk, a file size limit) is cut back to the record's start, so the journal stays whole lines.

Assets go to the content-addressed store ``<stem>.assets/<sha256>`` (:func:`store_asset`), each
content once, written atomically before its journal record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from relay import cassette as cassette_mod
from relay.errors import RecordError
from relay.recorder import cassette_from_records, sanitise


def journal_path(out: str | os.PathLike[str]) -> Path:
    """Where the journal of a recording to ``out`` lives: ``OUT.journal``."""
    p = Path(out)
    return p.with_name(p.name + ".journal")


class Journal:
    """An append-only file of JSON records."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
            self._fd: int | None = os.open(self.path, flags, 0o600)
            # Held while recording, released by the kernel however the process ends: recover
            # uses it to tell a killed recording from a running one.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileExistsError as e:
            raise RecordError(
                f"{self.path}: a journal is already there (a recording is running, or one was "
                f"killed: run `relay recover` on its output first)"
            ) from e
        except OSError as e:
            raise RecordError(f"{self.path}: cannot create the journal ({e.strerror})") from e
        self._dirty = False
        self._unsynced: set[Path] = set()  # asset files written since the last sync

    def append(self, record: dict[str, Any]) -> None:
        """Hand one record to the operating system (one ``write``; no fsync). A record orjson
        refuses (undecodable bytes, a huge integer) goes through ``relay.recorder.sanitise``.
        Raises OSError when the write fails, after cutting off what of it was written."""
        if self._fd is None:
            raise RecordError(f"{self.path}: the journal is closed")
        try:
            line = orjson.dumps(record) + b"\n"
        except orjson.JSONEncodeError:
            line = orjson.dumps(sanitise(record)) + b"\n"
        view = memoryview(line)
        written = os.write(self._fd, view)
        if written < len(line):
            # Rare (a full disk, a size limit): write the rest, or cut the torn record off.
            start = os.lseek(self._fd, 0, os.SEEK_END) - written
            try:
                view = view[written:]
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
                raise
        self._dirty = True

    def track(self, path: str | os.PathLike[str]) -> None:
        """Have the next :meth:`sync` flush this file (an asset) and its directory too."""
        self._unsynced.add(Path(path))
        self._dirty = True

    def sync(self) -> None:
        """Flush the journal, and the assets written since the last sync, to the disk if
        anything was written since then. Runs off the event loop (``asyncio.to_thread``):
        records appended meanwhile wait for the next sync."""
        if self._fd is not None and self._dirty:
            self._dirty = False
            files, self._unsynced = self._unsynced, set()
            os.fsync(self._fd)
            _fsync_paths(files)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
                files, self._unsynced = self._unsynced, set()
                _fsync_paths(files)
            os.close(self._fd)
            self._fd = None


def _fsync_paths(files: set[Path]) -> None:
    """fsync each file, then each directory holding one (so that its new name is durable)."""
    for path in (*sorted(files), *sorted({f.parent for f in files})):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_records(
    path: str | os.PathLike[str], skipped: list[int] | None = None
) -> list[dict[str, Any]]:
    """The journal's records. A torn last line is dropped silently (the write a kill cut
    short); an unreadable line further on is skipped and its (1-based) number appended to
    ``skipped``. A file whose first line is not a start record is not a journal: an error."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RecordError(f"{path}: cannot read the journal ({e.strerror or e})") from e
    lines = data.split(b"\n")
    records: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("t"), str):
            if not records:
                break  # the first line decides whether this is a journal at all
            if i != len(lines) - 1 and skipped is not None:  # not the last, torn write
                skipped.append(i + 1)
            continue
        records.append(record)
    if not records or records[0].get("t") != "start":
        raise RecordError(f"{path}: not a relay journal (no start record)")
    return records


def build(
    journal: str | os.PathLike[str],
    out: str | os.PathLike[str],
    skipped: list[int] | None = None,
) -> cassette_mod.Cassette:
    """Build the cassette from a journal and save it to ``out`` atomically; keep the journal.
    The numbers of unreadable lines skipped go to ``skipped``."""
    try:
        cassette = cassette_from_records(read_records(journal, skipped))
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"{journal}: a journal record is malformed ({e!r})") from e
    cassette_mod.save(cassette, out)
    return cassette


def finish(out: str | os.PathLike[str], skipped: list[int] | None = None) -> cassette_mod.Cassette:
    """Turn ``OUT.journal`` into the cassette ``OUT`` and remove the journal."""
    jpath = journal_path(out)
    cassette = build(jpath, out, skipped)
    jpath.unlink()
    return cassette


def recover(out: str | os.PathLike[str], skipped: list[int] | None = None) -> cassette_mod.Cassette:
    """Rebuild ``OUT`` from the journal left by a killed recording (then remove the journal)."""
    jpath = journal_path(out)
    try:
        fd = os.open(jpath, os.O_RDONLY)
    except FileNotFoundError as e:
        raise RecordError(f"{jpath}: no journal to recover (nothing was recorded to {out}?)") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        raise RecordError(f"{jpath}: a running `relay record` is still writing it") from e
    finally:
        os.close(fd)
    return finish(out, skipped)


def store_asset(store: str | os.PathLike[str], content: bytes) -> str:
    """Put ``content`` in the content-addressed store (once) and return its sha256."""
    digest = hashlib.sha256(content).hexdigest()
    target = Path(store) / digest
    if not target.exists():
        # Temporary file then rename, like cassette.write_atomic, but without an fsync per
        # asset: a desktop loads hundreds of them at login. The recorder has the journal's
        # timer flush them (Journal.track), for power cuts.
        tmp = target.with_name(f".{digest}.{os.getpid()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(content)
            os.replace(tmp, target)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise RecordError(f"{target}: cannot write the asset ({e.strerror or e})") from e
    return digest
