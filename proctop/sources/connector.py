"""Events from the kernel's proc connector (or the kmod backport), read in a thread.

The reader thread does only what must not wait: recv, decode, the user-space
mask and the thread filter, and the /proc read of an exec'd (or unannounced
dying) process, datagram by datagram, before it is gone. Everything slower
(enrichment, printing, rendering) happens in the consumer's ``poll``, so a
slow consumer makes the in-process queue grow instead of making the kernel
drop events.
"""

from __future__ import annotations

import enum
import errno
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Literal

from proctop.errors import ProctopError
from proctop.kernel.probe import Capability
from proctop.kernel.protocol import (
    KMOD_WANT_NAMES,
    PROC_EVENT_ALL,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    DecodeStats,
    RawEvent,
    decode_buffer,
    mask_accepts,
)
from proctop.kernel.socket import DEFAULT_RCVBUF, FilteredProcSocket
from proctop.model.enrich import Enricher
from proctop.model.events import Event
from proctop.model.kinds import EVENT_NAMES
from proctop.model.procfs import GONE, TICK, Snapshot, parse_cmdline, snapshot
from proctop.sources.base import Source, SourceDescription

#: Netlink port id of the kernel. Any local process may unicast a datagram to our
#: port (no privilege is needed for unicast); only the kernel sends from port 0.
KERNEL_PORT = 0
_READ_TIMEOUT = 0.25  # how often a blocked reader looks at the stop flag


class _Marker(enum.Enum):
    LOST = "lost"  # queue marker: the kernel reported an overrun here (an enum member so types can tell it apart)


_LOST: Final = _Marker.LOST
#: What the reader queues: an event with what /proc showed at once and whether it is
#: shown (False: subscribed for names only, see ``names``), the overrun marker, or how
#: many events it dropped from a full queue.
_Queued = tuple[RawEvent, Snapshot | None, bool] | Literal[_Marker.LOST] | int
#: Events a reader's batch holds before it is queued for the consumer; up to
#: ``_BATCH_HARD`` while a /proc read in it waits for the socket to be drained (``_unsure``).
_BATCH = 4096
_BATCH_HARD = 65536
#: What names needs from the kernel when the mask lacks it: the exec (argv is read
#: there) and the fork (a new process, or a pid reused: never named after the old one).
NAMES_BITS = PROC_EVENT_FORK | PROC_EVENT_EXEC
#: A fork's event is stamped a few microseconds after its pid became visible in
#: /proc (copy_process: attach_pid, then proc_fork_connector); a read that ended less
#: than this before a fork of its pid may have read the new process.
_REUSE_MARGIN_NS = 1_000_000
_RENEW_EVERY = 5.0  # seconds between LISTEN renewals to the kmod (see _renew_subscription)
#: Events held for a consumer that fell behind (~250 bytes each). Past it the
#: reader drops and counts them as lost: memory stays bounded (bench/: a TUI
#: lagging a 25,000 events/s storm grew to 238 MB without this bound).
_QUEUE_MAX = 200_000
#: Processes whose fork or exec the reader saw, kept to its own record (``_take``);
#: past this many (exits filtered out by the mask never remove theirs) the longest
#: known is forgotten. Below the process table's LIVE_LIMIT: a process the reader
#: still counts as announced has its entry in the table.
_ANNOUNCED_MAX = 32768
_POLL_MAX = 4096  # events enriched per poll(): about 0.1 s of work, so quitting stays prompt


#: Nice value taken when allowed (root or CAP_SYS_NICE), as auditd's priority_boost.
BOOSTED_NICE = -10


def _boost_priority() -> None:
    """Run ahead of the processes being watched, so /proc is read before they are gone.

    An exec'd process that lives 1 ms must have its argv read within 1 ms; when
    a storm keeps every core busy a nice-0 reader waits its turn behind it
    (bench/, 3,000 exec/s on 2 cores: 69% of argv read at nice 0, 99% at -10;
    boosting the reader thread alone: 89%). The calling thread is raised
    before the reader is started, so both the reader and the consumer run
    boosted: a consumer preempted while it holds the GIL stalls the reader
    too. On Linux setpriority() on 0 changes the calling thread only (threads
    started after inherit it); without the privilege nothing changes.
    """
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > BOOSTED_NICE:
            os.setpriority(os.PRIO_PROCESS, 0, BOOSTED_NICE)
    except OSError:
        pass


_KMOD_EXTENSIONS = "/sys/module/proctop_cn/parameters/extensions"


def _kmod_names() -> bool:
    """Whether the loaded proctop_cn can name EXEC/EXIT events itself (older ones cannot)."""
    try:
        with open(_KMOD_EXTENSIONS) as f:
            return bool(int(f.read()) & KMOD_WANT_NAMES)
    except (OSError, ValueError):
        return False


def _kernel_names(ev: RawEvent, snap: Snapshot | None) -> Snapshot | None:
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


def _open_proc_socket(cap: Capability) -> FilteredProcSocket:
    return FilteredProcSocket.open(idx=cap.idx, val=cap.val, groups=cap.groups, legacy=cap.legacy)


class SourceError(ProctopError):
    """The socket could not be opened or subscribed; the message says why."""

    status = 3


class ConnectorSource(Source):
    """Process events from a netlink connector socket, filtered by ``mask``."""

    def __init__(
        self,
        capability: Capability,
        mask: int,
        *,
        threads: bool = False,
        names: bool = True,
        enricher: Enricher | None = None,
        rcvbuf: int = DEFAULT_RCVBUF,
        open_socket: Callable[[Capability], FilteredProcSocket] | None = None,
    ) -> None:
        super().__init__(mask)
        #: How the socket is made: the kernel's, unless a test feeds encoded kernel
        #: messages through a socket of its own (tests/core/test_source_contract.py).
        self._open_socket = open_socket or _open_proc_socket
        self.capability = capability
        self.kind = capability.kind
        self.label = capability.label
        self.supported = capability.supported
        self.threads = threads
        self.enricher = enricher if enricher is not None else Enricher()
        self.rcvbuf_wanted = rcvbuf
        self.rcvbuf = 0
        self.decode_stats = DecodeStats()
        self._queue: deque[_Queued] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._sock: FilteredProcSocket | None = None
        self._thread: threading.Thread | None = None
        self._mask_lock = threading.Lock()
        self.error: str | None = None
        self._mask_sent = 0.0
        self._names = self.kind == "kmod" and _kmod_names()
        #: Names under every mask (issue 19): when the mask lacks exec (or fork), they are
        #: subscribed to as well, read like shown ones, and never shown nor counted as shown.
        #: Not with the kmod's names extension, which names EXEC/EXIT in the kernel.
        self.names = names and not self._names
        self._names_bits = self._extra_bits(mask)  # read by the reader thread (one word)
        self._announced: dict[int, None] = {}  # the reader thread's own, oldest first (see ``_take``)
        #: The reader's /proc reads not yet known to be of the right process: pid -> their
        #: places in the batch being read, each followed by when the read ended (monotonic
        #: ns), flat (see ``_unsure``). The reader thread's own.
        self._pending: dict[int, list[int]] = {}
        self._clock_offset = time.time() - time.monotonic()  # kernel stamps -> epoch seconds

    # --- control ---------------------------------------------------------

    def start(self) -> None:
        cap = self.capability
        try:
            sock = self._open_socket(cap)
        except OSError as exc:
            if exc.errno == errno.EPERM:
                raise SourceError(
                    f"permission denied joining the proc connector ({cap.label}): "
                    "this kernel wants root for process events"
                ) from None
            raise SourceError(f"cannot open the proc connector socket: {exc.strerror}") from None
        self.rcvbuf = sock.set_rcvbuf(self.rcvbuf_wanted)
        self._sock = sock
        # Non-blocking + poll(): with a socket timeout CPython polls *before* every
        # recv, so a MSG_DONTWAIT drain would wait out the timeout once per batch.
        sock.raw.setblocking(False)
        self._send_mask(self.mask)
        _boost_priority()
        self._thread = threading.Thread(target=self._read_loop, name="proctop-reader", daemon=True)
        self._thread.start()

    def set_mask(self, mask: int) -> None:
        """Re-send LISTEN with the new mask on the same socket: no reconnect, no gap."""
        self._names_bits = self._extra_bits(mask)
        self.mask = mask
        self._send_mask(mask)

    def _extra_bits(self, mask: int) -> int:
        """Events asked for names only: what ``NAMES_BITS`` has and ``mask`` lacks (none under mask 0)."""
        if not (self.names and mask) or mask == PROC_EVENT_ALL:
            return 0
        return NAMES_BITS & ~mask

    def _send_mask(self, mask: int) -> None:
        sock = self._sock
        if sock is None:
            return
        if mask:
            mask |= self._extra_bits(mask)
        if self.kind == "kmod":
            mask &= self.supported  # what the module cannot send need not be asked for
        with self._mask_lock:
            try:
                if sock.legacy:
                    sock.listen()  # kernels < 6.6 send everything; the reader filters
                elif self._names and mask:  # kmod: also the names of EXEC/EXIT
                    sock.listen(mask, flags=KMOD_WANT_NAMES)
                elif mask == 0:
                    sock.ignore()  # the kernel reads mask 0 as "all"
                else:
                    sock.listen(mask)
                self._mask_sent = time.monotonic()
            except OSError as exc:
                self.error = f"cannot change the kernel filter: {exc.strerror}"

    def _renew_subscription(self) -> None:
        """Re-send LISTEN now and then to the kmod: a reloaded module forgot its subscribers.

        The upstream connector keeps the subscription in the socket itself, so
        only the module's unicast table needs this. One small message every
        ``_RENEW_EVERY`` seconds; a LISTEN with an unchanged mask changes nothing.
        """
        if self.kind == "kmod" and time.monotonic() - self._mask_sent >= _RENEW_EVERY:
            self._send_mask(self.mask)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * _READ_TIMEOUT + 1)
            self._thread = None
        if self._sock is not None:
            try:
                with self._mask_lock:
                    self._sock.ignore()
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        self.enricher.close()

    def ancestry(self, ev: Event) -> list[tuple[int, str]]:
        """From the enricher's table, reading /proc for a live ancestor it has not met."""
        return self.enricher.table.ancestry(ev, self.enricher.lookup)

    def describe(self) -> SourceDescription:
        return {
            "source": self.kind,
            "label": self.label,
            "kernel": self.capability.kernel,
            "kernel_filters": self.capability.kernel_filters,
            "rcvbuf": self.rcvbuf,
            "names": self.names,
        }

    # --- reader thread ---------------------------------------------------

    def _read_loop(self) -> None:
        """recv, decode and take each datagram as it comes; queue once the socket is empty.

        Each exec is read from /proc as soon as its datagram is decoded, not
        after the socket was drained (up to 4,096 events before): in a burst
        of 200 execs the first ones were gone before the batch was read
        (bench/naming.py). The consumer is still woken once per drain.
        """
        assert self._sock is not None
        raw = self._sock.raw
        buf = bytearray(65536)
        idx = self.capability.idx
        dstats = self.decode_stats
        stop = self._stop
        queue = self._queue
        cond = self._cond
        stats = self.stats
        take = self._take
        poller = select.poll()
        poller.register(raw.fileno(), select.POLLIN)
        timeout_ms = int(_READ_TIMEOUT * 1000)
        while not stop.is_set():
            keep: list[_Queued] = []
            self._renew_subscription()
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
                    room = max(0, _QUEUE_MAX - len(queue))
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

    def _lost_mark(self, keep: list[_Queued]) -> None:
        keep.append(_LOST)
        self._announced.clear()  # forks and execs may have been among the lost: read exits again
        # a fork that reused the pid of a read may be among the lost: the reads say nothing
        self._unsure(keep, [i for places in self._pending.values() for i in places[::2]])
        self._pending.clear()

    @staticmethod
    def _unsure(keep: list[_Queued], places: list[int]) -> None:
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

    def _take(self, events: list[RawEvent], keep: list[_Queued]) -> None:
        """Apply the mask and the thread filter; snapshot /proc where it cannot wait.

        An exec'd process may exit within a millisecond and a dying one is
        reaped as soon as its parent waits, so their /proc entries are read
        here, not in the (possibly busy) consumer. A dying process is read
        only if its fork or a named exec went by unseen (``_announced``, the
        reader's own record: the consumer's table lags the socket by a queue,
        and in a storm that made the reader read every exit, mostly in vain).
        Events the mask lacks but names needs (``_names_bits``) are taken the
        same way and queued as not shown. Every read is pending until the
        socket is drained (``_unsure``).
        """
        mask = self.mask
        names_bits = self._names_bits
        threads = self.threads
        announced = self._announced
        pending = self._pending
        stats = self.stats

        def announce(pid: int) -> None:
            if len(announced) >= _ANNOUNCED_MAX:  # exits filtered out never remove theirs
                del announced[next(iter(announced))]
            announced[pid] = None

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
            snap = None
            read = False
            if what == PROC_EVENT_EXEC:
                snap = snapshot(ev.tgid, argv=True, cgroup=True)
                read = snap is not None
                snap = _kernel_names(ev, snap or GONE)
                announced.pop(ev.tgid, None)
                if snap is not GONE and snap is not None and (snap.comm or snap.cmdline):
                    announce(ev.tgid)
            elif what == PROC_EVENT_FORK:
                if ev.pid == ev.tgid:  # a new process, named after its parent until it execs
                    announced.pop(ev.tgid, None)
                    announce(ev.tgid)
            elif what == PROC_EVENT_EXIT and ev.pid == ev.tgid:
                if ev.tgid in announced:
                    del announced[ev.tgid]
                else:  # unannounced (older than proctop, or its fork filtered out), or exec'd too fast to read.
                    # Not looked up in the consumer's process table: that is the consumer thread's alone
                    # (proctop.model.proctable); a stat read (~8 us) per such exit is the price.
                    snap = self._zombie(ev, snapshot(ev.tgid, argv=False, cgroup=True))
                    read = snap is not None
                    snap = _kernel_names(ev, snap)
            if read:
                pending.setdefault(ev.tgid, []).append(len(keep))
                keep.append((ev, snap, shown))
                pending[ev.tgid].append(time.monotonic_ns())
            else:
                keep.append((ev, snap, shown))

    def _forked(self, fork: RawEvent, keep: list[_Queued]) -> None:
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

    # --- consumer --------------------------------------------------------

    def poll(self, timeout: float) -> list[Event]:
        with self._cond:
            if not self._queue and not self._stop.is_set():
                self._cond.wait(timeout)
            queue = self._queue
            take = min(len(queue), _POLL_MAX)  # bounded work per call: a backlog never stalls the caller
            items = [queue.popleft() for _ in range(take)]
        out: list[Event] = []
        lost_run = 0
        enrich = self.enricher.enrich
        by_type = self.stats.by_type
        for item in items:
            if item is _LOST:
                lost_run += 1
                continue
            if isinstance(item, int):  # events the reader dropped from a full queue
                lost_run += item
                continue
            if lost_run:
                out.append(self._lost_event(lost_run))
                lost_run = 0
            raw, snap, shown = item
            ev = self._enrich(enrich, raw, snap)
            if shown:
                by_type[ev.event] = by_type.get(ev.event, 0) + 1
                out.append(ev)
        if lost_run:
            out.append(self._lost_event(lost_run))
        self.stats.delivered += len(out)
        return out

    def _enrich(
        self, enrich: Callable[[RawEvent, Snapshot | None], Event], raw: RawEvent, snap: Snapshot | None
    ) -> Event:
        try:
            return enrich(raw, snap)
        except Exception:  # enrichment is best effort; the event itself must not be lost
            ts = raw.ts_ns / 1e9 + self.enricher.clock_offset
            return Event(ts=ts, event=EVENT_NAMES.get(raw.what, "unknown"), pid=raw.pid, tgid=raw.tgid)

    def _lost_event(self, reports: int) -> Event:
        """A ``lost`` event. The table forgets its live entries (a pid may have been
        reused among the lost events): never a rescan of /proc (issue 20)."""
        self.enricher.forget_live()
        return Event(ts=time.time(), event="lost", count=reports)

    @property
    def finished(self) -> bool:
        return self._stop.is_set() and not self._queue
