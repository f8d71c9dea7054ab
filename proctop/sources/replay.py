"""Events read back from a JSON Lines capture written by ``proctop --json``.

For demos, bug reports and deterministic UI tests. A capture is untrusted
input (it arrives attached to a bug report, or is ``/dev/zero``, or a FIFO
nobody writes to), so it is read as a stream, never whole: ``CaptureParser``
takes bytes as they come, splits them on ``\\n`` only (U+2028 inside a JSON
string is text, which ``str.splitlines`` would split on), and bounds what one
line may cost: its length, its nesting, the digits of a number. Each record is
an event or the header; anything else is one ``ReplayError`` naming the file
and the line.

A replay shows what was recorded: ``ReplaySource.poll`` delivers every event.
The mask decides only what is *shown* (``ReplaySource.shows``) and how many
are hidden (``ReplaySource.shows``; the timeline counts them), so a key that
widens the mask brings hidden events back.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import stat
import threading
from collections import deque
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import BinaryIO, NoReturn

from proctop.errors import ProctopError
from proctop.kernel.probe import SOURCE_LABELS
from proctop.model.events import Event
from proctop.model.kinds import event_passes
from proctop.model.proctable import ProcessTable
from proctop.sources.base import Source, SourceDescription
from proctop.sources.stored import RecordError, is_stored, stored_segments

#: A capture's header line (a JSON object without an ``event`` key), parsed but untrusted:
#: its values are whatever the file held, so readers check each one's type.
Header = dict[str, object]
#: Longest line accepted. ``proctop --json`` writes one event per line; its
#: longest are exec events with a huge argv (Linux caps argv+envp at 2 MiB by
#: default but /proc/PID/cmdline lines past 1 MiB are rare): bigger is hostile
#: or not a capture (``/dev/zero``), and would otherwise be held in memory whole.
MAX_LINE = 1 << 20
#: Deepest nesting of ``[`` and ``{`` accepted. An event is an object holding lists
#: of strings (depth 2); deeper is not a capture, and json.loads would recurse.
MAX_DEPTH = 32
#: Longest integer literal accepted (a 64-bit number has 20 digits). Python
#: refuses more than 4,300 with a ValueError, or converts them in quadratic
#: time when PYTHONINTMAXSTRDIGITS=0.
MAX_INT_DIGITS = 24
#: Bytes read per system call.
CHUNK = 1 << 16

_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_INT_DIGITS + 1))
#: What ``_nesting`` looks at: quotes, backslashes and brackets (one C-speed search between them).
_STRUCTURE = re.compile(rb'["\\\[\]{}]')
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPENERS, _CLOSERS = b"[{", b"]}"


class ReplayError(ProctopError):
    """The capture cannot be read; the message names the file and line."""

    status = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        #: Good records read before the bad line, in the same piece of input.
        self.records: list[Event | Header] = []


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number (RFC 8259)")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


#: Decoders made once (json.loads with hooks builds one per call: a third of a replay's time).
#: Both refuse NaN/Infinity, which json accepts by default; the careful one also bounds
#: integers, for the rare lines with a long run of digits anywhere (the C decoder is faster).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_CAREFUL_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_bounded_int)


def _nesting(line: bytes) -> int:
    """Deepest ``[``/``{`` nesting of ``line``, brackets inside strings not counted.

    Only called when the line holds more brackets than ``MAX_DEPTH`` at all,
    so ordinary lines pay one ``count`` each. One pass over the quotes,
    backslashes and brackets, each looked at once: a regex for JSON strings
    retried from every quote of an unterminated one (``[``x33, ``"``, then
    ``\\"``x300,000 took minutes: issue 23).
    """
    depth = deepest = 0
    in_string = False
    skip = -1  # the position of a byte escaped by a backslash
    for match in _STRUCTURE.finditer(line):
        at = match.start()
        if at == skip:
            continue
        byte = line[at]
        if in_string:
            if byte == _BACKSLASH:
                skip = at + 1
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSERS:
            depth -= 1
    return deepest


class CaptureParser:
    """Turns the bytes of one capture, fed in any pieces, into records.

    A record is an ``Event`` or a header ``dict`` (a line with a ``proctop``
    key and no ``event`` key). Memory is bounded by ``MAX_LINE`` whatever the
    input. Every error is a ``ReplayError`` naming ``name`` and the line.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lineno = 0  # lines completed so far
        self._partial = bytearray()

    def _error(self, lineno: int, what: str) -> ReplayError:
        return ReplayError(f"{self.name}:{lineno}: {what}")

    def feed(self, data: bytes) -> list[Event | Header]:
        """Records completed by ``data`` (a line may span many calls).

        On a bad line the ``ReplayError`` carries the good records before it
        (``records``), so what a reader sees never depends on how reads were cut.
        """
        out: list[Event | Header] = []
        try:
            nul = data.find(b"\0")
            if nul >= 0:  # no JSON text holds a NUL byte: say so now, not after 1 MiB of /dev/zero
                self._feed_lines(data[: data.rfind(b"\n", 0, nul) + 1], out)
                raise self._error(self.lineno + 1, "not a text file (NUL byte)")
            self._feed_lines(data, out)
        except ReplayError as exc:
            exc.records = out
            raise
        return out

    def _feed_lines(self, data: bytes, out: list[Event | Header]) -> None:
        lines = data.split(b"\n")  # \n only: never str.splitlines (U+2028, U+0085, ...)
        rest = lines.pop()
        if lines and self._partial:
            self._partial += lines[0]
            lines[0] = bytes(self._partial)
            self._partial.clear()
        parse = self._parse
        for line in lines:
            self.lineno += 1
            if line:
                record = parse(line)
                if record is not None:
                    out.append(record)
        if len(self._partial) + len(rest) > MAX_LINE:
            raise self._error(self.lineno + 1, f"line longer than {MAX_LINE // (1 << 20)} MiB")
        self._partial += rest

    def finish(self) -> list[Event | Header]:
        """At end of input: the last line, if it had no ``\\n``."""
        if not self._partial:
            return []
        line = bytes(self._partial)
        self._partial.clear()
        self.lineno += 1
        record = self._parse(line)
        return [] if record is None else [record]

    def _parse(self, line: bytes) -> Event | Header | None:
        lineno = self.lineno
        if len(line) > MAX_LINE:
            raise self._error(lineno, f"line longer than {MAX_LINE // (1 << 20)} MiB")
        if not line.strip(b" \t\r"):
            return None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error(lineno, "not UTF-8 text") from None
        if (line.count(b"[") + line.count(b"{") > MAX_DEPTH) and _nesting(line) > MAX_DEPTH:
            raise self._error(lineno, f"nested deeper than {MAX_DEPTH} levels")
        try:
            decoder = _CAREFUL_DECODER if _LONG_DIGITS.search(line) else _DECODER
            obj = decoder.decode(text)
        except json.JSONDecodeError as exc:
            raise self._error(lineno, f"not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # the hooks above; RecursionError cannot pass _nesting
            raise self._error(lineno, f"not valid JSON ({exc})") from None
        if isinstance(obj, dict) and "proctop" in obj and "event" not in obj:
            return obj
        try:
            return Event.from_dict(obj)
        except ValueError as exc:
            raise self._error(lineno, str(exc)) from None


def read_capture(fileobj: BinaryIO, name: str) -> Iterator[Event | Header]:
    """Every record of a capture read from a binary file object (a file, a ``gzip.GzipFile``).

    Streams: memory stays bounded by ``MAX_LINE`` however big the input.
    Raises ``ReplayError`` (naming ``name`` and the line) on the first bad
    line, or when the file cannot be read.
    """
    parser = CaptureParser(name)
    read = getattr(fileobj, "read1", fileobj.read)
    while True:
        try:
            data = read(CHUNK)
        except OSError as exc:
            raise ReplayError(f"cannot read replay file {name}: {exc.strerror or exc}") from None
        except EOFError as exc:  # gzip: a segment cut short
            raise ReplayError(f"{name}: {exc}") from None
        try:
            records = parser.feed(data) if data else parser.finish()
        except ReplayError as exc:
            yield from exc.records
            raise
        yield from records
        if not data:
            return


def load_capture(path: str | Path) -> tuple[Header, list[Event]]:
    """The capture's header (``{}`` if it has none) and its events, all in memory.

    For tests and small files; ``ReplaySource`` streams instead.
    """
    header: Header = {}
    events: list[Event] = []
    if is_stored(path):  # a record directory or a gzip file
        source = ReplaySource(path, 0)
        try:
            while not source.finished:
                events.extend(source.poll(0))
        finally:
            source.close()
        return source.header, events
    with _open(path) as fileobj:
        for record in read_capture(fileobj, str(path)):
            if isinstance(record, Event):
                events.append(record)
            elif not header:
                header = record
    return header, events


def _open_fd(path: str | Path) -> int:
    """Open without blocking (a FIFO with no writer), refusing what is not a readable file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ReplayError(f"replay file not found: {path}") from None
    except OSError as exc:
        raise ReplayError(f"cannot open replay file {path}: {exc.strerror}") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise ReplayError(f"replay file is a directory: {path}")
    return fd


def _open(path: str | Path) -> BinaryIO:
    fd = _open_fd(path)
    os.set_blocking(fd, True)  # our own open file description: nobody else sees the change
    return os.fdopen(fd, "rb", buffering=0)


class ReplaySource(Source):
    """Delivers a capture's events, in order, in batches, read as they are needed.

    The file is opened non-blocking and waited on with ``poll``, so neither
    opening a FIFO that has no writer nor waiting for its data ever blocks
    longer than ``poll``'s timeout: a signal ends proctop at any moment.
    """

    kind = "replay"
    label = SOURCE_LABELS["replay"]
    recorded = True

    def __init__(
        self,
        path: str | Path,
        mask: int,
        batch: int = 1000,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> None:
        super().__init__(mask)
        self.path = Path(path)
        self.header: Header = {}
        self.batch = batch
        self.since, self.until = since, until  # --since/--until: events outside are skipped
        #: What the recorded events tell of each process (for ``ancestry``): the consumer's, learnt in ``poll``.
        self.table = ProcessTable()
        #: A record directory or a gzip file: regular files, read through ``stored.stored_segments``.
        self._segments: Generator[tuple[Path, bool, Iterator[bytes]]] | None = None
        self._fd: int | None
        if is_stored(self.path):
            try:
                self._segments = stored_segments(self.path)
            except RecordError as exc:
                raise ReplayError(str(exc)) from None
            self._fd = None
            self._regular = True
        else:
            self._fd = _open_fd(self.path)
            self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._parser = CaptureParser(str(self.path))
        self._segment_gzip = False
        self._chunks: Iterator[bytes] = iter(())
        self._pending: deque[Event] = deque()
        self._eof = False
        self._failure: ReplayError | None = None  # raised once the events before it are delivered
        self._poller = select.poll()
        if self._fd is not None:
            self._poller.register(self._fd, select.POLLIN)
        self._lock = threading.Lock()
        #: Events delivered so far, by what the mask decides on: (event, failed).

    def start(self) -> None:
        """Read the first lines of a regular file now, so its header is known to ``describe``.

        Errors in them surface here, before a screen opens. FIFOs and devices are not
        touched: nothing may block here.
        """
        if self._regular and not self._pending:
            self._read(0, chunks=1)
            if self._failure is not None and not self._pending:
                raise self._failure

    def _read(self, timeout: float, chunks: int) -> None:
        """Parse up to ``chunks`` reads into ``_pending``, waiting at most ``timeout`` for the first."""
        with self._lock:  # close() from another thread must not free the fd mid-read
            self._read_locked(timeout, chunks)

    def _read_locked(self, timeout: float, chunks: int) -> None:
        if self._segments is not None:
            self._read_stored(chunks)
            return
        fd = self._fd
        if fd is None or self._eof:
            return
        for i in range(chunks):
            # POLLHUP: a FIFO's last writer left. A FIFO that never had a writer reports
            # nothing (Linux), so read() is not asked before one came, where it would say EOF.
            if not self._poller.poll(max(0, int(timeout * 1000)) if i == 0 else 0):
                return
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    return
                raise ReplayError(f"cannot read replay file {self.path}: {exc.strerror}") from None
            try:
                records = self._parser.feed(data) if data else self._parser.finish()
            except ReplayError as exc:
                records, self._failure = exc.records, exc
                data = b""  # nothing more is read
            self._take(records)
            if not data:
                self._eof = True
                self._close_fd()
                return
            if len(self._pending) >= self.batch:
                return

    def _take(self, records: list[Event | Header]) -> None:
        since, until = self.since, self.until
        for record in records:
            if isinstance(record, Event):
                if (since is None or record.ts >= since) and (until is None or record.ts <= until):
                    self._pending.append(record)
            elif not self.header:  # a record directory has one header per segment: the first is kept
                self.header = record

    def _read_stored(self, chunks: int) -> None:
        """Up to ``chunks`` chunks of a record directory's segments (or a gzip file), in order."""
        assert self._segments is not None  # called only for a stored capture (see _read_locked)
        for _ in range(chunks):
            if self._eof:
                return
            data = next(self._chunks, None)
            try:
                if data is None:  # this segment is done: an unterminated gzip tail was cut mid-write
                    records = [] if self._segment_gzip else self._parser.finish()
                    self._take(records)
                    segment = next(self._segments, None)
                    if segment is None:
                        self._eof = True
                        return
                    name, self._segment_gzip, self._chunks = segment
                    self._parser = CaptureParser(str(name))
                    continue
                records = self._parser.feed(data)
            except ReplayError as exc:
                self._take(exc.records)
                self._failure, self._eof = exc, True
                return
            except RecordError as exc:
                self._failure, self._eof = ReplayError(str(exc)), True
                return
            self._take(records)
            if len(self._pending) >= self.batch:
                return

    def poll(self, timeout: float) -> list[Event]:
        """The next recorded events, all of them (see ``shows`` for the mask).

        Raises ``ReplayError`` for a bad line once the events before it are delivered.
        """
        if self._failure is not None and not self._pending:
            raise self._failure
        if len(self._pending) < self.batch:
            # Bounded work per call (16 reads): an endless stream of blank lines
            # still returns to the caller, who checks for signals.
            self._read(0 if self._pending else timeout, chunks=16)
        take = min(len(self._pending), self.batch)
        out = [self._pending.popleft() for _ in range(take)]
        stats = self.stats
        stats.delivered += len(out)
        learn = self.table.learn
        for ev in out:
            learn(ev)
            stats.by_type[ev.event] = stats.by_type.get(ev.event, 0) + 1
            if ev.event == "lost":
                stats.lost += ev.count or 1
        return out

    def ancestry(self, ev: Event) -> list[tuple[int, str]]:
        """From the events delivered so far (a capture has no /proc to ask)."""
        return self.table.ancestry(ev)

    def shows(self, ev: Event) -> bool:
        """Whether the current mask shows ``ev`` (``event_passes``); hidden events are kept."""
        return event_passes(self.mask, ev)

    @property
    def finished(self) -> bool:
        return self._eof and not self._pending and self._failure is None

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    def _close_fd(self) -> None:
        if self._segments is not None:
            self._segments.close()  # a generator: closes the segment it has open
            self._eof = True
        if self._fd is not None:
            self._poller.unregister(self._fd)
            os.close(self._fd)
            self._fd = None

    def describe(self) -> SourceDescription:
        recorded = self.header.get("source")
        if not isinstance(recorded, str):  # the header is untrusted too
            recorded = None
        return {"source": "replay", "label": self.label, "file": str(self.path), "recorded_from": recorded}
