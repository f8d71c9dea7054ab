"""The failures board: one line per failing command, crash loops first (``Tab`` from the timeline).

A Line API ``ScrollView`` like the timeline: the rows are the model's
(``proctop.model.failures.FailureBoard``), re-sorted at most once per batch,
and every text goes through ``timeline.fit``, so it is made safe.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from proctop.model.failures import OTHER, FailureBoard, FailureGroup
from proctop.model.identity import filter_term
from proctop.sinks.ui import keys
from proctop.sinks.ui.cursor import page_size, reveal
from proctop.sinks.ui.rows import format_time
from proctop.sinks.ui.sanitize import safe
from proctop.sinks.ui.timeline import fit

SORTS = ("count", "rate", "recent")
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


class Column(NamedTuple):
    title: str
    width: int
    cell: str  # the ``Cells`` field shown
    sort: str = ""  # the sort this column's figures order (its title is marked when in force)


LOOP = Column("", 4, "mark")
COUNT = Column("COUNT", 6, "failures", "count")
RATE = Column("/MIN", 5, "rate", "rate")
SPARK = Column("LAST 10MIN", 10, "spark")
LAST = Column("LAST", 8, "last", "recent")
USER = Column("USER", 8, "user")
REASON = Column("REASON", 30, "reason")
#: STATUSES grows with the width (a second and third status are what tell a loop's story),
#: between these bounds: a third of what the fixed columns leave, the command the rest.
STATUSES_WIDTH = (20, 48)
#: From these widths on: USER, then REASON (narrower, the reason follows the command).
WIDE = 130
WIDER = 170
#: The unit's column: from ``WIDE`` on, and at every width when the rows are units (then
#: first, narrower, in the sparkline's place below ``WIDE``: the unit is what a row is).
UNIT = Column("UNIT", 20, "unit")
NARROW_UNIT = Column("UNIT", 16, "unit")


def sparkline(counts: list[int]) -> str:
    """One character per minute, scaled to the busiest minute (blank: none)."""
    top = max(counts, default=0)
    if not top:
        return " " * len(counts)
    return "".join(SPARKS[0 if not n else max(1, round(n / top * (len(SPARKS) - 1)))] for n in counts)


def columns(width: int, by: str = "command") -> tuple[Column, ...]:
    """The columns fitted to ``width``, by priority; the command takes what is left (``command_width``)."""
    if width >= WIDE:
        fixed = [LOOP, COUNT, RATE, SPARK, LAST, USER] + ([] if by == "unit" else [UNIT])
        if width >= WIDER:
            fixed.append(REASON)
    else:
        fixed = [LOOP, COUNT, RATE, LAST] if by == "unit" else [LOOP, COUNT, RATE, SPARK, LAST]
    if by == "unit":
        fixed.insert(1, UNIT if width >= WIDE else NARROW_UNIT)
    left = width - 1 - sum(column.width + 1 for column in fixed) - 1
    low, high = STATUSES_WIDTH
    statuses = Column("STATUSES", max(low, min(high, left // 3)), "statuses")
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


def header_text(width: int, by: str, sort: str, total: int) -> str:
    """The titles, the sorted column marked; the command's title says the total when it fits."""
    parts = [" "] + [fit(c.title + (SORTED if c.sort == sort else ""), c.width) + " " for c in columns(width, by)]
    room = command_width(width, by)
    title = "COMMAND" if by == "command" else "LAST COMMAND"
    with_total = f"{title}  {total} failure{'s' if total != 1 else ''}"
    parts.append(fit(with_total if len(with_total) <= room else title, room))
    return "".join(parts)


def group_filter(key: str, by: str) -> str:
    """The view filter that shows exactly one group's failures, in the language a user types.

    By command, the identity's key, exactly (``id:"…"``); by unit, the unit, exactly
    (a regex anchored at both ends: ``unit:`` alone is a substring), or no unit at all.
    """
    if by != "unit":
        return f"event:failed {filter_term(key)}"
    exact = "" if key == "-" else re.escape(safe(key)).replace("\\ ", "\\x20")  # the unit as rows show it
    return f"event:failed unit:/^{exact}$/"


def board_segments(
    board: FailureBoard,
    group: FailureGroup,
    width: int,
    base: Style,
    loop: Style,
    failed: Style,
    cursor: bool,
    by: str = "command",
) -> list[Segment]:
    cells = group_cells(board, group)
    shown = columns(width, by)
    segments = [Segment("\u25b6" if cursor else " ", base)]
    for column in shown:
        cell = getattr(cells, column.cell)
        style = loop if column.cell == "mark" and cell else failed if column.cell == "statuses" else base
        segments.append(Segment(fit(cell, column.width) + " ", style))
    command = cells.command
    if cells.reason and REASON not in shown:
        command += f"  ({cells.reason})"
    segments.append(Segment(fit(command, command_width(width, by)), base))
    return segments


class FailuresView(ScrollView, can_focus=True):
    """What fails, how often, why and where."""

    BINDINGS = keys.bindings("board")  # ids, keys and help: proctop/sinks/ui/keys.py

    COMPONENT_CLASSES = {"board--header", "board--cursor", "event--loop", "event--failed"}

    #: Failures the app has fed the boards (bound from the app's): the rows are re-sorted when it grows.
    failures: reactive[int] = reactive(0, init=False)

    class Open(Message):
        """Show the timeline filtered to exactly this group's rows (``text`` is the filter)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, boards: dict[str, FailureBoard], **kwargs: Any) -> None:  # kwargs: Widget's (id, classes)
        super().__init__(**kwargs)
        self.boards = boards  # one per grouping ("command", "unit"), all fed every failure
        self.by = "command"
        self.sort = "count"
        self.rows: list[FailureGroup] = []
        self.cursor = 0

    def watch_failures(self) -> None:
        if self.display:  # the hidden board is brought up to date when shown (on_show)
            self.update_rows()

    def on_show(self) -> None:
        self.update_rows()

    def update_rows(self) -> None:
        """Re-sort from the model (at most once per batch, and only while the board is shown)."""
        selected = self.selected
        self.rows = self.board.rows(self.sort)
        if selected is not None and selected in self.rows:
            self.cursor = self.rows.index(selected)
        self.cursor = max(0, min(self.cursor, len(self.rows) - 1))
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)
        self.refresh()

    @property
    def selected(self) -> FailureGroup | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def action_cursor(self, delta: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))
            reveal(self, self.cursor, int(self.scroll_y))
            self.refresh()

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * page_size(self))

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.update_rows()

    @property
    def board(self) -> FailureBoard:
        return self.boards[self.by]

    def action_group(self, by: str) -> None:
        """Group by command or by unit (``b`` switches; the footer names the other grouping)."""
        self.by = by
        self.cursor = 0
        self.update_rows()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """One key for both groupings: only the switch to the other one is live (and in the footer)."""
        if action == "group":
            return parameters[0] != self.by
        return True

    def action_open(self) -> None:
        group = self.selected
        if group is not None and group.key != OTHER:
            self.post_message(self.Open(group_filter(group.key, self.by)))

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("board--header", partial=True)
            text = header_text(width, self.by, self.sort, self.board.total)
            return Strip([Segment(text, style)]).adjust_cell_length(width, style)
        index = int(self.scroll_y) + y - 1
        if not 0 <= index < len(self.rows):
            if not self.rows and y == 1:
                return Strip([Segment(fit(" no failures yet", width), base)])
            return Strip.blank(width, base)
        cursor = index == self.cursor and self.has_focus
        if cursor:  # one colour pair on the selected row, checked for contrast in every theme
            row_base = loop = failed = base + self.get_component_rich_style("board--cursor", partial=True)
        else:
            row_base = base
            loop = base + self.get_component_rich_style("event--loop", partial=True)
            failed = base + self.get_component_rich_style("event--failed", partial=True)
        segments = board_segments(self.board, self.rows[index], width, row_base, loop, failed, cursor, self.by)
        return Strip(segments).adjust_cell_length(width, row_base)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)
