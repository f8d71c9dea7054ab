"""The failures board: one line per failing command, crash loops first (``Tab`` from the timeline).

A Line API ``ScrollView`` like the timeline: the rows are the model's
(``proctop.model.failures.FailureBoard``), re-sorted at most once per batch.
The columns, their cells and the header are ``proctop.sinks.text.board``'s
(shared with ``--summary``); every text goes through ``cells.fit``, so it is made safe.
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

from proctop.model.failures import OTHER, FailureBoard, FailureGroup
from proctop.model.identity import filter_term
from proctop.sinks.text.board import REASON, columns, command_width, command_with_reason, group_cells, header_text
from proctop.sinks.text.cells import fit
from proctop.sinks.text.sanitize import safe
from proctop.sinks.ui import keys
from proctop.sinks.ui.cursor import page_size, reveal

SORTS = ("count", "rate", "recent")


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
    """The segments of one board row: each column's cell, in its column's style where it has text."""
    cells = group_cells(board, group)
    shown = columns(width, by)
    styles = {"loop": loop, "failed": failed}
    segments = [Segment("\u25b6" if cursor else " ", base)]
    for column in shown:
        cell = column.cell(cells)
        style = styles.get(column.style, base) if cell else base
        segments.append(Segment(fit(cell, column.width) + " ", style))
    command = cells.command if REASON in shown else command_with_reason(cells)
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
