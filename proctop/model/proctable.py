"""The one process table: what proctop knows of every process, live or recently exited.

One table, one owner. It belongs to the thread that consumes its source
(the thread that calls ``Source.poll``: the UI's reader worker, or the
``--json`` loop). Enrichment fills it there, and the details panel's
ancestry is computed there too: the UI sends the question to that thread and
gets the answer back as a message (``proctop.sinks.ui.app``), so no other thread
ever reads or writes it. There is no lock because there is nothing to share,
and the table checks it: the first thread that uses it is its owner, and a
use from any other thread raises ``TableOwnerError`` (a bug, never a state of
the system; ``tests/core/test_source_contract.py`` drives it without root).

Live processes are kept while they live, up to ``LIVE_LIMIT`` (the least
recently introduced go first): under a mask without successful exits
(``--only nonzero-exit``) nothing tells the table that most of them ended, and
the table is filled from events, never pruned by listing /proc. Exited ones
are kept too, up to ``EXITED_LIMIT`` (the oldest go first), because they are
what the ancestry of an old row is made of: the ``make`` whose compiler
crashed may be gone by the time the user opens the row.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from proctop.model.events import Event, command_line
from proctop.model.kinds import BY_NAME, PARENT_KINDS, Effect

#: Live processes remembered: a forked child shares its parent's lists, an exec'd
#: one holds its own argv (~300-500 bytes an entry), so ~10-20 MB at most. Above
#: the reader thread's own record of announced processes (``connector``), so an
#: exit the reader thinks announced still finds its entry.
LIVE_LIMIT = 40_000
#: Exited processes remembered for ancestry: about 150-500 bytes each
#: (a forked child shares its parent's argv list), so 5-10 MB at most.
EXITED_LIMIT = 20_000
_FORK, _EXIT = Effect.FORK, Effect.EXIT  # as constants: an Enum's attribute costs 75 ns a look (timeit)
#: Ancestors shown at most (a fork bomb's chain is not worth walking to the end).
ANCESTRY_LIMIT = 32


@dataclass(slots=True)
class ProcInfo:
    """What is known of one process (``None``: not known)."""

    pid: int
    start: float | None  # epoch seconds; None when unknown
    #: ``start`` is a kernel timestamp (its fork or exec was seen, nanoseconds),
    #: not /proc's start time, which counts clock ticks (10 ms here).
    exact: bool = False
    comm: str | None = None
    cmdline: list[str] | None = None
    exe: str | None = None
    uid: int | None = None
    ppid: int | None = None
    cgroup: str | None = None  # /proc/PID/cgroup, read at exec (the unit it runs in)


class TableOwnerError(RuntimeError):
    """The process table was used from a thread other than its owner's."""


#: Reads a live process the table does not know yet (the enricher's /proc read); None if gone.
Lookup = Callable[[int], "ProcInfo | None"]


class ProcessTable:
    """pid -> ``ProcInfo`` of live processes, and of the last ``EXITED_LIMIT`` exited ones."""

    def __init__(self, exited_limit: int = EXITED_LIMIT, live_limit: int = LIVE_LIMIT) -> None:
        # OrderedDicts, oldest first: evicting the oldest is popitem(last=False), 0.24 us; a dict's
        # ``del d[next(iter(d))]`` walks the holes its earlier deletions left, 13 us an add at a full
        # table of 32,768 (300,000 adds, process time, here).
        self.live: OrderedDict[int, ProcInfo] = OrderedDict()  # in order of introduction
        self.exited: OrderedDict[int, ProcInfo] = OrderedDict()  # in exit order
        self.exited_limit = exited_limit
        self.live_limit = live_limit
        self.owner: int | None = None  # the thread ident of the consumer, set by the first use

    def _mine(self) -> None:
        """Raise unless the calling thread owns the table (the first caller becomes its owner)."""
        me = threading.get_ident()
        if self.owner != me:
            if self.owner is not None:
                raise TableOwnerError(f"process table used from thread {me}; it belongs to thread {self.owner}")
            self.owner = me

    def add(self, info: ProcInfo) -> ProcInfo:
        """Introduce (or re-introduce) a live process; the longest-known entry goes when full."""
        self._mine()
        live = self.live
        if live.pop(info.pid, None) is None and len(live) >= self.live_limit:
            live.popitem(last=False)
        live[info.pid] = info
        return info

    def retire_all(self) -> None:
        """Every live entry becomes an exited one (see ``Enricher.forget_live``)."""
        self._mine()
        for pid in list(self.live):
            self.retire(pid)

    def retire(self, pid: int) -> ProcInfo | None:
        """The process ended (or left /proc): its entry moves to the exited ones and is returned."""
        self._mine()
        info = self.live.pop(pid, None)
        if info is not None and self.exited_limit:
            exited = self.exited
            exited.pop(pid, None)  # a reused pid: the newest is kept, at the end
            if len(exited) >= self.exited_limit:
                exited.popitem(last=False)
            exited[pid] = info
        return info

    def known(self, pid: int, at: float | None = None) -> ProcInfo | None:
        """The entry of ``pid`` as it was at time ``at`` (epoch seconds; None: now).

        A live process that started after ``at`` is a reuse of the pid: the
        exited entry is the one meant.
        """
        self._mine()
        info = self.live.get(pid)
        if info is not None and (at is None or info.start is None or info.start <= at):
            return info
        return self.exited.get(pid) or info

    def learn(self, ev: Event) -> None:
        """Record what an event says of its process (sources without /proc: a replay).

        The connector's enricher fills the table itself, with more than the events say.
        What differs by kind is read from its row (``proctop.model.kinds``).
        """
        self._mine()
        kind = BY_NAME.get(ev.event)
        if kind is None or not kind.bit or not ev.pid:  # proctop's own rows (lost) name no process
            return
        pid = ev.tgid or ev.pid
        process = ev.pid == pid  # not one of its threads
        if kind.effect is _FORK and process:  # a new process
            self.retire(pid)
            parent = self.live.get(ev.ppid or 0)
            info = self.add(ProcInfo(pid=pid, start=ev.ts, exact=True))
            if parent is not None:
                info.comm, info.cmdline, info.uid = parent.comm, parent.cmdline, parent.uid
        else:
            info = self.live.get(pid) or self.add(ProcInfo(pid=pid, start=None))
        if ev.ppid and (kind.parent or info.ppid is None):  # a tracer is not a parent
            info.ppid = ev.ppid
        if ev.cmdline is not None:
            info.cmdline = ev.cmdline
        if ev.comm is not None:
            info.comm = ev.comm
        if ev.uid is not None and info.uid is None:
            info.uid = ev.uid
        if process:
            for field, source in kind.learns:
                value = getattr(ev, source)
                if value is not None:
                    setattr(info, field, value)
        if kind.effect is _EXIT and ev.ppid and (ev.parent_cmdline or ev.parent_comm):
            parent = self.live.get(ev.ppid) or self.add(ProcInfo(pid=ev.ppid, start=None))
            if parent.cmdline is None and parent.comm is None:
                parent.cmdline, parent.comm = ev.parent_cmdline, ev.parent_comm
        if kind.effect is _EXIT and process:
            self.retire(pid)

    def ancestry(self, ev: Event, lookup: Lookup | None = None, limit: int = ANCESTRY_LIMIT) -> list[tuple[int, str]]:
        """``[(pid, command), ...]``: the parent, grandparent, ... of ``ev``'s process.

        The event's own ``ppid`` starts the chain when it names the parent at
        the time of the event (``Kind.parent``); then the table; ``lookup``
        reads a live ancestor the table has not met. The commands are raw text
        (untrusted: the UI makes them safe).
        """
        self._mine()
        pid = ev.tgid or ev.pid
        ppid = ev.ppid if ev.event in PARENT_KINDS and ev.ppid else None
        if ppid is None:
            info = self.known(pid, ev.ts)
            ppid = info.ppid if info is not None else None
        chain: list[tuple[int, str]] = []
        seen = {pid}
        while ppid and ppid not in seen and len(chain) < limit:
            seen.add(ppid)
            info = self.known(ppid, ev.ts)
            if info is None and lookup is not None:
                info = lookup(ppid)
            chain.append((ppid, command_line(info.cmdline, info.comm) if info is not None else "?"))
            ppid = info.ppid if info is not None else None
        return chain
