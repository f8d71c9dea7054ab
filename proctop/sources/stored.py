"""Reading what ``--record`` stored: a record directory of gzip segments, or one gzip or plain file.

This is the reading half of ``proctop.sinks.record``, kept among the sources because
``proctop.sources.replay`` streams it: sources sit below the CLI-level modules
and may not import them. ``proctop.sinks.record`` re-exports these names, so the
writer and its readers still meet in one vocabulary.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import BinaryIO

from proctop.errors import ProctopError

#: Segment file names: UTC start time (microseconds) and the writer's pid.
SEGMENT_RE = re.compile(r"^proctop-\d{8}T\d{6}\.\d{6}Z-\d+\.jsonl\.gz$")
#: Longest line ``capture_lines`` accepts: a gzip bomb of one endless line must not fill memory.
MAX_LINE = 8 * 1024**2
_READ_CHUNK = 64 * 1024
GZIP_WBITS = 31  # zlib: gzip header and trailer


class RecordError(ProctopError):
    """Bad ``--record`` arguments or an unreadable record; one line for the user."""

    status = 2


# --- reading ---------------------------------------------------------------------


def segment_paths(directory: str | Path) -> list[Path]:
    """The segments in ``directory``, oldest first (their names sort by start time)."""
    directory = Path(directory)
    try:
        return sorted(
            (p for p in directory.iterdir() if SEGMENT_RE.match(p.name) and p.is_file()), key=lambda p: p.name
        )
    except OSError as exc:  # a record directory we may not list (non-root, root's 0700 directory)
        raise RecordError(f"cannot read record directory {directory}: {exc.strerror or exc}") from None


class CaptureLines:
    """The raw lines (bytes, no newline) of a capture: a plain or gzip file, or a record directory.

    Iterate it for the lines; ``where()`` names the file and line number of
    the last line handed out, for error messages. A gzip stream that was cut
    (SIGKILL, power loss, a full disk) ends quietly at its last whole line;
    several gzip members in a row are read as one stream, as gzip does.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.current: Path = self.path
        self.lineno = 0

    def files(self) -> list[Path]:
        """The files to read, in order (raises ``RecordError`` for an empty record directory)."""
        if self.path.is_dir():
            segments = segment_paths(self.path)
            if not segments:
                raise RecordError(f"no proctop records (proctop-*.jsonl.gz) in {self.path}")
            return segments
        return [self.path]

    def where(self) -> str:
        return f"{self.current}:{self.lineno}"

    def __iter__(self) -> Iterator[bytes]:
        for path in self.files():
            self.current, self.lineno = path, 0
            try:
                f = path.open("rb")
            except FileNotFoundError:
                if path is self.path:
                    raise
                continue  # a segment deleted by the recorder's rotation while we read
            except OSError as exc:
                raise RecordError(f"cannot read {path}: {exc.strerror or exc}") from None
            with f:
                try:
                    for line in _lines(_chunks(f), complete_tail=not _is_gzip(f)):
                        self.lineno += 1
                        yield line
                except _LineTooLong:
                    raise RecordError(f"{self.current}:{self.lineno + 1}: line longer than {MAX_LINE} bytes") from None


class _LineTooLong(Exception):
    pass


def stored_segments(path: str | Path) -> Generator[tuple[Path, bool, Iterator[bytes]]]:
    """``(file, is_gzip, its bytes in chunks, gunzipped)`` for a record directory's segments in
    order, or for one stored file; for a streaming parser (``proctop.sources.replay``). A
    segment deleted by rotation while being read is skipped; a cut gzip tail ends its chunks.
    """
    path = Path(path)
    for segment in CaptureLines(path).files():
        try:
            f = segment.open("rb")
        except FileNotFoundError:
            if segment == path:
                raise
            continue
        except OSError as exc:  # a segment we may not read (non-root, a 0600 segment of root's)
            raise RecordError(f"cannot read {segment}: {exc.strerror or exc}") from None
        with f:
            yield segment, _is_gzip(f), _chunks(f)


def is_stored(path: str | Path) -> bool:
    """A record directory or a gzip file (read through ``stored_segments``), not a plain stream."""
    path = Path(path)
    try:
        if path.is_dir():
            return True
        if not path.is_file():  # a FIFO or device: never peeked at (it could block or lose data)
            return False
        with path.open("rb") as f:
            return _is_gzip(f)
    except OSError:
        return False


def _is_gzip(f: BinaryIO) -> bool:
    pos = f.tell()
    magic = f.read(2)
    f.seek(pos)
    return magic == b"\x1f\x8b"


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    """The file's bytes, gunzipped if it is gzip; a cut or corrupt tail just ends the stream."""
    if not _is_gzip(f):
        while chunk := f.read(_READ_CHUNK):
            yield chunk
        return
    d = zlib.decompressobj(GZIP_WBITS)
    data = b""
    while True:
        if not data:
            data = f.read(_READ_CHUNK)
            if not data:
                return  # clean end, or a member cut short: what was decoded stands
        saved = d.copy()
        try:
            out = d.decompress(data, _READ_CHUNK)  # bounded output: a gzip bomb is read in steps
        except zlib.error:
            # A torn write, or blocks a power loss left zero-filled. zlib drops the
            # output of a call that fails, so decode the good part a byte at a time.
            d = saved
            for i in range(len(data)):
                try:
                    out = d.decompress(data[i : i + 1])
                except zlib.error:
                    return
                if out:
                    yield out
            return
        if out:
            yield out
        if d.eof:  # the next gzip member (or trailing garbage, which ends the stream)
            # Only unused_data: at a member's end CPython leaves the same bytes in
            # unconsumed_tail too, and feeding both replayed the rest again and again.
            data = d.unused_data
            d = zlib.decompressobj(GZIP_WBITS)
        else:
            data = d.unconsumed_tail


def _lines(chunks: Iterator[bytes], *, complete_tail: bool) -> Iterator[bytes]:
    """Split into lines; an unterminated last line is kept for plain files, dropped for gzip ones.

    A gzip segment's unterminated tail is a line the recorder was cut in the
    middle of: dropping it is what "readable up to its last whole line" means.
    """
    partial = b""
    for chunk in chunks:
        parts = (partial + chunk).split(b"\n")
        partial = parts.pop()
        yield from parts
        if len(partial) > MAX_LINE:
            raise _LineTooLong
    if partial and complete_tail:
        yield partial
