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
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

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
from proctop.model.proctable import ProcInfo

#: Netlink port id of the kernel. Any local process may unicast a datagram to our
#: port (no privilege is needed for unicast); only the kernel sends from port 0.
KERNEL_PORT = 0
READ_TIMEOUT = 0.25  # how often a blocked reader looks at the stop flag


class _Marker(enum.Enum):
    LOST = "lost"  # queue marker: the kernel reported an overrun here (an enum member so types can tell it apart)


LOST: Final = _Marker.LOST


class Intro(NamedTuple):
    """What the reader knows of a process from events it did not queue, handed before an event that needs it.

    Names under every mask (issue 19) without the names-only events reaching the
    consumer (issue 20): the reader keeps the names of live processes itself
    (``Known``) and queues this before a shown event of the process (and, at a
    fork or exit, of its parent); the consumer puts it in its table
    (``introduced``) as the enricher would have from those events.
    """

    pid: int
    start_ns: int  # the kernel stamp of its fork (of its exec when the fork went unseen)
    ppid: int | None  # from its fork, or what the exec before this one knew
    names: list[Snapshot | None]  # one cell: what its (or its parent's) exec read; None: nameless or unsaid
    own: bool  # the read is its own exec's (its ppid counts), not its parent's
    uid: int | None  # from before its last exec, where the read lacks it
    cgroup: str | None  # likewise


#: What the reader queues: an event with what /proc showed at once and whether it is
#: shown (always True since names-only events stay in the reader), a process's
#: introduction, the overrun marker, or how many events it dropped from a full queue.
Queued = tuple[RawEvent, Snapshot | None, bool] | Intro | Literal[_Marker.LOST] | int
#: Events a reader's batch holds before it is queued for the consumer; up to
#: ``_BATCH_HARD`` while a /proc read in it waits for the socket to be drained (``_unsure``).
_BATCH = 4096
_BATCH_HARD = 65536
#: A fork's event is stamped a few microseconds after its pid became visible in
#: /proc (copy_process: attach_pid, then proc_fork_connector); a read that ended less
#: than this before a fork of its pid may have read the new process.
_REUSE_MARGIN_NS = 1_000_000
#: How long ``take`` waits for more once something is queued, and for how many: showing waits,
#: never reading (the compiled reader's LINGER_NS/LINGER_ITEMS; see there for the figure).
_LINGER = 0.005
_LINGER_ITEMS = 1024
#: Events held for a consumer that fell behind (~250 bytes each). Past it the
#: reader drops and counts them as lost: memory stays bounded (bench/: a TUI
#: lagging a 25,000 events/s storm grew to 238 MB without this bound).
QUEUE_MAX = 200_000
#: Processes whose fork or exec the reader saw, kept to its own record (``Known``);
#: past this many (exits filtered out by the kernel never remove theirs) the longest
#: known is forgotten. Below the process table's LIVE_LIMIT.
ANNOUNCED_MAX = 32768


@dataclass
class ReaderStats:
    """The reader thread's counters: written by it alone, read by anyone as words."""

    received: int = 0  # messages decoded
    filtered: int = 0  # dropped by the user-space mask or as thread events
    names_only: int = 0  # taken for names only: never shown
    malformed: int = 0  # not decodable, or not from the kernel
    lost: int = 0  # kernel overruns (ENOBUFS, one or more events each) + events dropped from a full queue


@dataclass(slots=True)
class Known:
    """A live process as the reader thread knows it from events (see ``Intro``); replaced, not changed.

    ``names`` is shared with the children it forked before its next exec, so a
    read found to be of another process (``EventTaker._unsure``) is unsaid for
    all of them at once.
    """

    start_ns: int
    ppid: int | None
    names: list[Snapshot | None]
    own: bool
    uid: int | None
    cgroup: str | None
    announced: bool  # its fork or a named exec went by: its exit is not read (``_keep``)
    #: Introduced already: the consumer's table has it, and what the table learnt since (a shown
    #: comm event, a lazily read cgroup) is newer than this record.
    handed: bool = False

    def effective(self) -> tuple[int | None, int | None, str | None]:
        """ppid, uid and cgroup as the enricher's table entry would have them."""
        snap = self.names[0]
        if snap is None:
            return self.ppid, self.uid, self.cgroup
        ppid = snap.ppid if self.own and snap.ppid is not None else self.ppid
        return ppid, self.uid if snap.uid is None else snap.uid, self.cgroup if snap.cgroup is None else snap.cgroup


def introduced(intro: Intro, clock_offset: float) -> ProcInfo:
    """The table entry an ``Intro`` stands for: what the enricher made of the fork and exec it replaces."""
    snap = intro.names[0]
    info = ProcInfo(pid=intro.pid, start=intro.start_ns / 1e9 + clock_offset, exact=True, uid=intro.uid,
                    ppid=intro.ppid, cgroup=intro.cgroup)  # fmt: skip
    if snap is not None:
        info.comm, info.cmdline, info.exe = snap.comm, snap.cmdline, snap.exe
        if intro.own and snap.ppid is not None:
            info.ppid = snap.ppid
        if snap.uid is not None:
            info.uid = snap.uid
        if snap.cgroup is not None:
            info.cgroup = snap.cgroup
    return info


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


#: A read waiting to be vouched for: its place in the batch (-1: not queued), the
#: record's cell it named (or None), and when it ended (monotonic ns).
_Pending = tuple[int, "list[Snapshot | None] | None", int]


class EventTaker:
    """What the Python reader thread does with a decoded event (the compiled one does it in C).

    The record of live processes (``_known``) and of pending reads belongs to
    the thread that takes the events.
    """

    def __init__(self) -> None:
        #: Oldest first (see ``_remember``). An OrderedDict: evicting a plain dict's first key
        #: again and again scans the holes left before it (O(n) a time: a fork storm under
        #: nonzero-exit cost 3x its CPU so).
        self._known: OrderedDict[int, Known] = OrderedDict()
        #: /proc reads not yet known to be of the right process: pid -> its reads (see ``_unsure``).
        self._pending: dict[int, list[_Pending]] = {}
        self._clock_offset = time.time() - time.monotonic()  # kernel stamps -> epoch seconds

    def _keep(self, ev: RawEvent, shown: bool, keep: list[Queued], intro: bool) -> None:
        """Take one event: read /proc where that cannot wait, keep the names, queue it if ``shown``.

        An exec'd process may exit within a millisecond and a dying one is
        reaped as soon as its parent waits, so their /proc entries are read
        here, not in the (possibly busy) consumer. A dying process is read
        only if its fork or a named exec went by unseen (``Known.announced``:
        the consumer's table lags the socket by a queue, and in a storm that
        made the reader read every exit, mostly in vain), or its parent was
        not named from events either. Every read is pending until the socket
        is drained (``_unsure``). With ``intro`` (names under a mask that lacks
        fork or exec) a shown event is preceded by what the reader knows of its
        process (and of the parent, at a fork or exit): the names-only events
        themselves never reach the consumer.
        """
        known = self._known
        what = ev.what
        if intro and shown:
            self._introduce(ev, keep)
        snap = None
        read = False  # /proc was read and found the process: pending (``_unsure``)
        cell: list[Snapshot | None] | None = None  # the record's names that read made
        if what == PROC_EVENT_EXEC:
            found = self._read(ev, True, None)
            old = known.pop(ev.tgid, None)
            snap = kernel_names(ev, found or GONE)
            named = snap is not GONE and snap is not None and bool(snap.comm or snap.cmdline)
            cell = [found]
            if old is None:  # shown: the consumer's table has it from the event (``handed``)
                record = Known(ev.ts_ns, None, cell, True, None, None, named, shown)
            else:
                ppid, uid, cgroup = old.effective()
                record = Known(old.start_ns, ppid, cell, True, uid, cgroup, named, shown)
            self._remember(ev.tgid, record)
            read = found is not None
        elif what == PROC_EVENT_FORK:
            if ev.pid == ev.tgid:  # a new process, named after its parent until it execs
                if ev.tgid in known:
                    del known[ev.tgid]
                parent = known.get(ev.ptgid)
                if parent is None:
                    self._remember(ev.tgid, Known(ev.ts_ns, ev.ptgid, [None], False, None, None, False, shown))
                else:
                    _ppid, uid, cgroup = parent.effective()
                    child = Known(ev.ts_ns, ev.ptgid, parent.names, False, uid, cgroup, parent.announced, shown)
                    self._remember(ev.tgid, child)
        elif what == PROC_EVENT_EXIT and ev.pid == ev.tgid:
            gone = known.pop(ev.tgid, None)
            if gone is None or not gone.announced:
                # Unannounced (older than proctop, or its fork filtered out), or exec'd too fast to read.
                # Not looked up in the consumer's process table: that is the consumer thread's alone
                # (proctop.model.proctable); a stat read (~8 us) per such exit is the price.
                found = self._zombie(ev, self._read(ev, False, None))
                snap = kernel_names(ev, found)
                read = found is not None
        if read:
            place = len(keep) if shown else -1
            self._pending.setdefault(ev.tgid, []).append((place, cell, time.monotonic_ns()))
        if shown:
            keep.append((ev, snap, True))

    def _introduce(self, ev: RawEvent, keep: list[Queued]) -> None:
        """Queue what the reader knows of ``ev``'s process (not a fork's child: new) and its parent."""
        what = ev.what
        if what == PROC_EVENT_FORK:
            pids: tuple[int, ...] = (ev.ptgid,)
        else:
            pids = (ev.tgid, ev.ptgid) if what == PROC_EVENT_EXIT else (ev.tgid,)
        known = self._known
        for pid in pids:
            k = known.get(pid)
            if k is not None and not k.handed:
                k.handed = True
                keep.append(Intro(pid, k.start_ns, k.ppid, k.names, k.own, k.uid, k.cgroup))

    def _remember(self, pid: int, record: Known) -> None:
        known = self._known
        if len(known) >= ANNOUNCED_MAX:  # exits filtered out never remove theirs
            known.popitem(last=False)
        known[pid] = record

    def _read(self, ev: RawEvent, argv: bool, pre: object) -> Snapshot | None:
        """What /proc shows of ``ev``'s process now (argv and exe too at an exec); ``pre``: what the
        compiled reader's thread read (``proctop.sources.creader``)."""
        return snapshot(ev.tgid, argv=argv, cgroup=True)

    def _lost_mark(self, keep: list[Queued]) -> None:
        keep.append(LOST)
        self._known.clear()  # forks and execs may have been among the lost: a pid may have been reused unseen
        # a fork that reused the pid of a read may be among the lost: the reads say nothing
        self._unsure(keep, [p for reads in self._pending.values() for p in reads])
        self._pending.clear()

    @staticmethod
    def _unsure(keep: list[Queued], reads: list[_Pending]) -> None:
        """Unsay ``reads``: they may be of a later process with the same pid.

        A read names the image of its event only if its pid was not reused before
        the read ended. A reuse starts with a fork whose event comes after: the
        reader keeps each read pending until the socket was drained, and a fork
        of the same pid (a process or a thread: /proc/TID resolves too) stamped
        before the read ended, or a loss that may have hidden one, unsays it. An
        exec unsaid is nameless (``GONE``), and so are the children that inherited
        its names (the shared cell); an exit falls back on what its fork or exec
        said, or nothing: less, never something false (issue 19).
        """
        for place, cell, _end in reads:
            if cell is not None:
                cell[0] = None
            if place >= 0:
                item = keep[place]
                if isinstance(item, tuple) and not isinstance(item, Intro):
                    ev, _snap, shown = item
                    keep[place] = (ev, GONE if ev.what == PROC_EVENT_EXEC else None, shown)

    def _forked(self, fork: RawEvent, keep: list[Queued]) -> None:
        """A fork of a pid read lately: unsay the reads that ended too close before it (``_unsure``)."""
        reads = self._pending.pop(fork.pid)
        self._unsure(keep, [r for r in reads if fork.ts_ns < r[2] + _REUSE_MARGIN_NS])

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
            queue = self.queue
            if not queue and not self.stopped.is_set():
                self.cond.wait(timeout)
            if queue and timeout > 0 and len(queue) < min(most, _LINGER_ITEMS):
                # Linger as the compiled reader does (_creader.c, take_raw): a storm is taken in batches of
                # hundreds, not of the few events each drain makes (a turn of Python and a writer wake-up each)
                until = time.monotonic() + _LINGER
                while len(queue) < min(most, _LINGER_ITEMS) and not self.stopped.is_set():
                    left = until - time.monotonic()
                    if left <= 0 or not self.cond.wait(left):
                        break
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
                first = stats.received  # names-only events are taken and never kept: count what was taken
                while stats.received - first < _BATCH or (self._pending and stats.received - first < _BATCH_HARD):
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
                self._unsure(keep, [p for reads in self._pending.values() for p in reads])
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
        same way for the record of live processes, and never queued.
        """
        mask = self.mask
        names_bits = self.names_bits
        threads = self.threads
        pending = self._pending
        stats = self.stats
        stats.received += len(events)
        intro = names_bits != 0
        for ev in events:
            what = ev.what
            if what == PROC_EVENT_FORK and ev.pid in pending:
                self._forked(ev, keep)
            if mask and mask_accepts(mask, what, ev.a) and (threads or ev.pid == ev.tgid):
                self._keep(ev, True, keep, intro)
            elif what & names_bits and ev.pid == ev.tgid:
                stats.names_only += 1
                self._keep(ev, False, keep, intro)
            else:
                stats.filtered += 1
