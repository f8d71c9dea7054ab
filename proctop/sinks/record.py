"""``--record DIR``: the ``--json`` stream kept on disk as rotating gzip segments.

A segment is one gzip stream, ``proctop-<UTC start>-<pid>.jsonl.gz``, that
starts with the ``--json`` header line; the names sort in time order, so a
directory read in name order is the record in time order, across restarts.

Flush policy (what a crash can cost): lines are compressed as they come and
the compressor is flushed with ``Z_SYNC_FLUSH`` at most once a second (and
whenever 256 KiB, or a quarter of a segment, of compressed output waits), and
only then written, in one piece. Every write therefore ends on a sync point:
a SIGKILL loses at most the last second, and a segment cut anywhere (a kill
mid-write, a power loss) decodes up to its last whole line (``CaptureLines``
reads such a segment without complaint). Segments are fsync'ed when they are closed, not per
second: on a power loss the page cache's last seconds are the price of not
waking the disk every second.

Bounds: a new segment every hour or every tenth of ``--record-max-size``;
before each write the oldest segments in DIR are deleted until the total
(this run's and earlier runs') stays within the size, and ``--record-max-age``
deletes segments whose last write is older than that.

A write that fails (a full disk, a removed directory) is one line on stderr;
events are then counted, not kept, and once a write succeeds again a new
segment begins with a ``lost`` record carrying that count.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import re
import stat
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from proctop import safefile
from proctop.model.events import Event
from proctop.sinks.stream import Sink
from proctop.sources.stored import GZIP_WBITS

# The reading half lives in proctop.sources.stored (replay streams it, and the sources may not
# import this module); its names stay importable from here, where the writer defines the format.
from proctop.sources.stored import MAX_LINE as MAX_LINE
from proctop.sources.stored import SEGMENT_RE as SEGMENT_RE
from proctop.sources.stored import CaptureLines as CaptureLines
from proctop.sources.stored import RecordError as RecordError
from proctop.sources.stored import is_stored as is_stored
from proctop.sources.stored import segment_paths as segment_paths
from proctop.sources.stored import stored_segments as stored_segments

DEFAULT_MAX_SIZE = 100 * 1024**2
MIN_MAX_SIZE = 64 * 1024
SEGMENTS_PER_MAX_SIZE = 10
SEGMENT_SECONDS = 3600.0
FLUSH_SECONDS = 1.0
FLUSH_BYTES = 256 * 1024


# --- arguments -----------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


#: Bounds of the size and duration options: far above any use, far below float overflow
#: (400 nines were an OverflowError).
MAX_SIZE = 1 << 60
MAX_DURATION = 100 * 365 * 86400.0
_MAX_NUMBER_TEXT = 40


def parse_size(text: str) -> int:
    """``100M``, ``1.5G``, ``500KiB``, ``65536``: bytes (powers of 1024), at least 64K."""
    m = _SIZE_RE.match(text) if len(text) <= _MAX_NUMBER_TEXT else None
    size_f = float(m.group(1)) * _UNITS[m.group(2).lower()] if m else float("inf")
    if not size_f <= MAX_SIZE:
        shown = text if len(text) <= _MAX_NUMBER_TEXT else text[:20] + "..."
        raise argparse.ArgumentTypeError(f"not a size: {shown!r} (examples: 100M, 2G, 512K; at most 1024P)")
    size = int(size_f)
    if size < MIN_MAX_SIZE:
        raise argparse.ArgumentTypeError(f"size {text!r} is below the minimum of 64K")
    return size


def parse_duration(text: str) -> float:
    """``30s``, ``30m``, ``2h``, ``7d``, ``1w`` (a bare number is seconds): seconds, more than 0."""
    m = _DURATION_RE.match(text) if len(text) <= _MAX_NUMBER_TEXT else None
    seconds = float(m.group(1)) * _SECONDS[m.group(2).lower()] if m else 0.0
    if not 0 < seconds <= MAX_DURATION:
        shown = text if len(text) <= _MAX_NUMBER_TEXT else text[:20] + "..."
        raise argparse.ArgumentTypeError(f"not a duration: {shown!r} (examples: 30m, 2h, 7d; at most 100 years)")
    return seconds


def parse_time(text: str, now: float | None = None) -> float:
    """An ISO 8601 time (local unless it names its zone) or a duration ago (``2h``): epoch seconds."""
    try:
        return (time.time() if now is None else now) - parse_duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()  # naive = local time
    except (ValueError, OverflowError, OSError):
        shown = text if len(text) <= _MAX_NUMBER_TEXT else text[:20] + "..."
        raise argparse.ArgumentTypeError(
            f"not a time: {shown!r} (an ISO time like 2026-11-27T04:00 or a duration ago like 2h)"
        ) from None


def within(events: Iterable[Event], since: float | None, until: float | None) -> Iterator[Event]:
    """The events with ``since <= ts <= until`` (either bound may be ``None``)."""
    for ev in events:
        if (since is None or ev.ts >= since) and (until is None or ev.ts <= until):
            yield ev


# --- writing ---------------------------------------------------------------------


#: Modes of what the recorder creates, whatever the umask: a record is the process
#: activity of the machine (argv can hold secrets), readable by its owner's group at most.
RECORD_DIR_MODE = 0o750
SEGMENT_MODE = 0o640
#: The file a recorder holds an exclusive ``flock`` on while it writes into the directory.
LOCK_NAME = ".proctop.lock"


def open_record_directory(directory: str | Path) -> int:
    """A file descriptor of ``directory``, created if needed, that another user does not control
    (``proctop.safefile``); else a one-line ``RecordError``."""
    directory = Path(directory)
    try:
        return safefile.open_directory(directory, RECORD_DIR_MODE)
    except safefile.UnsafePathError as exc:
        raise RecordError(f"--record: {exc}") from None
    except (FileExistsError, NotADirectoryError):
        raise RecordError(f"--record: {directory} is not a directory") from None
    except OSError as exc:
        raise RecordError(f"--record: cannot write to {directory}: {exc.strerror}") from None


def lock_directory(dir_fd: int, directory: str | Path) -> int:
    """Take the directory's lock (``LOCK_NAME``) for this process: its file descriptor.

    Two recorders in one directory each deleted the other's segments as old
    ones (``_make_room``): the second is refused with one line, status 2.
    """
    try:
        fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, SEGMENT_MODE, dir_fd=dir_fd)
    except OSError as exc:
        raise RecordError(f"--record: cannot lock {directory}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RecordError(f"--record: {Path(directory) / LOCK_NAME} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f"another proctop (pid {holder})" if holder.isdigit() else "another proctop"
            raise RecordError(f"--record: {who} is recording to {directory}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_directory(directory: str | Path) -> None:
    """Create ``directory`` if needed, prove it writable and free, or raise a one-line ``RecordError``."""
    dir_fd = open_record_directory(directory)
    try:
        probe = f".proctop-write-test-{os.getpid()}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
            os.close(fd)
            os.unlink(probe, dir_fd=dir_fd)
        except OSError as exc:
            raise RecordError(f"--record: cannot write to {directory}: {exc.strerror}") from None
        os.close(lock_directory(dir_fd, directory))  # taken and given back: a second recorder learns it now
    finally:
        os.close(dir_fd)


class SegmentWriter(Sink):
    """Rotating, size-bounded gzip segments of JSON lines (see the module docstring).

    A sink (``proctop.sinks.stream``): ``write`` takes every batch polled (on the
    consumer thread), an empty one too, so that a quiet minute is still flushed
    within a second (``tick``); ``close`` finishes the segment.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_age: float | None = None,
        segment_seconds: float = SEGMENT_SECONDS,
        clock: Callable[[], float] = time.time,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.max_size = max_size
        self.max_age = max_age
        self.segment_limit = max(max_size // SEGMENTS_PER_MAX_SIZE, 4096)
        # A write never exceeds a quarter of a segment, so a segment overshoots its limit by little
        # and one write always fits in the total after the oldest segments are gone.
        self.flush_bytes = min(FLUSH_BYTES, self.segment_limit // 4)
        self.segment_seconds = segment_seconds
        self.clock = clock
        self.warn = warn or (lambda msg: print(f"proctop: {msg}", file=sys.stderr, flush=True))
        #: The header line's fields, from ``start`` (the stream's header, once the source started).
        self.header: dict[str, object] = {}
        self._begun = False
        self.dropped = 0  # events not written since the last failure (the next ``lost`` record)
        self.dropped_total = 0
        self.written = 0  # events written in whole
        #: The directory, held open: every file in it is opened, listed and deleted through this
        #: descriptor (a directory renamed or swapped for a symlink cannot redirect a write).
        self._dir_fd: int | None = None
        self._lock_fd: int | None = None
        self._open_directory()
        self._segment_events = 0  # events written into the current segment's file
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._stamp_us = 0
        self._z: zlib._Compress | None = None
        self._buf = bytearray()  # compressed, not yet written
        self._pending = 0  # events in _buf and in the compressor
        self._dirty = False  # compressed since the last sync point
        self._last_flush = clock()
        self._failing = False
        self._warned = False
        self._closed = False
        self._sizes: dict[Path, int] = self._existing_segments()

    def _open_directory(self) -> None:
        """Open (or create) the directory and take its lock; ``RecordError`` if not."""
        dir_fd = open_record_directory(self.directory)
        try:
            self._lock_fd = lock_directory(dir_fd, self.directory)
        except BaseException:
            os.close(dir_fd)
            raise
        self._dir_fd = dir_fd

    def _close_directory(self) -> None:
        for fd in (self._lock_fd, self._dir_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._lock_fd = self._dir_fd = None

    def _existing_segments(self) -> dict[Path, int]:
        """The segments already in the directory (earlier runs'), regular files only, by size."""
        sizes = {}
        assert self._dir_fd is not None
        for name in sorted(os.listdir(self._dir_fd)):
            if not SEGMENT_RE.match(name):
                continue
            try:
                st = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                sizes[self.directory / name] = st.st_size
        return sizes

    def _lost_place(self) -> str | None:
        """Why what is written no longer lands where it should, or None (checked once a flush).

        ``removed``: the directory or the segment was deleted, and the segment's events with
        it. ``moved``: the directory is no longer at its path (renamed, or swapped for
        another): what was written is intact, but later writes must not go there.
        """
        if self._dir_fd is None:
            return None
        try:
            held = os.fstat(self._dir_fd)
            if held.st_nlink == 0:
                return "removed"
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                return "removed"
            there = os.stat(self.directory)
        except OSError:
            return "moved"
        if (there.st_dev, there.st_ino) != (held.st_dev, held.st_ino):
            return "moved"
        return None

    # the consumer interface ------------------------------------------------------

    def start(self, header: dict[str, object]) -> None:
        """Begin the first segment with ``header`` (the ``--json`` header) and write it at once.

        At once, so that a recorder on a quiet machine shows in DIR that it
        runs, and a write error shows before the first event.
        """
        self.header = header
        self._begun = True
        self._start_segment()
        self.flush()

    def write(self, events: list[Event]) -> None:
        """Record ``events`` (or count them as dropped while writing fails); flush when due."""
        if self._closed:
            return
        if not self._begun:
            self.start({})
        if events:
            if self._failing:
                self.dropped += len(events)
                self.dropped_total += len(events)
            else:
                self._compress(b"".join(ev.to_line() for ev in events), len(events))
        self.tick()

    def tick(self) -> None:
        now = self.clock()
        if now - self._last_flush >= FLUSH_SECONDS or len(self._buf) >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Sync-flush the compressor and write everything compressed so far, in one piece."""
        self._last_flush = self.clock()
        if self._failing:
            self._recover()
            return
        lost = self._lost_place()
        if lost == "removed":  # the segment's events went with it: counted, and said once
            self.dropped += self._segment_events
            self.dropped_total += self._segment_events
            self._segment_events = 0
            self._fail(OSError(f"{self.directory} or its segment was removed"))
            self._close_directory()
            return
        if lost == "moved":  # finish the segment where it is; later writes go to the path again
            if self._z is not None and self._dirty:
                self._buf += self._z.flush(zlib.Z_SYNC_FLUSH)
            self._finish_segment()
            self._close_directory()
            self._fail(OSError(f"{self.directory} was moved or replaced"))
            return
        if self._z is None:
            return
        if self._dirty:  # a sync point costs 5 bytes: none for a quiet second
            self._buf += self._z.flush(zlib.Z_SYNC_FLUSH)
            self._dirty = False
        self._write_buffer()
        if self._fd is not None and (
            self._size >= self.segment_limit or self._last_flush - self._opened >= self.segment_seconds
        ):
            self._finish_segment()
        self._expire()

    def close(self) -> None:
        """Write what is left, end the gzip stream and fsync. Idempotent."""
        if self._closed:
            return
        if self._failing:
            self._recover()
        if self._z is not None and not self._failing:
            self._buf += self._z.flush(zlib.Z_SYNC_FLUSH)
            self._write_buffer()
        if self._fd is not None:
            self._finish_segment()
        if self.dropped:
            self.warn(f"{self.dropped} events were not recorded in {self.directory}")
        self._close_directory()
        self._closed = True

    # segments --------------------------------------------------------------------

    def _compress(self, data: bytes, n_events: int) -> None:
        if self._z is None:
            self._start_segment()
        assert self._z is not None  # _start_segment made one
        self._buf += self._z.compress(data)
        self._pending += n_events
        self._dirty = True

    def _start_segment(self) -> None:
        """A new compressor whose first line is the header; the file is created at the first write."""
        self._z = zlib.compressobj(6, zlib.DEFLATED, GZIP_WBITS)
        now = self.clock()
        self._opened = now
        # Names must sort in start order and never repeat within a run, even for
        # two segments begun in the same microsecond (or a clock that steps back).
        self._stamp_us = max(int(now * 1e6), self._stamp_us + 1)
        stamp = datetime.fromtimestamp(self._stamp_us / 1e6, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self._path = self.directory / f"proctop-{stamp}-{os.getpid()}.jsonl.gz"
        self._size = 0
        head = {**self.header, "ts": now}
        self._buf += self._z.compress(json.dumps(head, separators=(",", ":")).encode("ascii") + b"\n")
        self._dirty = True

    def _write_buffer(self) -> None:
        """Write ``_buf`` whole or not at all (the file is cut back to where it was)."""
        if not self._buf:
            return
        data = bytes(self._buf)
        assert self._path is not None  # bytes are compressed only into a started segment
        try:
            self._make_room(len(data))
            if self._fd is None:
                if self._dir_fd is None:
                    raise FileNotFoundError(errno.ENOENT, f"{self.directory} is not open")
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                self._fd = os.open(self._path.name, flags, SEGMENT_MODE, dir_fd=self._dir_fd)
                os.fchmod(self._fd, SEGMENT_MODE)  # the umask took bits away
                self._sizes[self._path] = 0
                self._segment_events = 0
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self._fail(exc)
            return
        self._size += len(data)
        self._sizes[self._path] = self._size
        self._buf.clear()
        self.written += self._pending
        self._segment_events += self._pending
        self._pending = 0

    def _fail(self, exc: OSError) -> None:
        """Drop what was not written, keep the segment readable, and wait for space."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._size)  # back to the last sync point
            except OSError:
                pass
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self._path is not None and self._size == 0:
            self._unlink(self._path)
            self._sizes.pop(self._path, None)
        self.dropped += self._pending
        self.dropped_total += self._pending
        self._pending = 0
        self._buf.clear()
        self._z = None
        self._path = None
        if not self._warned:
            self._warned = True
            self.warn(
                f"recording to {self.directory} failed: {exc.strerror or exc}; counting events until it can write again"
            )
        self._failing = True

    def _recover(self) -> None:
        """Try a new segment that starts with a ``lost`` record of what was dropped."""
        if self._dir_fd is None:  # removed or moved: the path again, made anew if need be
            try:
                self._open_directory()
            except RecordError:
                return  # still failing: counted until it can write again
        self._failing = False
        if self.dropped:
            lost = Event(ts=self.clock(), event="lost", count=self.dropped)
            self._compress(lost.to_line(), 0)
        else:
            self._start_segment()
        assert self._z is not None  # _compress or _start_segment made one
        self._buf += self._z.flush(zlib.Z_SYNC_FLUSH)
        self._write_buffer()
        if not self._failing:
            self.dropped = 0
            self._warned = False

    def _finish_segment(self) -> None:
        if self._z is not None:
            self._buf += self._z.flush(zlib.Z_FINISH)
            self._write_buffer()
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
        self._fd = None
        self._z = None
        self._path = None

    def _make_room(self, incoming: int) -> None:
        """Delete the oldest segments (never the current one) until ``incoming`` more bytes fit."""
        total = sum(self._sizes.values())
        for path in sorted(self._sizes, key=lambda p: p.name):
            if total + incoming <= self.max_size:
                break
            if path == self._path:
                continue
            total -= self._sizes.pop(path)
            self._unlink(path)

    def _unlink(self, path: Path) -> None:
        """Delete a segment of the directory (through its descriptor); gone already is fine."""
        if self._dir_fd is None:
            return
        try:
            os.unlink(path.name, dir_fd=self._dir_fd)
        except OSError:  # gone already, or another user's file in a sticky directory
            pass

    def _expire(self) -> None:
        if self.max_age is None:
            return
        limit = self.clock() - self.max_age
        for path in list(self._sizes):
            if path == self._path or self._dir_fd is None:
                continue
            try:
                if os.stat(path.name, dir_fd=self._dir_fd, follow_symlinks=False).st_mtime < limit:
                    self._unlink(path)
                    del self._sizes[path]
            except FileNotFoundError:
                self._sizes.pop(path, None)

    @property
    def total_size(self) -> int:
        return sum(self._sizes.values())
