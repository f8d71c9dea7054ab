"""Events from the kernel's proc connector (or the kmod backport): control and consumer.

Two threads, two classes. The socket reader (``proctop.sources.reader``) does
only what must not wait (recv, decode, filter, the /proc read at exec); this
source subscribes and changes the kernel's mask (the control thread) and
enriches what the reader queued in the consumer's ``poll`` (the consumer
thread, which owns the process table). Each thread writes only its own
counters; ``stats`` is a snapshot of both.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from proctop.errors import ProctopError
from proctop.kernel.probe import Capability, refusal
from proctop.kernel.protocol import (
    KMOD_WANT_NAMES,
    PROC_EVENT_ALL,
    PROC_EVENT_EXEC,
    PROC_EVENT_FORK,
    RawEvent,
)
from proctop.kernel.socket import DEFAULT_RCVBUF, FilteredProcSocket
from proctop.model.enrich import Enricher
from proctop.model.events import Event
from proctop.model.kinds import EVENT_NAMES
from proctop.model.procfs import Snapshot
from proctop.sources.base import Source, SourceDescription, SourceStats
from proctop.sources.choice import reader_kind
from proctop.sources.creader import CReader, reader_class
from proctop.sources.reader import LOST, Intro, SocketReader, introduced

#: What names needs from the kernel when the mask lacks it: the exec (argv is read
#: there) and the fork (a new process, or a pid reused: never named after the old one).
NAMES_BITS = PROC_EVENT_FORK | PROC_EVENT_EXEC
_RENEW_EVERY = 5.0  # seconds between LISTEN renewals to the kmod (see _renew_subscription)
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
        #: Which socket reader runs, the compiled one or its Python twin (proctop.sources.creader):
        #: named in the label (the UI header), the JSON header and ``--version``.
        self.reader = reader_kind()
        self.label = f"{capability.label}, {self.reader} reader"
        self.supported = capability.supported
        self.threads = threads
        self.enricher = enricher if enricher is not None else Enricher()
        self.rcvbuf_wanted = rcvbuf
        self.rcvbuf = 0
        self._sock: FilteredProcSocket | None = None
        self._reader: SocketReader | CReader | None = None
        self._mask_lock = threading.Lock()
        self.error: str | None = None
        self._mask_sent = 0.0
        self._names = self.kind == "kmod" and _kmod_names()
        #: Names under every mask (issue 19): when the mask lacks exec (or fork), they are
        #: subscribed to as well, read like shown ones, and never shown nor counted as shown.
        #: Not with the kmod's names extension, which names EXEC/EXIT in the kernel.
        self.names = names and not self._names
        self._reader_lost = 0  # the reader's lost count last turned into `lost` events (consumer's)

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
        self._reader = reader_class(self.reader)(
            sock,
            idx=cap.idx,
            mask=self.mask,
            names_bits=self._extra_bits(self.mask),
            threads=self.threads,
            renew=self._renew_subscription,
        )
        self._reader.start()

    def set_mask(self, mask: int) -> None:
        """Re-send LISTEN with the new mask on the same socket: no reconnect, no gap."""
        reader = self._reader
        if reader is not None:  # one word each, read by the reader thread
            reader.names_bits = self._extra_bits(mask)
            reader.mask = mask
        self.mask = mask
        self._send_mask(mask)

    def _extra_bits(self, mask: int) -> int:
        """Events asked for names only: what ``NAMES_BITS`` has and ``mask`` lacks (none under mask 0)."""
        if not (self.names and mask) or mask == PROC_EVENT_ALL:
            return 0
        return NAMES_BITS & ~mask

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
        """Send the LISTEN (or IGNORE) that asks for ``mask`` and what names need; raises the socket's ``OSError``."""
        if mask:
            mask |= self._extra_bits(mask)
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
        if self._reader is not None:
            self._reader.stop()
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
            "reader": self.reader,
        }

    # --- consumer --------------------------------------------------------

    @property
    def stats(self) -> SourceStats:
        """A snapshot: the reader's counters (its thread's alone) and the consumer's.

        ``by_type`` is the consumer's dict itself, replaced (never grown) when a
        new kind arrives, so whoever iterates it meanwhile sees a fixed set of keys.
        """
        own = self._stats
        reader = self._reader
        if reader is None:
            return own
        rs = reader.stats
        return SourceStats(
            received=rs.received,
            delivered=own.delivered,
            lost=rs.lost + own.lost,
            malformed=rs.malformed,
            filtered=rs.filtered,
            names_only=rs.names_only,
            by_type=own.by_type,
        )

    def poll(self, timeout: float) -> list[Event]:
        reader = self._reader
        if reader is None:
            return []
        items = reader.take(timeout, _POLL_MAX)  # bounded work per call: a backlog never stalls the caller
        if reader.error and not self.error:
            self.error = reader.error
        out: list[Event] = []
        lost_run = 0
        enrich = self.enricher.enrich
        table = self.enricher.table
        offset = self.enricher.clock_offset
        own = self._stats
        by_type = own.by_type
        for item in items:
            if item is LOST:
                lost_run += 1
                continue
            if isinstance(item, int):  # events the reader dropped from a full queue
                lost_run += item
                continue
            if lost_run:
                out.append(self._lost_event(lost_run))
                lost_run = 0
            if type(item) is Intro:  # names kept by the reader from events it did not queue
                table.add(introduced(item, offset))
                continue
            raw, snap, shown = item  # type: ignore[misc]
            ev = self._enrich(enrich, raw, snap)
            if shown:
                kind = ev.event
                if kind not in by_type:  # a new key: a new dict (see ``stats``)
                    by_type = own.by_type = {**by_type, kind: 0}
                by_type[kind] += 1
                out.append(ev)
        if lost_run:
            out.append(self._lost_event(lost_run))
        own.delivered += len(out)
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
        reader = self._reader
        if reader is None or not reader.finished:
            return False
        self.error = self.error or reader.error  # one word, whoever asks first
        return True
