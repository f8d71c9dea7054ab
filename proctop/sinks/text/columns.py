"""The column spec: one row of data per column, read by everything that draws or searches it.

A ``Column`` says its title, its width, the narrowest it gets, its cell (the
text of one row) and the view filter's ``key:value`` keys that search it. The
timeline's columns are here (``TIMELINE``): the timeline draws its header and
rows from them (``proctop.sinks.ui.timeline``) and the filter language takes
its keys from them (``proctop.sinks.ui.query``), so a column is added once.
The failures board's columns, drawn on screen and by ``--summary``, are in
``proctop.sinks.text.board``.

A key searches what the column holds, which is not always the cell drawn:
``event:failed`` matches a red ``exit``, ``pid:`` a thread's process id too,
``cmd:`` the identity's name, ``status:`` the status inside the detail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

from proctop.sinks.text.cells import ROW_TEXT_LIMIT
from proctop.sinks.text.rows import Row
from proctop.sinks.text.sanitize import bounded, safe

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Exact(Generic[R]):
    """A filter key whose value is a whole field (``pid:1`` is not pid 12): the fields of a row."""

    name: str
    fields: Callable[[R], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Substring(Generic[R]):
    """A filter key whose value is a substring of a row's text; ``also``, a second text it
    matches, is looked at only when the first did not match (it may cost more)."""

    name: str
    text: Callable[[R], str]
    also: Callable[[R], str] | None = None


@dataclass(frozen=True, slots=True)
class Column(Generic[R]):
    """One column of a table, for every sink that draws it and the filter that searches it."""

    title: str
    #: Cells it takes (a layout that stretches a column goes from ``minimum`` up to this).
    width: int
    #: Its text for one row (made safe by ``cells.fit`` when drawn).
    cell: Callable[[R], str]
    #: The narrowest it gets where space runs out (0: it has no narrower form).
    minimum: int = 0
    #: The view filter's ``key:value`` keys that search this column.
    keys: tuple[Exact[R] | Substring[R], ...] = ()
    #: The narrowest screen that shows it.
    shown_from: int = 0
    #: The style its (non-empty) cells take instead of the row's: a style class the widget names.
    style: str = ""
    #: The board's sort its figures order (its title is marked while the sort is in force).
    sort: str = ""
    #: In a table too narrow for every column, the lowest goes first (``--summary``).
    keep: int = 0
    #: Its cells name themselves (``loop``, in colour): the screen leaves its title blank.
    marker: bool = False


# --- what the timeline's columns hold, for the filter ------------------------------


def _event_names(row: Row) -> tuple[str, ...]:
    ev = row.ev
    if ev.event != "exit":
        return (ev.event,)
    return (ev.event, row.cls, "failed") if ev.failed else (ev.event,)


def _pids(row: Row) -> tuple[str, ...]:
    ev = row.ev
    return (str(ev.pid),) if not ev.tgid or ev.tgid == ev.pid else (str(ev.pid), str(ev.tgid))


def _ppid(row: Row) -> tuple[str, ...]:
    return (str(row.ev.ppid),) if row.ev.ppid else ()


def _user(row: Row) -> tuple[str, ...]:
    return (row.user,)


def _identity(row: Row) -> tuple[str, ...]:
    return (row.identity.key,)


def _command(row: Row) -> str:
    return row.command


def _identity_name(row: Row) -> str:
    return row.identity.name  # printable already (escaped by the identity); matched, never drawn


def unit_text(row: Row) -> str:
    """The unit as the filter searches it: made safe and bounded like the row's other texts."""
    return safe(bounded(row.ev.unit, ROW_TEXT_LIMIT)) if row.ev.unit else ""


def _status(row: Row) -> str:
    return row.ev.status_text


# --- the timeline ------------------------------------------------------------------

TIME: Column[Row] = Column("TIME", 12, lambda row: row.time)
EVENT: Column[Row] = Column("EVENT", 8, lambda row: row.label, keys=(Exact("event", _event_names),), style="event")
PID: Column[Row] = Column("PID", 7, lambda row: str(row.ev.pid) if row.ev.pid else "", keys=(Exact("pid", _pids),))
PPID: Column[Row] = Column("PPID", 7, lambda row: str(row.ev.ppid) if row.ev.ppid else "", keys=(Exact("ppid", _ppid),))
USER: Column[Row] = Column("USER", 8, lambda row: row.user, keys=(Exact("user", _user),))
#: The unit (systemd unit or container) has a column of its own on a wide screen; ``unit:`` works at any width.
UNIT: Column[Row] = Column(
    "UNIT", 18, lambda row: row.ev.unit or "", keys=(Substring("unit", unit_text),), shown_from=120
)
#: Command and detail share what the other columns leave (``width`` 0); the command keeps
#: ``minimum`` cells beside a long detail. ``id:`` is the command's identity, ``status:`` the detail's.
COMMAND: Column[Row] = Column(
    "COMMAND / DETAIL",
    0,
    lambda row: row.command,
    minimum=8,
    keys=(Exact("id", _identity), Substring("cmd", _command, also=_identity_name), Substring("status", _status)),
)
#: The timeline's columns, left to right.
TIMELINE: tuple[Column[Row], ...] = (TIME, EVENT, PID, PPID, USER, UNIT, COMMAND)


@lru_cache(maxsize=16)
def fixed_columns(width: int) -> tuple[Column[Row], ...]:
    """The timeline's columns before the command that a screen ``width`` cells wide shows."""
    return tuple(column for column in TIMELINE if column is not COMMAND and width >= column.shown_from)


def command_width(width: int) -> int:
    """Cells left for command + detail in a timeline row ``width`` cells wide (one before each column)."""
    return max(0, width - sum(column.width + 1 for column in fixed_columns(width)) - 1)


#: The view filter's keys, in the timeline's column order.
FILTER_KEYS: tuple[Exact[Row] | Substring[Row], ...] = tuple(key for column in TIMELINE for key in column.keys)
