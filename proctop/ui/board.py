"""The failures board: one line per failing command, crash loops first (``Tab`` from the timeline).

A Line API ``ScrollView`` like the timeline: the rows are the model's
(``proctop.model.failures.FailureBoard``), re-sorted at most once per batch,
and every text goes through ``timeline.fit``, so it is made safe.
"""

from __future__ import annotations

import re
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from proctop.model.failures import FailureBoard, FailureGroup
from proctop.model.identity import filter_term
from proctop.ui import keys
from proctop.ui.cursor import page_size, reveal
from proctop.ui.rows import format_time
from proctop.ui.sanitize import safe
from proctop.ui.timeline import fit

SORTS = ("count", "rate", "recent")
SPARKS = " \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
#: (title, width) of the fixed columns; the command takes the rest.
COLUMNS = (("", 4), ("COUNT", 6), ("/MIN", 5), ("LAST 10MIN", 10), ("LAST", 8), ("STATUSES", 20))
#: Shown from these widths on (narrower, the reason follows the command).
WIDE = 130
WIDE_COLUMNS = (("USER", 8), ("UNIT", 20))
WIDER = 170
REASON_COLUMN = (("REASON", 30),)


def sparkline(counts: list[int]) -> str:
    """One character per minute, scaled to the busiest minute (blank: none)."""
    top = max(counts, default=0)
    if not top:
        return " " * len(counts)
    return "".join(SPARKS[0 if not n else max(1, round(n / top * (len(SPARKS) - 1)))] for n in counts)


def columns(width: int) -> tuple[tuple[str, int], ...]:
    return COLUMNS + (WIDE_COLUMNS if width >= WIDE else ()) + (REASON_COLUMN if width >= WIDER else ())


def command_width(width: int) -> int:
    return max(0, width - sum(w + 1 for _, w in columns(width)) - 1)


def group_cells(board: FailureBoard, group: FailureGroup, width: int) -> list[str]:
    """The texts of one board row, in column order (made safe by ``fit`` when drawn)."""
    rate = board.rate(group)
    cells = [
        "loop" if board.is_loop(group) else "",
        str(group.count),
        f"{rate:.0f}" if rate < 10_000 else "10k+",
        sparkline(group.sparkline(board.now)),
        format_time(group.last_seen)[:8] if group.last_seen else "",
        group.statuses_text(),
    ]
    if width >= WIDE:
        cells += [group.user or "", group.unit or ""]
    if width >= WIDER:
        cells.append(group.reason or "")
    if group.key == "other":
        command = f"(other commands: {group.count} failures)"
    elif group.identity is not None:  # what it is, then the arguments it last ran with
        command = group.identity.text
    else:
        command = group.key
    if group.reason and width < WIDER:
        command += f"  ({group.reason})"
    cells.append(command)
    return cells


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
    board: FailureBoard, group: FailureGroup, width: int, base: Style, loop: Style, failed: Style, cursor: bool
) -> list[Segment]:
    cells = group_cells(board, group, width)
    segments = [Segment("\u25b6" if cursor else " ", base)]
    for i, ((_, w), cell) in enumerate(zip(columns(width), cells, strict=False)):
        style = loop if i == 0 and cell else failed if i == 5 else base
        segments.append(Segment(fit(cell, w) + " ", style))
    segments.append(Segment(fit(cells[-1], command_width(width)), base))
    return segments


class FailuresView(ScrollView, can_focus=True):
    """What fails, how often, why and where."""

    BINDINGS = keys.bindings("board")  # ids, keys and help: proctop/ui/keys.py

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

    def action_group(self) -> None:
        """Group by command or by unit."""
        self.by = "unit" if self.by == "command" else "command"
        self.cursor = 0
        self.update_rows()

    def action_open(self) -> None:
        group = self.selected
        if group is not None and group.key != "other":
            self.post_message(self.Open(group_filter(group.key, self.by)))

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("board--header", partial=True)
            title = f"by {self.by}, sorted by {self.sort}"
            parts = [" "] + [fit(name, w) + " " for name, w in columns(width)]
            parts.append(fit(f"COMMAND ({title}; {self.board.total} failures)", command_width(width)))
            return Strip([Segment("".join(parts), style)]).adjust_cell_length(width, style)
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
        segments = board_segments(self.board, self.rows[index], width, row_base, loop, failed, cursor)
        return Strip(segments).adjust_cell_length(width, row_base)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)
