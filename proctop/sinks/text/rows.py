"""What the UI keeps per event: display strings made safe once, when first drawn."""

from __future__ import annotations

from proctop.model.events import Event
from proctop.model.identity import Identity, identity
from proctop.model.kinds import ROW_LABELS
from proctop.sinks.text.cells import ROW_TEXT_LIMIT, format_minutes, format_time
from proctop.sinks.text.sanitize import Shown, bounded, safe

#: Labels of the event column (the type is readable without colour), from the table of kinds.
EVENT_LABELS = ROW_LABELS


def event_class(ev: Event) -> str:
    """The colour class (theme variable ``$event-<name>``) of an event."""
    if ev.event == "exit":
        if ev.signal:
            return "signal"
        return "failed" if ev.exit_code else "exit"
    return ev.event if ev.event in EVENT_LABELS else "exit"


def format_lifetime(seconds: float | None, resolution: float | None = None) -> str:
    """A lifetime at the precision it has: ``0.4ms`` from kernel timestamps; from /proc's
    clock ticks (``resolution``) ``<10ms`` or ``~120ms``."""
    if seconds is None:
        return ""
    if resolution:
        if seconds < resolution:
            return "<" + format_lifetime(resolution)
        return "~" + format_lifetime(seconds)
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return format_minutes(seconds)


def command_of(ev: Event, limit: int = ROW_TEXT_LIMIT) -> Shown:
    """The safe one-line command: argv joined, else comm, else what is known of it
    (``? (child of make -k)``), else ``?`` (cut at ``limit``)."""
    if ev.cmdline:
        return safe(bounded(" ".join(ev.cmdline), limit))
    if ev.comm:
        return safe(bounded(ev.comm, limit))
    parent = " ".join(ev.parent_cmdline) if ev.parent_cmdline else ev.parent_comm
    return safe(bounded(f"? (child of {parent})", limit)) if parent else Shown("?")


def detail_of(ev: Event, short: bool = False) -> str:
    """The detail column: exit status and lifetime, uid/gid change, new comm, tracer, ...

    A uid event's ``uid`` is the uid before the change (the enricher sets it so).
    """
    kind = ev.event
    if kind == "exit":
        text = ev.status_text
        life = format_lifetime(ev.lifetime, ev.lifetime_resolution)
        return f"{text} after {life}" if life and not short else text
    if kind == "uid":
        old = ev.uid
        if old == ev.ruid:
            old = None
        text = f"uid {'?' if old is None else old}\u2192{_n(ev.ruid)}"
        if ev.euid is not None and ev.euid != ev.ruid:
            text += f" euid {ev.euid}"
        return text
    if kind == "gid":
        text = f"gid \u2192{_n(ev.rgid)}"
        if ev.egid is not None and ev.egid != ev.rgid:
            text += f" egid {ev.egid}"
        return text
    if kind == "comm":
        return f"comm \u2192 {ev.comm or '?'}"
    if kind == "ptrace":
        return "detached" if not ev.tracer_pid else f"traced by {ev.tracer_pid}"
    if kind == "coredump":
        return "dumping core"
    if kind == "sid":
        return "new session"
    if kind == "lost":
        n = ev.count or 1  # at least this many: an overrun loses one or more
        return f"{n}+ event{'s' if n != 1 else ''} lost"
    return ""


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


class Row:
    """One timeline row: the event and its display strings.

    The strings are made on first use and kept: a row that is never on screen
    (most of a 100,000-row history) costs only the event and this small object.
    """

    __slots__ = ("_command", "_detail", "_identity", "_short", "_time", "ev")

    def __init__(self, ev: Event) -> None:
        self.ev = ev
        self._time: str | None = None
        self._command: str | None = None
        self._detail: str | None = None
        self._short: str | None = None
        self._identity: Identity | None = None

    @property
    def time(self) -> str:
        if self._time is None:
            self._time = format_time(self.ev.ts)
        return self._time

    @property
    def label(self) -> str:
        return EVENT_LABELS.get(self.ev.event) or safe(self.ev.event)

    @property
    def cls(self) -> str:
        return event_class(self.ev)

    @property
    def user(self) -> str:
        ev = self.ev
        return safe(ev.user) if ev.user else ("" if ev.event == "lost" else "?")

    @property
    def command(self) -> str:
        if self._command is None:
            self._command = "" if self.ev.event == "lost" else command_of(self.ev)
        return self._command

    @property
    def identity(self) -> Identity:
        """What the process is (``proctop.model.identity``): the board's group key, ``id:``, ``cmd:``."""
        if self._identity is None:
            self._identity = Identity("", "") if self.ev.event == "lost" else identity(self.ev)
        return self._identity

    @property
    def detail(self) -> str:
        if self._detail is None:
            self._detail = safe(bounded(detail_of(self.ev), ROW_TEXT_LIMIT))
        return self._detail

    @property
    def short(self) -> str:
        """The detail without the lifetime, for narrow terminals."""
        if self._short is None:
            short = detail_of(self.ev, short=True) if self.ev.event == "exit" else self.detail
            self._short = safe(bounded(short, ROW_TEXT_LIMIT))
        return self._short
