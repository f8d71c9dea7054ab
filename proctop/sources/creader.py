"""The compiled socket reader, and which reader runs.

``_creader`` (C, built by setup.py where a compiler and Python.h exist) owns
the reader thread: recv, decode, the mask and thread filter, the /proc reads
of an exec'd or unannounced dying process, the record of live processes
(``reader.Known``: the names kept from events the mask lacks), the pending
reads and the reuse check that unsays them, all without the GIL, in C, by
the rules of ``reader.EventTaker``. Names-only events never leave the
thread; it keeps shown events (and the introductions, ``reader.Intro``, that
precede them) as C records, and ``CReader.take`` (the consumer's thread)
turns them into the very items ``SocketReader`` queues, so both readers give
the same events for the same datagrams (the twin tests,
tests/core/test_source_contract.py, test_names.py and test_kernel_events.py,
run over both).

What the C side leaves to Python here, under the GIL: building the
``RawEvent``/``Snapshot`` objects from the bytes read (``procfs.parse_stat``,
``parse_cmdline``), ``_zombie`` and ``kernel_names``.
Differences from the twin: a /proc file is cut at 4 MB; the records' reads
are bounded in bytes too (``NAMES_BYTES_MAX``, 24 MB counted per record);
a read is pending (and may be unsaid) when it found the process, where the
twin leaves out an exit's read that ``_zombie`` refused (unsaid, it is None
either way); the consumer, not the thread, re-sends the kmod's LISTEN now and then.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from proctop.kernel.protocol import (
    FILLED,
    LAYOUTS,
    PROC_EVENT_ALL,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    DecodeStats,
    RawEvent,
)
from proctop.kernel.socket import FilteredProcSocket
from proctop.model.procfs import GONE, Snapshot, parse_cmdline, parse_stat
from proctop.sources import choice
from proctop.sources import reader as _python_reader
from proctop.sources.choice import ReaderChoiceError, ReaderKind
from proctop.sources.reader import LOST, EventTaker, Intro, Queued, ReaderStats, SocketReader, kernel_names

if TYPE_CHECKING:
    from proctop.sources._creader import CReader as _Thread
    from proctop.sources._creader import RawBatch, Reads


def reader_class(kind: ReaderKind) -> type[SocketReader] | type[CReader]:
    """The reader ``kind`` (``reader_kind``) names: both take the same arguments."""
    return CReader if kind == "c" else SocketReader


def wire_table() -> tuple[tuple[int, ...], ...]:
    """Every kind's layout (``protocol.LAYOUTS``) as the compiled reader takes it: ``(what, size, the
    offset of each of pid, tgid, ppid, ptgid, a, b, comm or -1, names)``, names 0 none, 1 comm, 2 comm
    and argv. The C decoder has no kind of its own: a new row of ``LAYOUTS`` is decoded by both readers."""
    return tuple(
        (
            what,
            layout.size,
            *(layout.offsets.get(field, -1) for field in FILLED),
            2 if "argv" in layout.names else 1 if layout.names else 0,
        )
        for what, layout in LAYOUTS.items()
    )


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
            sock.raw.fileno(), idx, mask, names_bits, threads, _python_reader.QUEUE_MAX, wire_table(), PROC_EVENT_ALL
        )
        self.queue: deque[Queued] = deque()
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
            filtered=c["filtered"],
            names_only=c["names_only"],
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
            for items, dropped in self._thread.take_raw(0.0 if queue else timeout, most - len(queue)):
                self._replay(items, dropped)
        return [queue.popleft() for _ in range(min(len(queue), most))]

    def _replay(self, items: RawBatch, dropped: int) -> None:
        """One batch of the thread's as ``SocketReader`` queues it: the reads parsed, the rest is the thread's."""
        keep: list[Queued] = []
        for item in items:
            if item is None:  # an overrun (counted by the thread)
                keep.append(LOST)
            elif len(item) == 3:
                ev, pre, unsaid = item
                keep.append((ev, self._snapshot(ev, pre, unsaid), True))
            else:
                pid, start_ns, ppid, names, own, uid, cgroup = item
                snap = self._parse(names, True) if names is not None else None
                text = cgroup.decode("utf-8", "surrogateescape") if cgroup is not None else None
                keep.append(Intro(pid, start_ns, ppid, [snap], own, uid, text))
        queue = self.queue
        if dropped:  # the consumer was far behind: the thread dropped and counted these
            if not keep and queue and type(queue[-1]) is int:
                queue[-1] += dropped
            else:
                keep.append(dropped)
        queue.extend(keep)

    def _snapshot(self, ev: RawEvent, pre: Reads | None, unsaid: bool) -> Snapshot | None:
        """What ``EventTaker._keep`` queues with ``ev``, from what the thread read (``pre``)."""
        what = ev.what
        if what == PROC_EVENT_EXEC:
            return GONE if unsaid else kernel_names(ev, self._read(ev, True, pre) or GONE)
        if what == PROC_EVENT_EXIT and pre is not None:  # read: an unannounced exit
            return None if unsaid else kernel_names(ev, self._zombie(ev, self._read(ev, False, pre)))
        return None

    def _read(self, ev: RawEvent, argv: bool, pre: object) -> Snapshot | None:
        """``procfs.snapshot`` from the bytes the thread read (``pre``), parsed alike."""
        return self._parse(pre, argv) if pre is not None else None  # type: ignore[arg-type]

    @staticmethod
    def _parse(reads: Reads, argv: bool) -> Snapshot | None:
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
