"""The socket reader thread of the connector source: recv, decode, filter, read /proc, hand over.

It does only what must not wait: recv, decode, the user-space mask and the
thread filter, and the /proc read of an exec'd (or unannounced dying)
process, datagram by datagram, before it is gone. It hands the consumer
(``ConnectorSource.poll``, proctop.sources.connector) batches through one
bounded queue; everything slower (enrichment, printing, rendering) happens
there, so a slow consumer makes the queue grow instead of making the kernel
drop events.

Threads by construction: everything here but ``mask``, ``names_bits`` (one
word each, written by the control thread) and the queue (under ``cond``)
belongs to the reader thread, and its counters (``ReaderStats``) are written
by it alone; the consumer and the UI read them as a snapshot.
"""

from __future__ import annotations

import enum
import errno
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from proctop.kernel.protocol import (
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    DecodeStats,
    RawEvent,
    decode_buffer,
    mask_accepts,
)
from proctop.kernel.socket import FilteredProcSocket
from proctop.model.procfs import GONE, TICK, Snapshot, parse_cmdline, snapshot

#: Netlink port id of the kernel. Any local process may unicast a datagram to our
#: port (no privilege is needed for unicast); only the kernel sends from port 0.
KERNEL_PORT = 0
READ_TIMEOUT = 0.25  # how often a blocked reader looks at the stop flag


class _Marker(enum.Enum):
    LOST = "lost"  # queue marker: the kernel reported an overrun here (an enum member so types can tell it apart)


LOST: Final = _Marker.LOST
#: What the reader queues: an event with what /proc showed at once and whether it is
#: shown (False: subscribed for names only, see ``ConnectorSource.names``), the overrun
#: marker, or how many events it dropped from a full queue.
Queued = tuple[RawEvent, Snapshot | None, bool] | Literal[_Marker.LOST] | int
#: Events a reader's batch holds before it is queued for the consumer; up to
#: ``_BATCH_HARD`` while a /proc read in it waits for the socket to be drained (``_unsure``).
_BATCH = 4096
_BATCH_HARD = 65536
#: A fork's event is stamped a few microseconds after its pid became visible in
#: /proc (copy_process: attach_pid, then proc_fork_connector); a read that ended less
#: than this before a fork of its pid may have read the new process.
_REUSE_MARGIN_NS = 1_000_000
#: Events held for a consumer that fell behind (~250 bytes each). Past it the
#: reader drops and counts them as lost: memory stays bounded (bench/: a TUI
#: lagging a 25,000 events/s storm grew to 238 MB without this bound).
QUEUE_MAX = 200_000
#: Processes whose fork or exec the reader saw, kept to its own record (``_take``);
#: past this many (exits filtered out by the mask never remove theirs) the longest
#: known is forgotten. Below the process table's LIVE_LIMIT: a process the reader
#: still counts as announced has its entry in the table.
ANNOUNCED_MAX = 32768


@dataclass
class ReaderStats:
    """The reader thread's counters: written by it alone, read by anyone as words."""

    received: int = 0  # messages decoded
    filtered: int = 0  # dropped by the user-space mask or as thread events
    names_only: int = 0  # taken for names only: never shown
    malformed: int = 0  # not decodable, or not from the kernel
    lost: int = 0  # kernel overruns (ENOBUFS, one or more events each) + events dropped from a full queue


def kernel_names(ev: RawEvent, snap: Snapshot | None) -> Snapshot | None:
    """Fill what /proc no longer had from the names the kmod sent with the event.

    A process that lives under a millisecond is gone before /proc is read;
    the module copied its comm (and, on exec, its argv) in the kernel.
    """
    if not ev.comm or (snap is not None and snap is not GONE and snap.cmdline):
        return snap
    argv = parse_cmdline(ev.argv)
    comm = ev.comm.decode("utf-8", "surrogateescape")
    if snap is None or snap is GONE:
        return Snapshot(comm, None, None, None, argv, None)
    return snap._replace(comm=snap.comm or comm, cmdline=snap.cmdline or argv)


class EventTaker:
    """What both reader threads do with a decoded event, the Python one and the compiled one's twin half.

    The record of announced processes and of pending reads belongs to
    whichever thread takes the events (``SocketReader``'s own, or the
    consumer's in ``proctop.sources.creader``).
    """

    def __init__(self) -> None:
        self._announced: dict[int, None] = {}  # oldest first (see ``_keep``)
        #: /proc reads not yet known to be of the right process: pid -> their places in
        #: the batch being read, each followed by when the read ended (monotonic ns),
        #: flat (see ``_unsure``).
        self._pending: dict[int, list[int]] = {}
        self._clock_offset = time.time() - time.monotonic()  # kernel stamps -> epoch seconds

    def _keep(self, ev: RawEvent, shown: bool, pre: object, keep: list[Queued]) -> None:
        """Queue one taken event with what /proc shows of it where that cannot wait.

        An exec'd process may exit within a millisecond and a dying one is
        reaped as soon as its parent waits, so their /proc entries are read
        here, not in the (possibly busy) consumer. A dying process is read
        only if its fork or a named exec went by unseen (``_announced``, the
        reader's own record: the consumer's table lags the socket by a queue,
        and in a storm that made the reader read every exit, mostly in vain),
        or its parent was not named from events either (the consumer gives such
        a child no name of its own: ``Enricher.enrich``, fork).
        Every read is pending until the socket is drained (``_unsure``).
        ``pre`` is what the compiled reader already read (``_read``).
        """
        announced = self._announced
        what = ev.what
        snap = None
        read = False
        if what == PROC_EVENT_EXEC:
            snap = self._read(ev, True, pre)
            read = snap is not None
            snap = kernel_names(ev, snap or GONE)
            announced.pop(ev.tgid, None)
            if snap is not GONE and snap is not None and (snap.comm or snap.cmdline):
                self._announce(ev.tgid)
        elif what == PROC_EVENT_FORK:
            if ev.pid == ev.tgid:  # a new process, named after its parent until it execs
                announced.pop(ev.tgid, None)
                if ev.ptgid in announced:  # ...if the parent's name came from events too
                    self._announce(ev.tgid)
        elif what == PROC_EVENT_EXIT and ev.pid == ev.tgid and self._unannounced_exit(ev, pre):
            # Unannounced (older than proctop, or its fork filtered out), or exec'd too fast to read.
            # Not looked up in the consumer's process table: that is the consumer thread's alone
            # (proctop.model.proctable); a stat read (~8 us) per such exit is the price.
            snap = self._zombie(ev, self._read(ev, False, pre))
            read = snap is not None
            snap = kernel_names(ev, snap)
        if read:
            places = self._pending.setdefault(ev.tgid, [])
            places.append(len(keep))
            keep.append((ev, snap, shown))
            places.append(self._read_ended(pre))
        else:
            keep.append((ev, snap, shown))

    def _unannounced_exit(self, ev: RawEvent, pre: object) -> bool:
        """Was ``ev``'s process unannounced (so its exit is read)? Forgets it either way."""
        if ev.tgid in self._announced:
            del self._announced[ev.tgid]
            return False
        return True

    def _announce(self, pid: int) -> None:
        announced = self._announced
        if len(announced) >= ANNOUNCED_MAX:  # exits filtered out never remove theirs
            del announced[next(iter(announced))]
        announced[pid] = None

    def _read(self, ev: RawEvent, argv: bool, pre: object) -> Snapshot | None:
        """What /proc shows of ``ev``'s process now (argv and exe too at an exec)."""
        return snapshot(ev.tgid, argv=argv, cgroup=True)

    def _read_ended(self, pre: object) -> int:
        return time.monotonic_ns()

    def _lost_mark(self, keep: list[Queued]) -> None:
        keep.append(LOST)
        self._announced.clear()  # forks and execs may have been among the lost: read exits again
        # a fork that reused the pid of a read may be among the lost: the reads say nothing
        self._unsure(keep, [i for places in self._pending.values() for i in places[::2]])
        self._pending.clear()

    @staticmethod
    def _unsure(keep: list[Queued], places: list[int]) -> None:
        """Unsay the /proc reads at ``places``: they may be of a later process with the same pid.

        A read names the image of its event only if its pid was not reused before
        the read ended. A reuse starts with a fork whose event comes after: the
        reader keeps each read pending until the socket was drained, and a fork
        of the same pid (a process or a thread: /proc/TID resolves too) stamped
        before the read ended, or a loss that may have hidden one, unsays it. An
        exec unsaid is nameless (``GONE``), an exit falls back on what its fork
        or exec said, or nothing: less, never something false (issue 19).
        """
        for i in places:
            item = keep[i]
            if isinstance(item, tuple):
                ev, _snap, shown = item
                keep[i] = (ev, GONE if ev.what == PROC_EVENT_EXEC else None, shown)

    def _forked(self, fork: RawEvent, keep: list[Queued]) -> None:
        """A fork of a pid read lately: unsay the reads that ended too close before it (``_unsure``)."""
        places = self._pending.pop(fork.pid)
        unsure = [places[i] for i in range(0, len(places), 2) if fork.ts_ns < places[i + 1] + _REUSE_MARGIN_NS]
        self._unsure(keep, unsure)

    def _zombie(self, exit: RawEvent, snap: Snapshot | None) -> Snapshot | None:
        """What a dying process's /proc read says, if it can be of that process.

        Read after its exit: the parent may have reaped it and its pid gone to
        another process. Without fork events (names off) the reuse check above
        cannot help, so the read must at least show the exit's parent and a start
        before the exit (to the clock tick).
        """
        if snap is None:
            return None
        if exit.ptgid and snap.ppid is not None and snap.ppid != exit.ptgid:
            return None
        if snap.start is not None and snap.start > exit.ts_ns / 1e9 + self._clock_offset + TICK:
            return None
        return snap


class SocketReader(EventTaker):
    """The thread that reads a proc connector socket and queues what it took."""

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
        self.sock = sock
        self.idx = idx
        #: The user's mask and the bits taken for names only (see ``_take``): written by
        #: the control thread (``ConnectorSource.set_mask``), one word each.
        self.mask = mask
        self.names_bits = names_bits
        self.threads = threads
        self._renew = renew  # re-sends LISTEN to the kmod now and then (from this thread)
        self.stats = ReaderStats()
        self.decode_stats = DecodeStats()
        self.error: str | None = None  # set once, when reading failed for good
        self.queue: deque[Queued] = deque()
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._read_loop, name="proctop-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * READ_TIMEOUT + 1)
            self._thread = None

    def take(self, timeout: float, most: int) -> list[Queued]:
        """Up to ``most`` queued items, waiting at most ``timeout`` for the first (the consumer's side)."""
        with self.cond:
            if not self.queue and not self.stopped.is_set():
                self.cond.wait(timeout)
            queue = self.queue
            return [queue.popleft() for _ in range(min(len(queue), most))]

    @property
    def finished(self) -> bool:
        return self.stopped.is_set() and not self.queue

    # --- the thread ------------------------------------------------------

    def _read_loop(self) -> None:
        """recv, decode and take each datagram as it comes; queue once the socket is empty.

        Each exec is read from /proc as soon as its datagram is decoded, not
        after the socket was drained (up to 4,096 events before): in a burst
        of 200 execs the first ones were gone before the batch was read
        (bench/naming.py). The consumer is still woken once per drain.
        """
        raw = self.sock.raw
        buf = bytearray(65536)
        idx = self.idx
        dstats = self.decode_stats
        stop = self.stopped
        queue = self.queue
        cond = self.cond
        stats = self.stats
        take = self._take
        poller = select.poll()
        poller.register(raw.fileno(), select.POLLIN)
        timeout_ms = int(READ_TIMEOUT * 1000)
        while not stop.is_set():
            keep: list[Queued] = []
            self._renew()
            try:
                if not poller.poll(timeout_ms):
                    continue
                while len(keep) < _BATCH or (self._pending and len(keep) < _BATCH_HARD):
                    n, (sender, _groups) = raw.recvfrom_into(buf)
                    if sender != KERNEL_PORT:  # a user process unicasting to our port: never shown
                        dstats.malformed += 1
                        continue
                    take(decode_buffer(buf, n, dstats, idx), keep)
            except BlockingIOError:
                self._pending.clear()  # drained: a fork that could undo a read would be in `keep`
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    stats.lost += 1
                    self._lost_mark(keep)
                elif exc.errno == errno.EINTR:
                    pass
                else:
                    if not stop.is_set():
                        self.error = f"reading process events failed: {exc.strerror}"
                    self._lost_mark(keep)
                    stop.set()
            if self._pending:  # queued before the socket was drained: no fork can vouch for them
                self._unsure(keep, [i for places in self._pending.values() for i in places[::2]])
                self._pending.clear()
            stats.malformed = dstats.malformed
            with cond:
                if keep:
                    room = max(0, QUEUE_MAX - len(queue))
                    if len(keep) > room:  # the consumer is far behind: drop, count, say so
                        over = len(keep) - room
                        keep = keep[:room]
                        stats.lost += over
                        if not keep and queue and type(queue[-1]) is int:
                            queue[-1] += over  # one marker for a whole run of drops
                        else:
                            keep.append(over)
                    queue.extend(keep)
                    cond.notify()
        with cond:
            cond.notify_all()

    def _take(self, events: list[RawEvent], keep: list[Queued]) -> None:
        """Apply the mask and the thread filter; snapshot /proc where it cannot wait (``_keep``).

        Events the mask lacks but names needs (``names_bits``) are taken the
        same way and queued as not shown.
        """
        mask = self.mask
        names_bits = self.names_bits
        threads = self.threads
        pending = self._pending
        stats = self.stats
        stats.received += len(events)
        for ev in events:
            what = ev.what
            if what == PROC_EVENT_FORK and ev.pid in pending:
                self._forked(ev, keep)
            if mask and mask_accepts(mask, what, ev.a) and (threads or ev.pid == ev.tgid):
                shown = True
            elif what & names_bits and ev.pid == ev.tgid:
                shown = False
                stats.names_only += 1
            else:
                stats.filtered += 1
                continue
            self._keep(ev, shown, None, keep)
