"""The compiled socket reader, and which reader runs.

``_creader`` (C, built by setup.py where a compiler and Python.h exist) owns
the reader thread: recv, decode, the mask and thread filter, and the /proc
reads of an exec'd or unannounced dying process, all without the GIL. It keeps
what it took as C records; ``CReader.take`` (the consumer's thread) turns them
into the very items ``SocketReader`` queues, through the same ``EventTaker``
(the announced record, the pending reads, the reuse check), so both readers
give the same events for the same datagrams (the twin tests,
tests/core/test_source_contract.py and test_kernel_events.py, run over both).

What the C side leaves to Python here, under the GIL: building the
``RawEvent``/``Snapshot`` objects and everything after the reads (the reuse
check, ``_zombie``, ``kernel_names``). The record of announced processes,
which decides whether an exit is read, is the thread's (in C, the same rules
as ``EventTaker._keep``'s).
Differences from the twin: a /proc file is cut at 4 MB; a batch waiting for a
pending read to be vouched for is cut at 65,536 events when any read was made
in it (the twin: while one is still pending); the consumer, not the thread,
re-sends the kmod's LISTEN now and then.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from proctop.kernel.protocol import PROC_EVENT_FORK, DecodeStats, RawEvent
from proctop.kernel.socket import FilteredProcSocket
from proctop.model.procfs import Snapshot, parse_cmdline, parse_stat
from proctop.sources import choice
from proctop.sources import reader as _python_reader
from proctop.sources.choice import ReaderChoiceError, ReaderKind
from proctop.sources.reader import EventTaker, Queued, ReaderStats, SocketReader

if TYPE_CHECKING:
    from proctop.sources._creader import CReader as _Thread
    from proctop.sources._creader import RawBatch, Reads

def reader_class(kind: ReaderKind) -> type[SocketReader] | type[CReader]:
    """The reader ``kind`` (``reader_kind``) names: both take the same arguments."""
    return CReader if kind == "c" else SocketReader


class CReader(EventTaker):
    """``SocketReader``'s interface over the compiled thread; the taking happens in ``take``."""

    def __init__(
        self,
        sock: FilteredProcSocket,
        *,
        idx: int,
        mask: int,
        names_bits: int,
        threads: bool,
        renew: Callable[[], None],
    ) -> None:
        super().__init__()
        if choice.extension is None:
            raise ReaderChoiceError("the compiled reader is not built")
        self.sock = sock
        self.idx = idx
        self.threads = threads
        self._mask = mask
        self._names_bits = names_bits
        self._renew = renew
        self._thread: _Thread = choice.extension.CReader(
            sock.raw.fileno(), idx, mask, names_bits, threads, _python_reader.QUEUE_MAX
        )
        self.queue: deque[Queued] = deque()
        self._names_only = 0  # the consumer's counters (this class runs in its thread)
        self._filtered = 0
        self._started = False

    # mask and names_bits: one word each in the thread, written by the control thread
    @property
    def mask(self) -> int:
        return self._mask

    @mask.setter
    def mask(self, mask: int) -> None:
        self._mask = mask
        self._thread.set_filter(mask, self._names_bits)

    @property
    def names_bits(self) -> int:
        return self._names_bits

    @names_bits.setter
    def names_bits(self, bits: int) -> None:
        self._names_bits = bits
        self._thread.set_filter(self._mask, bits)

    def start(self) -> None:
        self._thread.start()
        self._started = True

    def stop(self) -> None:
        self._thread.stop()

    @property
    def error(self) -> str | None:
        return self._thread.error

    @property
    def stats(self) -> ReaderStats:
        """A snapshot of the thread's counters and the taking's own."""
        c = self._thread.counters()
        return ReaderStats(
            received=c["received"],
            filtered=c["filtered"] + self._filtered,
            names_only=self._names_only,
            malformed=c["malformed"],
            lost=c["lost"],
        )

    @property
    def decode_stats(self) -> DecodeStats:
        c = self._thread.counters()
        stats = DecodeStats()
        stats.malformed, stats.acks, stats.errors, stats.other = c["malformed"], c["acks"], c["errors"], c["other"]
        return stats

    @property
    def finished(self) -> bool:
        return self._thread.stopped and self._thread.empty and not self.queue

    def take(self, timeout: float, most: int) -> list[Queued]:
        """Up to ``most`` queued items, waiting at most ``timeout`` for the first (the consumer's side)."""
        if self._started:
            self._renew()
        queue = self.queue
        if len(queue) < most:
            for items, drained, dropped in self._thread.take_raw(0.0 if queue else timeout, most - len(queue)):
                self._replay(items, drained, dropped)
        return [queue.popleft() for _ in range(min(len(queue), most))]

    def _replay(self, items: RawBatch, drained: bool, dropped: int) -> None:
        """One batch of the thread's, taken as ``SocketReader._read_loop`` takes one."""
        keep: list[Queued] = []
        pending = self._pending
        for item in items:
            if item is None:  # an overrun (counted by the thread)
                self._lost_mark(keep)
                continue
            ev, verdict, pre = item
            if ev.what == PROC_EVENT_FORK and ev.pid in pending:
                self._forked(ev, keep)
            if verdict < 0:
                self._filtered += 1
                continue
            if verdict == 0:
                self._names_only += 1
            self._keep(ev, verdict == 1, pre, keep)
        if drained:
            pending.clear()  # drained: a fork that could undo a read would be in `keep`
        if pending:
            self._unsure(keep, [i for places in pending.values() for i in places[::2]])
            pending.clear()
        queue = self.queue
        if dropped:  # the consumer was far behind: the thread dropped and counted these
            if not keep and queue and type(queue[-1]) is int:
                queue[-1] += dropped
            else:
                keep.append(dropped)
        queue.extend(keep)

    def _unannounced_exit(self, ev: RawEvent, pre: object) -> bool:
        """The thread keeps the record of announced processes (the same rules, in C) and reads an
        exit only when its process was unannounced: ``pre`` says which."""
        return pre is not None

    def _announce(self, pid: int) -> None:
        """Kept by the thread (``_unannounced_exit``), not here."""

    def _read(self, ev: RawEvent, argv: bool, pre: object) -> Snapshot | None:
        """``procfs.snapshot`` from the bytes the thread read (``pre``), parsed alike."""
        if pre is None:  # not read by the thread (it reads every exec and exit it keeps)
            return None
        reads: Reads = pre  # type: ignore[assignment]
        _end, raw_cmdline, raw_exe, stat, uid, cgroup, _argv_end = reads
        cmdline = parse_cmdline(raw_cmdline) if argv and raw_cmdline is not None else None
        exe = os.fsdecode(raw_exe) if argv and raw_exe is not None else None
        if stat is None or uid is None:
            return Snapshot(None, None, None, None, cmdline, exe) if cmdline or exe else None
        parsed = parse_stat(stat)
        if parsed is None:
            return None
        comm, ppid, start = parsed
        text = cgroup.decode("utf-8", "surrogateescape") if cgroup is not None else None
        return Snapshot(comm, ppid, start, uid, cmdline, exe, text)

    def _read_ended(self, pre: object) -> int:
        reads: Reads = pre  # type: ignore[assignment]
        return reads[0]
