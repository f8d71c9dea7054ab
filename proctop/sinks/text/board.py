"""The failures board's columns: one spec, drawn on screen (``proctop.sinks.ui.board``) and
as ``--summary``'s plain table (``proctop.sinks.summary``).

A board row's texts are computed once (``Cells``); each ``Column`` picks its
own. The screen lays the columns out by the terminal's width (``columns``);
the summary sizes each to its widest cell and drops the ones that matter
least first (``Column.keep``, ``SUMMARY``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from proctop.model.failures import OTHER, FailureBoard, FailureGroup
from proctop.sinks.text.cells import fit, format_time
from proctop.sinks.text.columns import Column

SPARKS = " \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
#: Marks the title of the column the rows are sorted by.
SORTED = "\u25be"


class Cells(NamedTuple):
    """The texts of one board row, for every column there is (a layout picks what the width holds)."""

    mark: str
    failures: str
    rate: str
    spark: str
    last: str
    statuses: str
    user: str
    unit: str
    reason: str
    command: str  # what failed, with its arguments (and its reason, where no REASON column is shown)


LOOP: Column[Cells] = Column("LOOP", 4, lambda c: c.mark, style="loop", keep=7, marker=True)
COUNT: Column[Cells] = Column("COUNT", 6, lambda c: c.failures, sort="count", keep=9)
RATE: Column[Cells] = Column("/MIN", 5, lambda c: c.rate, sort="rate", keep=2)
SPARK: Column[Cells] = Column("LAST 10MIN", 10, lambda c: c.spark, keep=1)
LAST: Column[Cells] = Column("LAST", 8, lambda c: c.last, sort="recent", keep=4)
#: STATUSES grows with the width (a second and third status are what tell a loop's story),
#: from ``minimum`` to ``width``: a third of what the fixed columns leave, the command the rest.
STATUSES: Column[Cells] = Column("STATUSES", 48, lambda c: c.statuses, minimum=20, style="failed", keep=8)
USER: Column[Cells] = Column("USER", 8, lambda c: c.user, keep=3)
#: The unit's column: from ``WIDE`` on, and at every width when the rows are units (then
#: first, narrower, in the sparkline's place below ``WIDE``: the unit is what a row is).
#: Part of a group: two rows that differ only by unit must say so (``--summary`` keeps it long).
UNIT: Column[Cells] = Column("UNIT", 20, lambda c: c.unit, minimum=16, keep=6)
REASON: Column[Cells] = Column("REASON", 30, lambda c: c.reason)
#: What failed takes the rest of the line; ``--summary`` keeps it ``minimum`` cells before
#: another column goes, and adds the reason to it (it has no REASON column).
COMMAND: Column[Cells] = Column("COMMAND", 0, lambda c: c.command, minimum=24)

#: From these widths on: USER, then REASON (narrower, the reason follows the command).
WIDE = 130
WIDER = 170

#: ``--summary``'s columns before the command, in order. Its statuses stop at 28 cells:
#: a table sized to its cells has no spare room to grow them into.
SUMMARY: tuple[Column[Cells], ...] = (LOOP, COUNT, RATE, SPARK, LAST, replace(STATUSES, width=28), USER, UNIT)
#: ``--summary``'s last column: the command with its reason.
SUMMARY_COMMAND = "COMMAND / REASON"


def sparkline(counts: list[int]) -> str:
    """One character per minute, scaled to the busiest minute (blank: none)."""
    top = max(counts, default=0)
    if not top:
        return " " * len(counts)
    return "".join(SPARKS[0 if not n else max(1, round(n / top * (len(SPARKS) - 1)))] for n in counts)


def columns(width: int, by: str = "command") -> tuple[Column[Cells], ...]:
    """The screen's columns fitted to ``width``, by priority; the command takes what is left (``command_width``)."""
    if width >= WIDE:
        fixed = [LOOP, COUNT, RATE, SPARK, LAST, USER] + ([] if by == "unit" else [UNIT])
        if width >= WIDER:
            fixed.append(REASON)
    else:
        fixed = [LOOP, COUNT, RATE, LAST] if by == "unit" else [LOOP, COUNT, RATE, SPARK, LAST]
    if by == "unit":
        fixed.insert(1, UNIT if width >= WIDE else replace(UNIT, width=UNIT.minimum))
    left = width - 1 - sum(column.width + 1 for column in fixed) - 1
    statuses = replace(STATUSES, width=max(STATUSES.minimum, min(STATUSES.width, left // 3)))
    fixed.insert(fixed.index(LAST) + 1, statuses)
    return tuple(fixed)


def command_width(width: int, by: str = "command") -> int:
    return max(0, width - sum(column.width + 1 for column in columns(width, by)) - 1)


def group_cells(board: FailureBoard, group: FailureGroup) -> Cells:
    """The texts of one board row (made safe by ``fit`` when drawn)."""
    rate = board.rate(group)
    if group.key == OTHER:
        command = f"(other commands: {group.count} failures)"
    elif group.identity is not None:  # what it is, then the arguments it last ran with
        command = group.identity.text
    else:
        command = group.key
    return Cells(
        mark="loop" if board.is_loop(group) else "",
        failures=str(group.count),
        rate=f"{rate:.0f}" if rate < 10_000 else "10k+",
        spark=sparkline(group.sparkline(board.now)),
        last=format_time(group.last_seen)[:8] if group.last_seen else "",
        statuses=group.statuses_text(limit=6),
        user=group.user or "",
        unit=group.unit or "",
        reason=group.reason or "",
        command=command,
    )


def command_with_reason(cells: Cells) -> str:
    """What failed, and why after it, for a layout with no REASON column."""
    return f"{cells.command}  ({cells.reason})" if cells.reason else cells.command


def header_text(width: int, by: str, sort: str, total: int) -> str:
    """The screen's titles, the sorted column marked; the command's title says the total when it fits."""
    parts = [" "] + [
        fit(("" if c.marker else c.title) + (SORTED if c.sort == sort else ""), c.width) + " "
        for c in columns(width, by)
    ]
    room = command_width(width, by)
    title = COMMAND.title if by == "command" else "LAST " + COMMAND.title
    with_total = f"{title}  {total} failure{'s' if total != 1 else ''}"
    parts.append(fit(with_total if len(with_total) <= room else title, room))
    return "".join(parts)
