"""``--json``: one JSON object per event on stdout, each line written as soon as it exists.

The first line is a header without an ``event`` key, naming the source in use
(native / userspace / kmod / replay) and the mask.

Output can fail in three ways, and none of them may make proctop deaf or
noisy (README, "Captures and outputs that fail"):

* the reader goes away (``| head -1``): exit 0, noticed within a loop turn
  even when no event comes, from POLLERR/POLLHUP on stdout;
* the write fails (``> /dev/full``, an I/O error): one line on stderr, exit 1;
* the reader stops reading and the pipe fills: stdout is written by its own
  thread through a bounded queue, so the loop (``proctop.sinks.stream.run_headless``,
  whose output ``JsonLines`` is) keeps reading the kernel and answering signals;
  events that do not fit are counted and written as one ``lost`` event once the
  reader takes lines again. A replay has no kernel
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
from collections.abc import Callable
from typing import Protocol

from proctop.model.events import Event, encode_line
from proctop.sinks.stream import TURN, Sink

#: Bytes of output held for a reader that fell behind (~250 bytes a line: about
#: 60,000 events). Past it events are counted as lost, so memory stays bounded.
QUEUE_BYTES = 16 << 20


class HasFileno(Protocol):
    """What ``JsonLines`` writes to besides a bare descriptor: a file, a socket, a pipe's end."""

    def fileno(self) -> int: ...


#: stdout is polled for a gone reader at most this often, not once per batch of
#: events: under a storm the loop turns thousands of times a second, each turn
#: a system call more (a write to a gone reader fails with EPIPE anyway).
_LOOK_EVERY = 0.05


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


def _reader_gone(watch: select.poll) -> bool:
    """POLLERR (a pipe whose read end closed), POLLHUP (a hung-up terminal) or POLLNVAL on stdout."""
    return any(events & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, events in watch.poll(0))


class JsonLines(Sink):
    """The ``--json`` output: the header, then one line an event, through an ``OutputWriter``.

    ``out`` is a file descriptor or an object with ``fileno()`` (default: stdout);
    it is written directly, never through Python's buffers, so nothing is left to
    flush (and block) at exit. ``stop_flag`` ends a wait for a slow reader (a
    signal). Lines that find the queue full are counted (``count_lost``) and said
    as one ``lost`` event once the reader takes lines again; with
    ``waits_for_reader`` (a replay: no kernel to keep up with) nothing is dropped.
    """

    def __init__(
        self,
        out: int | HasFileno | None = None,
        *,
        stop_flag: Callable[[], bool] | None = None,
        count_lost: Callable[[int], None] = lambda count: None,
        waits_for_reader: bool = False,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        if out is None:
            out = sys.stdout
        fd = out if isinstance(out, int) else out.fileno()
        self._stop = stop_flag or (lambda: False)
        self._count_lost = count_lost
        self._waits_for_reader = waits_for_reader
        self._watch = select.poll()
        self._watch.register(fd, 0)  # POLLERR/POLLHUP/POLLNVAL are reported whatever is asked
        self._writer = OutputWriter(fd, queue_bytes)
        self._unwritten = 0  # events that found the queue full, not yet reported
        self._unwritten_since = 0.0
        self._looked = 0.0  # when stdout was last polled for a gone reader

    def start(self, header: dict[str, object]) -> None:
        self._writer.put([_line(header)])

    def status(self) -> int | None:
        """The exit status if output has failed or the run was stopped, else None."""
        writer = self._writer
        if writer.error is not None:
            err = writer.error
            print(f"proctop: cannot write the output: {err.strerror or err}", file=sys.stderr)
            return 1
        if writer.gone or self._stop():
            return 0
        now = time.monotonic()
        if now - self._looked >= _LOOK_EVERY:
            self._looked = now
            if _reader_gone(self._watch):
                return 0
        return None

    def write(self, events: list[Event]) -> None:
        if not events:
            return
        writer = self._writer
        lines = [ev.to_line() for ev in events]
        if self._waits_for_reader:
            while not writer.wait(TURN):
                if self.status() is not None:
                    return  # the loop asks again and ends the run
        if writer.has_room():
            if self._unwritten:
                lines.insert(0, _lost_line(self._unwritten, self._unwritten_since))
                self._unwritten = 0
            writer.put(lines)
        else:
            if not self._unwritten:
                self._unwritten_since = time.time()
            self._unwritten += len(lines)
            self._count_lost(len(lines))

    def drain(self) -> int | None:
        """Wait for the last lines to be written, unless stopped or the reader is gone."""
        while not self._writer.wait(TURN, drained=True):
            if (done := self.status()) is not None:
                return done
        return self.status()

    def finish(self) -> int:
        if (done := self.status()) is not None:
            return done
        if self._unwritten and self._writer.has_room():
            self._writer.put([_lost_line(self._unwritten, self._unwritten_since)])
        return self.drain() or 0


def _line(obj: dict[str, object]) -> bytes:
    return encode_line(obj)  # ASCII (argv may hold undecodable bytes, as \\udcXX); strict RFC 8259


def _lost_line(count: int, since: float) -> bytes:
    """A ``lost`` event for lines the reader was too slow to take."""
    return Event(ts=since, event="lost", count=count).to_line()
