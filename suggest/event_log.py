"""An append-only, durable event log: once `append` returns, the batch is on disk.

    <directory>/events-000001.jsonl, events-000002.jsonl, ...   one record per line (`suggest.events`)

`append` writes a batch with one write(2) and fsyncs before it returns; appends that arrive while
an fsync runs wait for the next one and share it (group commit). A file is closed at `max_bytes`
and the next one begun. Opening the log cuts away a torn last line left by a crash mid-write, so
every file reads back with `read_events`. One process writes a directory at a time (a lock file
says so). Of a batch whose `append` never returned, all, some or none of the events may be on
disk; a client that retries it may log them twice (dedupe on request_id downstream).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from pathlib import Path
from typing import Iterator, Sequence

from suggest.events import Event, encode, read_events

__all__ = ["EventLog"]

log = logging.getLogger("keystroke")
_NAME = re.compile(r"events-(\d{6,})\.jsonl")


class EventLog:
    def __init__(self, directory: Path | str, max_bytes: int = 64 << 20, group_commit: bool = True):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory, self.max_bytes, self.group_commit = Path(directory), max_bytes, group_commit
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:  # two writers would interleave batches and cut each other's "torn" tails
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ValueError(f"{self.directory} is in use by another writer; give each process its own events "
                             f"directory") from None
        self._cond = threading.Condition()
        self._written = self._synced = 0   # batches written to the file / known to be on disk
        self._syncing = False              # a thread is in fsync, with the lock released
        self._failed: OSError | None = None
        files = self.files()
        if files:
            _repair(files[-1])
        self._open(files[-1] if files else self._path(1))

    def files(self) -> list[Path]:
        """The log's files, oldest first."""
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.fullmatch(p.name))]
        return [p for _, p in sorted(found)]

    def records(self) -> Iterator[Event]:
        """Every record, oldest first (for replay at start-up, not while appending)."""
        for path in self.files():
            yield from read_events(path)

    def append(self, records: Sequence[Event]) -> int:
        """Write the records and return their count once they are on disk; OSError if they may not be."""
        if not records:
            return 0
        data = "".join(encode(r) + "\n" for r in records).encode("utf-8")
        with self._cond:
            while self._size and self._size + len(data) > self.max_bytes:
                if self._syncing:  # the file being synced stays open until its fsync returns
                    self._cond.wait()
                else:
                    self._rotate()
            self._write(data)
            self._written += 1
            if self.group_commit:
                self._sync_through(self._written)
            else:  # one fsync per batch, under the lock: the baseline group commit is measured against
                try:
                    os.fsync(self._fd)
                except OSError as e:
                    self._failed = e
                    raise
                self._synced = self._written
        return len(records)

    def close(self) -> None:
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._fd >= 0:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    os.close(self._lock_fd)  # releases the lock
                    self._fd = -1

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _path(self, number: int) -> Path:
        return self.directory / f"events-{number:06d}.jsonl"

    def _open(self, path: Path) -> None:
        created = not path.exists()
        self._current = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if created:  # the new name must survive a power cut too
            _fsync_directory(self.directory)

    def _rotate(self) -> None:
        self._check()
        os.fsync(self._fd)
        self._synced = self._written
        os.close(self._fd)
        self._open(self._path(int(_NAME.fullmatch(self._current.name).group(1)) + 1))

    def _check(self) -> None:
        if self._fd < 0:
            raise RuntimeError("the event log is closed")
        if self._failed is not None:  # after a failed fsync the kernel may have dropped the pages: stop
            raise OSError(f"the event log failed earlier ({self._failed}); restart the service")

    def _write(self, data: bytes) -> None:
        self._check()
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError:
            try:  # a partial batch would leave a torn line between whole ones
                os.ftruncate(self._fd, self._size)
            except OSError as e:
                self._failed = e
            raise
        self._size += len(data)

    def _sync_through(self, batch: int) -> None:
        """Return once batch `batch` is on disk: fsync, or wait for the fsync of a thread already in it."""
        while self._synced < batch:
            self._check()
            if self._syncing:
                self._cond.wait()
                continue
            self._syncing, target, fd, error = True, self._written, self._fd, None
            self._cond.release()
            try:
                os.fsync(fd)  # covers every batch written so far, not only ours
            except OSError as e:
                error = e
            finally:
                self._cond.acquire()
                self._syncing = False
                self._cond.notify_all()
            if error is not None:
                self._failed = error
            else:
                self._synced = max(self._synced, target)


def _repair(path: Path) -> None:
    """Cut the file after its last newline: a crash mid-write leaves at most one incomplete line."""
    with open(path, "r+b") as f:
        end = pos = f.seek(0, os.SEEK_END)
        keep = 0
        while pos > 0:
            step = min(1 << 16, pos)
            f.seek(pos - step)
            newline = f.read(step).rfind(b"\n")
            if newline >= 0:
                keep = pos - step + newline + 1
                break
            pos -= step
        if keep < end:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
            log.warning("%s: cut a torn last line (%d bytes) left by a crash", path, end - keep)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
