"""What we know about each process, so an event can say who ran what.

The kernel's events carry only numbers. The table here is keyed by pid and
filled from events alone, never from a listing of /proc (with 100,000 live
processes a pass over /proc cost seconds of start-up and a core's percents
of idle CPU, issue 20):

* at fork: the child is a copy of its parent (no /proc read needed),
* at exec: argv, exe, comm, owner and cgroup, read by the reader thread the
  moment the event is decoded (``procfs.snapshot``),
* at exit: lifetime is attached and the entry retired.

A process the events never introduced (older than proctop, or its events
lost) is read alone when it is needed: a parent when its child forks or
fails, an ancestor for the details panel (``lookup``, one pid at a time). A
dying process nobody introduced is described from what /proc still shows of
the zombie (comm, ppid, owner). After lost events the table forgets its live
entries (a pid may have been reused unseen) instead of rescanning /proc.
NoSuchProcess, AccessDenied and ZombieProcess never escape: the field is None.
"""

from __future__ import annotations

import pwd
import time
from collections.abc import Callable
from typing import TypeVar

import psutil

from proctop.kernel.protocol import RawEvent
from proctop.model.events import Event, decode_wait_status
from proctop.model.kinds import BY_WHAT, KINDS, Effect, Kind, KindTableError
from proctop.model.procfs import (
    GONE,
    PSUTIL_START_SHIFT,
    TICK,
    Snapshot,
    read_cgroup,
    read_cmdline,
    read_comm,
    read_exe,
)
from proctop.model.proctable import ProcessTable, ProcInfo
from proctop.model.reasons import SystemFacts, exit_reason
from proctop.model.units import unit_of

_PSUTIL_ERRORS = (psutil.Error, OSError, ValueError)
T = TypeVar("T")
#: What an ``Effect`` does, given the kind, the wire event, the event being made, its time and /proc's view.
_Handler = Callable[[Kind, RawEvent, Event, float, "Snapshot | None"], "ProcInfo | None"]


class UserNames:
    """uid -> user name, cached: pwd lookups are slow and names rarely change."""

    def __init__(self) -> None:
        self._names: dict[int, str | None] = {}

    def __call__(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        try:
            return self._names[uid]
        except KeyError:
            try:
                name: str | None = pwd.getpwuid(uid).pw_name
            except (KeyError, OSError):
                name = str(uid)
            self._names[uid] = name
            return name


def read_proc(pid: int) -> ProcInfo | None:
    """Read one process through psutil; None if it is gone. Partial on AccessDenied.

    For lookups off the event path (a parent, a process alive since before
    proctop started), where psutil's per-field errors fit and 45 us do not
    matter: lineage, owner and start from psutil. The names (comm, argv, exe)
    are read as the reader thread's snapshots read them (``procfs``): psutil's
    ``cmdline()`` splits a setproctitle'd line on its spaces and its
    ``name()`` lengthens a 15-byte comm, and a process must have one name
    whichever reader saw it first.
    """
    try:
        proc = psutil.Process(pid)
    except _PSUTIL_ERRORS:
        return None
    info = ProcInfo(pid=pid, start=None)
    with proc.oneshot():
        info.start = _precise_start(_safe(proc.create_time))
        info.ppid = _safe(proc.ppid)
        uids = _safe(proc.uids)
        info.uid = uids.effective if uids else None  # as /proc's owner, which snapshots use
    info.comm = read_comm(pid)
    info.cmdline = read_cmdline(pid)  # None for a zombie, whose argv is gone
    info.exe = read_exe(pid)
    return info


def _precise_start(create_time: float | None) -> float | None:
    """psutil's start time on the snapshots' scale (see ``procfs.PSUTIL_START_SHIFT``)."""
    return None if create_time is None else create_time + PSUTIL_START_SHIFT


def _from_snapshot(pid: int, snap: Snapshot) -> ProcInfo:
    return ProcInfo(
        pid=pid,
        start=snap.start,
        comm=snap.comm,
        cmdline=snap.cmdline,
        exe=snap.exe,
        uid=snap.uid,
        ppid=snap.ppid,
        cgroup=snap.cgroup,
    )


def _safe(getter: Callable[[], T]) -> T | None:
    try:
        return getter()
    except _PSUTIL_ERRORS:
        return None


class Enricher:
    """Turns ``RawEvent`` into ``Event`` with names, owners and lifetimes."""

    def __init__(self, *, clock_offset: float | None = None) -> None:
        #: The process table (proctop.model.proctable): owned by the thread that calls ``enrich``.
        self.table = ProcessTable()
        self.facts = SystemFacts()
        self.user_name = UserNames()
        # The kernel stamps events with CLOCK_MONOTONIC (ktime_get_ns).
        self.clock_offset = clock_offset if clock_offset is not None else time.time() - time.monotonic()
        effects: dict[Effect, _Handler] = {
            Effect.FORK: self._fork,
            Effect.EXEC: self._exec,
            Effect.EXIT: self._exit,
            Effect.NOTE: self._note,
        }
        #: Event type to its kind and the handler of its effect: one dict lookup an event (an Enum
        #: comparison costs 75 ns, a third of the dispatch, timeit here).
        self._kinds = {what: (kind, effects[kind.effect]) for what, kind in BY_WHAT.items()}

    @property
    def procs(self) -> dict[int, ProcInfo]:
        """The live processes (``table.live``)."""
        return self.table.live

    def forget_live(self) -> None:
        """Events were lost: any live entry may belong to a pid reused unseen (a wrong name).

        The entries move to the exited ones (the ancestry of rows already shown
        still finds them); live processes are read again one by one when needed.
        """
        self.table.retire_all()

    def lookup(self, pid: int) -> ProcInfo | None:
        """The cached entry, else a live read (cached for next time)."""
        info = self.procs.get(pid)
        if info is None:
            info = read_proc(pid)
            if info is not None:
                self.table.add(info)
        return info

    def enrich(self, raw: RawEvent, snap: Snapshot | None = None) -> Event:
        """Describe ``raw``; ``snap`` is what the reader thread saw of /proc at once.

        What differs by kind is read from its row (``proctop.model.kinds``): the
        fields copied from the wire, then its ``Effect`` on the process table.
        """
        kind, effect = self._kinds.get(raw.what) or (_UNKNOWN, self._note)
        ts = raw.ts_ns / 1e9 + self.clock_offset
        ev = Event(ts=ts, event=kind.name, pid=raw.pid, tgid=raw.tgid, cpu=raw.cpu)
        for field, wire in kind.copies:
            value = getattr(raw, wire)
            # bytes from a process (a comm) are decoded as argv is: an undecodable byte stays \udcXX
            setattr(ev, field, value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value)
        info = effect(kind, raw, ev, ts, snap)
        if info is not None:
            if ev.comm is None:
                ev.comm = info.comm
            ev.cmdline = info.cmdline
            if ev.uid is None:
                ev.uid = info.uid
            ev.user = self.user_name(info.uid)
            if ev.ppid is None:
                ev.ppid = info.ppid
        return ev

    def _fork(self, kind: Kind, raw: RawEvent, ev: Event, ts: float, snap: Snapshot | None) -> ProcInfo | None:
        """A new process is a copy of its parent until it execs; a new thread is its process."""
        parent = self.procs.get(raw.ptgid) or self.lookup(raw.ptgid)
        if raw.pid != raw.tgid:
            return parent
        if parent is not None and not parent.exact:
            # Read from /proc after the fork (a lookup): the parent may have exec'd
            # since, and its child is a copy of the image before. It says less:
            # its parent's pid (`child of ...` at its exit) but no name (issue 19).
            parent = ProcInfo(pid=parent.pid, start=None, uid=parent.uid, cgroup=parent.cgroup)
        return self.table.add(
            ProcInfo(
                pid=raw.pid,
                start=ts,
                exact=True,
                comm=parent.comm if parent else None,
                cmdline=parent.cmdline if parent else None,
                exe=parent.exe if parent else None,
                uid=parent.uid if parent else None,
                ppid=raw.ptgid,
                cgroup=parent.cgroup if parent else None,
            )
        )

    def _exec(self, kind: Kind, raw: RawEvent, ev: Event, ts: float, snap: Snapshot | None) -> ProcInfo:
        """A new program: what the reader thread read at once, the rest from its fork."""
        subject = raw.tgid  # threads are described by their process
        old = self.procs.get(subject)
        info: ProcInfo | None
        if snap is GONE:  # the reader looked at once and it was gone: no second look
            info = None
        elif snap is not None:
            info = _from_snapshot(subject, snap)
        else:
            info = read_proc(subject)
        if info is None:  # gone already: the new program is unknown, its lineage is not
            info = ProcInfo(pid=subject, start=None)
        if old is not None:  # gone, or reaped after its argv was read: the rest from its fork
            info.ppid = old.ppid if info.ppid is None else info.ppid
            info.uid = old.uid if info.uid is None else info.uid
            info.cgroup = old.cgroup if info.cgroup is None else info.cgroup
        if old is not None and old.exact:
            info.start, info.exact = old.start, True  # from its fork
        else:  # fork unseen: the exec's own timestamp beats /proc's 10 ms ticks
            info.start, info.exact = ts, True
        self.table.add(info)
        ev.exe = info.exe
        ev.unit = self.unit(info.cgroup)
        self.facts.note_cgroup(info.cgroup)  # the OOM-kill count before anything fails
        return info

    def _exit(self, kind: Kind, raw: RawEvent, ev: Event, ts: float, snap: Snapshot | None) -> ProcInfo | None:
        """The end: status, lifetime, the parent's name, the unit and, for a failure, why."""
        subject = raw.tgid
        code, sig, core = decode_wait_status(raw.a)
        ev.exit_code, ev.signal, ev.core_dumped = code, sig, core
        if raw.pid == raw.tgid:
            info = self.table.retire(subject)
            if snap is not None:  # a zombie still has comm, ppid and owner
                if info is None:
                    info = _from_snapshot(subject, snap)
                else:
                    info.comm = info.comm or snap.comm
                    info.uid = snap.uid if info.uid is None else info.uid
                    info.cgroup = info.cgroup or snap.cgroup
        else:
            info = self.procs.get(subject)
        if info is not None and info.start is not None and raw.pid == raw.tgid:
            ev.lifetime = max(0.0, ts - info.start)
            if not info.exact:  # from /proc's start time: no finer than a clock tick
                ev.lifetime_resolution = TICK
        parent = self.procs.get(raw.ptgid) or self.lookup(raw.ptgid)
        if parent is not None:
            ev.parent_cmdline = parent.cmdline
            ev.parent_comm = parent.comm
        cgroup = info.cgroup if info is not None else None
        if cgroup is None and parent is not None:  # gone unannounced: it ran where its parent runs
            if parent.cgroup is None:
                parent.cgroup = read_cgroup(parent.pid)
            cgroup = parent.cgroup
        ev.unit = self.unit(cgroup)
        if ev.failed:
            self._explain(ev, cgroup, info.comm if info is not None else None)
        return info

    def _note(self, kind: Kind, raw: RawEvent, ev: Event, ts: float, snap: Snapshot | None) -> ProcInfo | None:
        """An event about a live process: what it changes of the process (``kind.learns``) is
        written to its entry, and the event keeps the value from before (the UI shows old -> new)."""
        subject = raw.tgid
        info = self.procs.get(subject) or self.lookup(subject)
        if kind.learns and raw.pid == raw.tgid:  # a thread's change is not its process's
            if info is None:  # gone already: the event itself names it, for its exit
                info = self.table.add(ProcInfo(pid=subject, start=None))
            for field, source in kind.learns:
                if field in _EVENT_FIELDS and getattr(ev, field) is None:
                    setattr(ev, field, getattr(info, field))
                setattr(info, field, getattr(ev, source))
        return info

    def unit(self, cgroup: str | None) -> str | None:
        """The unit named by a cgroup file's text (``unit_of``, cached there)."""
        return unit_of(cgroup)

    def _explain(self, ev: Event, cgroup: str | None, comm: str | None) -> None:
        """Set ``ev.reason`` for a failed exit (the system is asked only for SIGKILL and core dumps)."""
        facts = self.facts
        oom = ev.signal == "SIGKILL" and facts.killed_by_oom(ev.pid, cgroup)
        core = facts.core_location(ev.pid, comm or ev.comm) if ev.core_dumped else None
        ev.reason = exit_reason(ev, oom=oom, core=core)

    def close(self) -> None:
        self.facts.close()


#: What an event of a type no kind has is called (the compiled reader passes on what it decodes).
_UNKNOWN = Kind("unknown", 0, None, "unknown", None, None)
_EVENT_FIELDS = frozenset(Event.__dataclass_fields__)


def _check_kinds() -> None:
    """Every field a kind copies or learns exists: else proctop does not import (a bug, not an input)."""
    raw_fields, info_fields = set(RawEvent._fields), set(ProcInfo.__dataclass_fields__)
    for kind in KINDS:
        wrong = [f"{e} <- {w}" for e, w in kind.copies if e not in _EVENT_FIELDS or w not in raw_fields]
        wrong += [f"{i} <- {e}" for i, e in kind.learns if i not in info_fields or e not in _EVENT_FIELDS]
        if wrong:
            raise KindTableError(f"kind {kind.name!r} names fields that do not exist: {', '.join(wrong)}")


_check_kinds()
