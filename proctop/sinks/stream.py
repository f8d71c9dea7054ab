"""One stream of batches from a source to its sinks, and the one loop that drives it without a UI.

The data's way, composed explicitly by the command line (proctop/cli/main.py)::

    source (connector / replay, maybe a CommandTree)
      -> Tee(source, [recorder, metrics])       every batch polled, whoever polls
      -> the consumer: the UI's reader thread, or ``run_headless`` with one output
         (JSON lines, the summary, or nothing for ``--record`` alone)

A ``Sink`` takes batches on the consumer thread. The recorder and the metrics
ride on the source as a ``Tee`` (a decorator like ``CommandTree``), so the UI
and every headless mode feed them alike without knowing of them; the outputs of
the headless modes are sinks too, handed the events the source ``shows``.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from proctop import __version__
from proctop.model.events import Event
from proctop.model.kinds import mask_names
from proctop.sources.base import Source, SourceDecorator

#: What the header line says (the ``--json`` stream's first line, a record segment's first line).
Header = dict[str, object]

#: Longest wait of the headless loop: how late a signal, a gone reader or the end
#: of ``--duration`` can be noticed.
TURN = 0.2


def header(source: Source) -> Header:
    """The first line of ``--json`` and of every record segment: version, time, mask and the source."""
    return {"proctop": __version__, "ts": time.time(), "mask": mask_names(source.mask), **source.describe()}


class Sink(ABC):
    """Where a source's batches go. Called in this order (the threads are the source's, sources/base.py):

    * ``start(header)`` once, after the source started (it knows its socket buffer
      then), on the thread that started it;
    * ``write(events)`` for every batch, an empty one too, on the consumer thread:
      time passed, so a sink with a clock (the recorder's once-a-second flush)
      keeps it on a quiet machine;
    * ``close()`` at the end, on the thread that closes the source; idempotent,
      and called even after an error.

    The output of a headless run (``run_headless``) also answers ``status`` (it
    ends the run: the reader went away, a write failed), ``drain`` (what was
    written is out) and ``finish`` (the run ended as asked: its last words and
    the exit status). The defaults suit a sink with nothing to say.
    """

    def start(self, header: Header) -> None:  # noqa: B027 - a sink without a header needs nothing here
        """The stream begins; ``header`` describes it."""

    @abstractmethod
    def write(self, events: list[Event]) -> None:
        """One batch (oldest first; may be empty)."""

    def status(self) -> int | None:
        """Not None when this output ends the run now, with that exit status (it said why, if it must)."""
        return None

    def drain(self) -> int | None:
        """Wait until what was written is out; the exit status if the output failed or went away meanwhile."""
        return None

    def finish(self) -> int:
        """The run ended as asked (end of a replay, ``--duration``, ``--count``, a signal): the exit status."""
        return 0

    def close(self) -> None:  # noqa: B027 - a sink without resources needs nothing here
        """Release files, sockets, threads. Idempotent."""


class NoOutput(Sink):
    """The output of ``--record`` (or ``--metrics``) without ``--json``: nothing on stdout."""

    def write(self, events: list[Event]) -> None:
        pass


class Tee(SourceDecorator):
    """``inner``'s events, every batch also handed to ``sinks``; closing it closes them (after ``inner``).

    The recorder and the metrics are sinks here: whoever consumes the source (the
    UI's reader thread, ``run_headless``) feeds them, and they see every batch as
    polled (the mask's view of a replay is the consumer's business).
    """

    def __init__(self, inner: Source, sinks: Sequence[Sink]) -> None:
        super().__init__(inner)
        self.sinks = list(sinks)
        self._closed = False

    # what the inner source says, it says
    @property  # the inner source's word, not a copy of it
    def mask(self) -> int:
        return self.inner.mask

    @mask.setter
    def mask(self, value: int) -> None:  # Source.__init__ sets it; set_mask is how it changes
        pass

    @property  # the kmod's bits are known once the inner source has started
    def supported(self) -> int:
        return self.inner.supported

    @supported.setter
    def supported(self, value: int) -> None:
        pass

    def start(self) -> None:
        self.inner.start()
        described = header(self)
        for sink in self.sinks:
            sink.start(described)

    def poll(self, timeout: float) -> list[Event]:
        events = self.inner.poll(timeout)
        for sink in self.sinks:
            sink.write(events)
        return events

    def close(self) -> None:
        """The source first (a watched command ends, a reader thread stops), then every sink, whatever raised."""
        try:
            self.inner.close()
        finally:
            if not self._closed:
                self._closed = True
                _close_all(self.sinks)


def _close_all(sinks: Sequence[Sink]) -> None:
    """Close each sink even when one before it raised; the first error is raised at the end."""
    if not sinks:
        return
    try:
        sinks[0].close()
    finally:
        _close_all(sinks[1:])


def run_headless(
    source: Source,
    output: Sink,
    *,
    duration: float | None = None,
    count: int | None = None,
    stop_flag: Callable[[], bool] | None = None,
) -> int:
    """The loop of every headless mode (``--json``, ``--summary``, ``--record``): the exit status.

    Polls the started ``source`` until the end of a replay or the watched command,
    ``duration`` seconds, ``count`` shown events or ``stop_flag()`` (SIGINT, SIGTERM,
    SIGHUP), and hands ``output`` the events the source ``shows``. ``output.status()``
    ends it early (a gone reader: 0; a failed write: 1); a source that fails is one line
    on stderr and status 1. A poll that raises (a bad capture line) lets the events
    before it out first, then raises, unless the output failed too (one line is enough).
    """
    stop = stop_flag or (lambda: False)
    deadline = time.monotonic() + duration if duration is not None else None
    shown = 0
    output.start(header(source))
    try:
        while True:
            if (done := output.status()) is not None:
                return done
            if stop() or (count is not None and shown >= count):
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
            except Exception:
                if output.drain() not in (None, 0):  # the output's own failure is the one line
                    return 1
                raise
            batch = [ev for ev in events if source.shows(ev)]
            if count is not None:
                batch = batch[: count - shown]
            shown += len(batch)
            output.write(batch)
            if source.error:
                print(f"proctop: {source.error}", file=sys.stderr)
                return 1
        return output.finish()
    finally:
        output.close()
