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
from proctop.kernel.probe import Capability, refusal
from proctop.kernel.protocol import (
    KMOD_WANT_NAMES,
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
from proctop.model.procfs import GONE, Snapshot, parse_cmdline, snapshot
from proctop.sources.base import Source, SourceDescription

#: Netlink port id of the kernel. Any local process may unicast a datagram to our
#: port (no privilege is needed for unicast); only the kernel sends from port 0.
KERNEL_PORT = 0
_READ_TIMEOUT = 0.25  # how often a blocked reader looks at the stop flag


class _Marker(enum.Enum):
    LOST = "lost"  # queue marker: the kernel reported an overrun here (an enum member so types can tell it apart)


_LOST: Final = _Marker.LOST
#: What the reader queues: an event with what /proc showed at once, the overrun marker,
#: or how many events it dropped from a full queue.
_Queued = tuple[RawEvent, Snapshot | None] | Literal[_Marker.LOST] | int
_RENEW_EVERY = 5.0  # seconds between LISTEN renewals to the kmod (see _renew_subscription)
#: Events held for a consumer that fell behind (~250 bytes each). Past it the
#: reader drops and counts them as lost: memory stays bounded (bench/: a TUI
#: lagging a 25,000 events/s storm grew to 238 MB without this bound).
_QUEUE_MAX = 200_000
#: Processes whose fork or exec the reader saw, kept to its own set (``_take``); past
#: this many (exits filtered out by the mask never remove theirs) it starts afresh.
_ANNOUNCED_MAX = 65536
_POLL_MAX = 4096  # events enriched per poll(): about 0.1 s of work, so quitting stays prompt
_REFRESH_EVERY = 1.0  # seconds between /proc refreshes when fork/exec are not in the mask
_REFRESH_SHARE = 20  # ...and at least 20x the last one's cost: /proc work stays under 5% of a core


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
        self._refreshed = time.monotonic()
        self._refresh_every = _REFRESH_EVERY
        self._mask_sent = 0.0
        self._resync_due = False
        # Monotonic times: every event the kernel sent before `_synced_through` has been
        # queued (the reader found the socket empty after it); before `_settled`, consumed.
        # The process table forgets a process gone from /proc only after its exit settled.
        self._synced_through = 0.0
        self._settled = 0.0
        self._names = self.kind == "kmod" and _kmod_names()
        self._announced: set[int] = set()  # the reader thread's own (see ``_take``)

    # --- control ---------------------------------------------------------

    def start(self) -> None:
        cap = self.capability
        try:
            sock = self._open_socket(cap)
        except OSError as exc:  # the socket layer gives every failure as an OSError with its errno
            raise SourceError(refusal(cap, exc)) from None
        try:
            self.rcvbuf = sock.set_rcvbuf(self.rcvbuf_wanted)
            # Non-blocking + poll(): with a socket timeout CPython polls *before* every
            # recv, so a MSG_DONTWAIT drain would wait out the timeout once per batch.
            sock.raw.setblocking(False)
            self._listen(sock, self.mask)
        except OSError as exc:  # the first LISTEN refused: nothing would ever arrive
            sock.close()
            raise SourceError(refusal(cap, exc)) from None
        self._sock = sock
        _boost_priority()
        self._thread = threading.Thread(target=self._read_loop, name="proctop-reader", daemon=True)
        self._thread.start()

    def set_mask(self, mask: int) -> None:
        """Re-send LISTEN with the new mask on the same socket: no reconnect, no gap."""
        self.mask = mask
        self._send_mask(mask)

    def _send_mask(self, mask: int) -> None:
        """LISTEN with ``mask`` on the live socket; a refusal is kept in ``error`` (the header shows it)."""
        sock = self._sock
        if sock is None:
            return
        try:
            self._listen(sock, mask)
        except OSError as exc:
            self.error = f"cannot change the kernel filter: {exc.strerror}"

    def _listen(self, sock: FilteredProcSocket, mask: int) -> None:
        """Send the LISTEN (or IGNORE) that asks for ``mask``; raises the socket's ``OSError``."""
        if self.kind == "kmod":
            mask &= self.supported  # what the module cannot send need not be asked for
        with self._mask_lock:
            if sock.legacy:
                sock.listen()  # kernels < 6.6 send everything; the reader filters
            elif self._names and mask:  # kmod: also the names of EXEC/EXIT
                sock.listen(mask, flags=KMOD_WANT_NAMES)
            elif mask == 0:
                sock.ignore()  # the kernel reads mask 0 as "all"
            else:
                sock.listen(mask)
            self._mask_sent = time.monotonic()

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
            drained = False  # the socket was read empty: everything sent before `ready` is in `keep`
            self._renew_subscription()
            ready = time.monotonic()
            try:
                if not poller.poll(timeout_ms):
                    with cond:
                        self._synced_through = ready  # the socket was empty then
                    continue
                while len(keep) < 4096:
                    n, (sender, _groups) = raw.recvfrom_into(buf)
                    if sender != KERNEL_PORT:  # a user process unicasting to our port: never shown
                        dstats.malformed += 1
                        continue
                    take(decode_buffer(buf, n, dstats, idx), keep)
            except BlockingIOError:
                drained = True
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
                if drained:
                    self._synced_through = ready
        with cond:
            cond.notify_all()

    def _lost_mark(self, keep: list[_Queued]) -> None:
        keep.append(_LOST)
        self._announced.clear()  # forks and execs may have been among the lost: read exits again

    def _take(self, events: list[RawEvent], keep: list[_Queued]) -> None:
        """Apply the mask and the thread filter; snapshot /proc where it cannot wait.

        An exec'd process may exit within a millisecond and a dying one is
        reaped as soon as its parent waits, so their /proc entries are read
        here, not in the (possibly busy) consumer. A dying process is read
        only if its fork or a named exec went by unseen (``_announced``, the
        reader's own record: the consumer's table lags the socket by a queue,
        and in a storm that made the reader read every exit, mostly in vain).
        """
        mask = self.mask
        threads = self.threads
        announced = self._announced
        self.stats.received += len(events)
        for ev in events:
            what = ev.what
            if not (mask and mask_accepts(mask, what, ev.a) and (threads or ev.pid == ev.tgid)):
                self.stats.filtered += 1
                continue
            snap = None
            if what == PROC_EVENT_EXEC:
                snap = _kernel_names(ev, snapshot(ev.tgid, argv=True, cgroup=True) or GONE)
                if snap is GONE or snap is None or not (snap.comm or snap.cmdline):
                    announced.discard(ev.tgid)
                else:
                    announced.add(ev.tgid)
            elif what == PROC_EVENT_FORK:
                if ev.pid == ev.tgid:  # a new process, named after its parent until it execs
                    if len(announced) >= _ANNOUNCED_MAX:  # exits filtered out never remove theirs
                        announced.clear()
                    announced.add(ev.tgid)
            elif what == PROC_EVENT_EXIT and ev.pid == ev.tgid:
                if ev.tgid in announced:
                    announced.discard(ev.tgid)
                else:  # unannounced (older than proctop, or its fork filtered out), or exec'd too fast to read.
                    # Not looked up in the consumer's process table: that is the consumer thread's alone
                    # (proctop.model.proctable); a stat read (~8 us) per such exit is the price.
                    snap = _kernel_names(ev, snapshot(ev.tgid, argv=False, cgroup=True))
            keep.append((ev, snap))

    # --- consumer --------------------------------------------------------

    def poll(self, timeout: float) -> list[Event]:
        settled = None
        with self._cond:
            if not self._queue and not self._stop.is_set():
                self._cond.wait(timeout)
            queue = self._queue
            take = min(len(queue), _POLL_MAX)  # bounded work per call: a backlog never stalls the caller
            items = [queue.popleft() for _ in range(take)]
            if not queue:  # every event sent before the reader's last drain is in `items`
                settled = self._synced_through
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
            ev = self._enrich(enrich, *item)
            by_type[ev.event] = by_type.get(ev.event, 0) + 1
            out.append(ev)
        if lost_run:
            out.append(self._lost_event(lost_run))
        self.stats.delivered += len(out)
        if settled is not None:
            self._settled = settled
        self._maybe_refresh()
        return out

    def _maybe_refresh(self) -> None:
        """Resynchronise after lost events, and keep names for processes born unannounced.

        Both are rate-limited: one per ``_REFRESH_EVERY``, and no more often than
        ``_REFRESH_SHARE`` times the last one's cost, so on a host with 100,000
        pids (a listing costs tens of ms) the refresh never becomes the /proc
        polling that filtered events exist to avoid, and a storm that overruns
        the socket does not get a full rescan per overrun (which would cause the next).
        """
        now = time.monotonic()
        if now - self._refreshed < self._refresh_every:
            return
        try:
            if self._resync_due:
                self._resync_due = False
                self.enricher.resync(self._settled)
            elif not (self.mask & PROC_EVENT_FORK and self.mask & PROC_EVENT_EXEC):
                self.enricher.refresh(self._settled)
            else:
                return
        except Exception:  # /proc races are no reason to stop
            pass
        done = time.monotonic()
        self._refreshed = done
        self._refresh_every = max(_REFRESH_EVERY, _REFRESH_SHARE * (done - now))

    def _enrich(
        self, enrich: Callable[[RawEvent, Snapshot | None], Event], raw: RawEvent, snap: Snapshot | None
    ) -> Event:
        try:
            return enrich(raw, snap)
        except Exception:  # enrichment is best effort; the event itself must not be lost
            ts = raw.ts_ns / 1e9 + self.enricher.clock_offset
            return Event(ts=ts, event=EVENT_NAMES.get(raw.what, "unknown"), pid=raw.pid, tgid=raw.tgid)

    def _lost_event(self, reports: int) -> Event:
        """A ``lost`` event; the process table is resynchronised from /proc soon after."""
        self._resync_due = True
        return Event(ts=time.time(), event="lost", count=reports)

    @property
    def finished(self) -> bool:
        return self._stop.is_set() and not self._queue
