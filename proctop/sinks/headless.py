"""``--json``: one JSON object per event on stdout, each line written as soon as it exists.

The first line is a header without an ``event`` key, naming the source in use
(native / userspace / kmod / replay) and the mask.

Output can fail in three ways, and none of them may make proctop deaf or
noisy (README, "Captures and outputs that fail"):

* the reader goes away (``| head -1``): exit 0, noticed within a loop turn
  even when no event comes, from POLLERR/POLLHUP on stdout;
* the write fails (``> /dev/full``, an I/O error): one line on stderr, exit 1;
* the reader stops reading and the pipe fills: stdout is written by its own
  thread through a bounded queue, so the main loop keeps reading the kernel
  and answering signals; events that do not fit are counted and written as
  one ``lost`` event once the reader takes lines again. A replay has no kernel
  to keep up with: it waits for the reader instead of dropping.
"""

from __future__ import annotations

import os
import select
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

from proctop import __version__
from proctop.model.events import Event, encode_line
from proctop.model.kinds import mask_names
from proctop.sources.base import Source

#: Bytes of output held for a reader that fell behind (~250 bytes a line: about
#: 60,000 events). Past it events are counted as lost, so memory stays bounded.
QUEUE_BYTES = 16 << 20
class HasFileno(Protocol):
    """What ``run_json`` writes to besides a bare descriptor: a file, a socket, a pipe's end."""

    def fileno(self) -> int: ...


#: Longest wait of the main loop: how late a signal, a gone reader or the end
#: of ``--duration`` can be noticed.
TURN = 0.2
#: stdout is polled for a gone reader at most this often, not once per batch of
#: events: under a storm the loop turns thousands of times a second, each turn
#: a system call more (a write to a gone reader fails with EPIPE anyway).
_LOOK_EVERY = 0.05


def header(source: Source) -> dict[str, object]:
    return {"proctop": __version__, "ts": time.time(), "mask": mask_names(source.mask), **source.describe()}


class OutputWriter:
    """Writes lines to a file descriptor from a thread of its own, through a bounded queue.

    A ``write`` to a full pipe blocks in the kernel and is restarted after
    every signal (PEP 475); in its own thread it blocks only itself. Writes
    that cannot block are done at once by the caller (``_write_now``).
    """

    def __init__(self, fd: int, limit: int = QUEUE_BYTES) -> None:
        self.fd = fd
        self.limit = limit
        self.error: OSError | None = None  # the write failed (ENOSPC, EIO, ...)
        self.gone = False  # the reader closed its end (EPIPE)
        self._lines: deque[bytes] = deque()
        self._size = 0
        self._busy = False
        self._cond = threading.Condition()
        mode = os.fstat(fd).st_mode
        self._direct = "file" if stat.S_ISREG(mode) else "pipe" if stat.S_ISFIFO(mode) else None
        self._room = select.poll()
        self._room.register(fd, select.POLLOUT)
        self._thread = threading.Thread(target=self._run, name="proctop-writer", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self.gone or self.error is not None

    def has_room(self) -> bool:
        return self._size < self.limit

    def put(self, lines: list[bytes]) -> None:
        with self._cond:
            if self.failed:
                return
            if not self._lines and not self._busy and self._direct:
                lines = self._write_now(b"".join(lines))
                if not lines:
                    return
            self._lines.extend(lines)
            self._size += sum(len(line) for line in lines)
            self._cond.notify()

    def _write_now(self, data: bytes) -> list[bytes]:
        """Write from the calling thread when that cannot block; what is left for the thread.

        Waking the thread costs ~30 us of CPU a line, as much as the rest of an
        event's work, so the common case does without: a regular file, or a
        pipe with room (POLLOUT) for a write no bigger than PIPE_BUF, which
        Linux then never blocks on. A terminal can stop (^S) with room
        reported: it always goes through the thread.
        """
        if self._direct == "pipe" and (len(data) > select.PIPE_BUF or not self._room.poll(0)):
            return [data]
        try:
            done = os.write(self.fd, data)
        except BlockingIOError:
            done = 0
        except BrokenPipeError:
            self.gone = True
            return []
        except OSError as exc:
            self.error = exc
            return []
        return [data[done:]] if done < len(data) else []

    def wait(self, timeout: float, *, drained: bool = False) -> bool:
        """Wait until there is room (or all is written, with ``drained``) or it failed."""

        def ready() -> bool:
            if self.failed:
                return True
            if drained:
                return not self._lines and not self._busy
            return self.has_room()

        with self._cond:
            return self._cond.wait_for(ready, timeout)

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._lines:
                    self._busy = False
                    cond.notify_all()
                    cond.wait()
                data = b"".join(self._lines)
                self._lines.clear()
                self._size = 0
                self._busy = True
                cond.notify_all()
            try:
                self._write_all(data)
            except BrokenPipeError:
                self.gone = True
            except OSError as exc:
                self.error = exc
            if self.failed:
                with cond:
                    self._busy = False
                    cond.notify_all()
                return

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:  # stdout inherited in non-blocking mode
                select.select([], [self.fd], [], 1.0)


def batches(
    source: Source,
    *,
    duration: float | None = None,
    stop_flag: Callable[[], bool] | None = None,
    more: Callable[[], bool] = lambda: True,
) -> Iterator[list[Event]]:
    """What ``source.poll`` gives, batch after batch, until the end of a replay, ``duration``
    seconds, a stop (signal) or ``more()`` says no: the loop of every headless consumer
    (``--summary``, ``--record``), each of which counts what it counts."""
    deadline = time.monotonic() + duration if duration is not None else None
    while (stop_flag is None or not stop_flag()) and more():
        wait = 0.2
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return
        if source.finished:
            return
        yield source.poll(wait)


def _reader_gone(watch: select.poll) -> bool:
    """POLLERR (a pipe whose read end closed), POLLHUP (a hung-up terminal) or POLLNVAL on stdout."""
    return any(events & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, events in watch.poll(0))


def run_json(
    source: Source,
    *,
    out: int | HasFileno | None = None,
    duration: float | None = None,
    count: int | None = None,
    stop_flag: Callable[[], bool] | None = None,
    queue_bytes: int = QUEUE_BYTES,
) -> int:
    """Print events until ``duration``/``count``/end of replay/``stop_flag``; returns the exit status.

    ``out`` is a file descriptor or an object with ``fileno()`` (default:
    stdout); it is written directly, never through Python's buffers, so
    nothing is left to flush (and block) at exit. Only events the source
    ``shows`` are written: a replay with ``--only`` skips the others.
    """
    if out is None:
        out = sys.stdout
    fd = out if isinstance(out, int) else out.fileno()
    stop = stop_flag or (lambda: False)
    watch = select.poll()
    watch.register(fd, 0)  # POLLERR/POLLHUP/POLLNVAL are reported whatever is asked
    writer = OutputWriter(fd, queue_bytes)
    waits_for_reader = source.kind == "replay"  # nothing to keep up with: never drop
    deadline = time.monotonic() + duration if duration is not None else None
    written = 0
    unwritten = 0  # events that found the queue full, not yet reported
    unwritten_since = 0.0
    writer.put([_line(header(source))])

    looked = 0.0  # when stdout was last polled for a gone reader

    def status() -> int | None:
        """The exit status if output has failed or the run was stopped, else None."""
        nonlocal looked
        if writer.error is not None:
            err = writer.error
            print(f"proctop: cannot write the output: {err.strerror or err}", file=sys.stderr)
            return 1
        if writer.gone or stop():
            return 0
        now = time.monotonic()
        if now - looked >= _LOOK_EVERY:
            looked = now
            if _reader_gone(watch):
                return 0
        return None

    def drain() -> int | None:
        """Wait for the last lines to be written, unless stopped or the reader is gone."""
        while not writer.wait(TURN, drained=True):
            if (done := status()) is not None:
                return done
        return status()

    while True:
        if (done := status()) is not None:
            return done
        if count is not None and written >= count:
            break
        wait = TURN
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                break
        if source.finished:
            break
        try:
            events = source.poll(wait)
        except Exception:  # a bad capture line: the events before it go out first, then the error
            if drain() == 1:  # ...unless the output failed too: one line is enough
                return 1
            raise
        lines = []
        for ev in events:
            if not source.shows(ev):
                continue
            lines.append(ev.to_line())
            written += 1
            if count is not None and written >= count:
                break
        if lines:
            if waits_for_reader:
                while not writer.wait(TURN):
                    if (done := status()) is not None:
                        return done
            if writer.has_room():
                if unwritten:
                    lines.insert(0, _lost_line(unwritten, unwritten_since))
                    unwritten = 0
                writer.put(lines)
            else:
                if not unwritten:
                    unwritten_since = time.time()
                unwritten += len(lines)
                source.count_lost(len(lines))
        error = source.error
        if error:
            print(f"proctop: {error}", file=sys.stderr)
            return 1
    if unwritten and writer.has_room():
        writer.put([_lost_line(unwritten, unwritten_since)])
    return drain() or 0


def _line(obj: dict[str, object]) -> bytes:
    return encode_line(obj)  # ASCII (argv may hold undecodable bytes, as \\udcXX); strict RFC 8259


def _lost_line(count: int, since: float) -> bytes:
    """A ``lost`` event for lines the reader was too slow to take."""
    return Event(ts=since, event="lost", count=count).to_line()
