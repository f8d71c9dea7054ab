"""What the UI keeps per event: display strings made safe once, when first drawn."""

from __future__ import annotations

import functools

from proctop.model.events import Event
from proctop.model.identity import Identity, identity
from proctop.model.kinds import BY_NAME, ROW_LABELS, format_detail
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
    """The detail column: the kind's ``detail`` format (``proctop.model.kinds``) of ``ev``'s fields.

    ``short`` leaves out the lifetime, for narrow terminals.
    """
    kind = BY_NAME.get(ev.event)
    if kind is None or not kind.detail:
        return ""
    return format_detail(kind.detail, functools.partial(detail_field, ev, short))


def detail_field(ev: Event, short: bool, name: str) -> object:
    """A field as a detail format sees it: the event's own, or one of the few made for display.

    Not news is unset: an effective id equal to the real one, and a uid event's
    ``uid`` (the uid before the change, the enricher sets it so) equal to the new one.
    """
    if name == "status":
        return ev.status_text
    if name == "lifetime":
        return None if short else format_lifetime(ev.lifetime, ev.lifetime_resolution)
    if name == "count":
        return ev.count or 1  # at least this many: an overrun loses one or more
    if name == "tracer_pid":
        return ev.tracer_pid or None  # 0: no tracer, detached
    value = getattr(ev, name)
    if value is not None and value == getattr(ev, _NOT_NEWS_BESIDE.get(name, ""), None):
        return None
    return value


#: A field that is unset when it equals this other one (see ``detail_field``).
_NOT_NEWS_BESIDE = {"uid": "ruid", "euid": "ruid", "egid": "rgid"}


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
            self._short = safe(bounded(detail_of(self.ev, short=True), ROW_TEXT_LIMIT))
        return self._short
