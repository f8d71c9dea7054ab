"""The event timeline: a Line API ``ScrollView`` that renders only the visible rows.

Rows live in a deque of at most ``history`` rows; a text filter keeps a
second deque of the matching rows (a subsequence of the first). The first
line is a fixed column header; the newest row is at the bottom and the view
follows it until the user moves the cursor up, and again after End.

Hold means hold: while the view is held, the rows on screen (and the cursor's)
are never the ones the history cap drops. The oldest rows before them go first;
once the screen is the oldest part of the history, the rows just after it go
(the newest always stay). What the cap drops while held is counted
(``held_dropped``) and said in the header.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from proctop.model.events import Event
from proctop.sinks.text.cells import fit
from proctop.sinks.text.columns import COMMAND, command_width, fixed_columns
from proctop.sinks.text.rows import Row
from proctop.sinks.ui import keys
from proctop.sinks.ui.cursor import page_size, reveal
from proctop.sinks.ui.query import Filter, FilterTimeout, bounded_pass, compile_filter, timed_out
from proctop.sinks.ui.themes import EVENT_KEYS

#: One style class per event colour a theme defines (the colour classes of ``proctop.model.kinds``).
EVENT_CLASSES = EVENT_KEYS


class Timeline(ScrollView, can_focus=True):
    """Process events, one per line."""

    BINDINGS = keys.bindings("timeline")  # ids, keys and help: proctop/sinks/ui/keys.py

    COMPONENT_CLASSES = {
        "timeline--header",
        "timeline--cursor",
        "timeline--empty",
        *(f"event--{name}" for name in EVENT_CLASSES),
    }

    #: True while the view sticks to the newest row.
    follow: reactive[bool] = reactive(True, init=False, bindings=True)
    #: The filter text (bound from the app's); rows are refiltered when it changes.
    view_filter: reactive[str] = reactive("", init=False)
    #: What an empty timeline says (bound from the app's): what is watched, since when.
    empty_note: reactive[str] = reactive("", init=False)

    class CursorMoved(Message):
        """The selected row changed (the details panel follows it)."""

        def __init__(self, row: Row | None) -> None:
            super().__init__()
            self.row = row

    class ViewChanged(Message):
        """How many rows the view shows, how many the event keys hide, whether the history is full,
        and how many rows the cap dropped while the view was held (the header shows them all)."""

        def __init__(self, shown: int, hidden: int, full: bool = False, held_dropped: int = 0) -> None:
            super().__init__()
            self.shown = shown
            self.hidden = hidden
            self.full = full
            self.held_dropped = held_dropped

    class FilterGaveUp(Message):
        """The view filter ran past its deadline and was replaced by ``row_filter``, an error."""

        def __init__(self, row_filter: Filter) -> None:
            super().__init__()
            self.row_filter = row_filter

    class FollowChanged(Message):
        """The view started or stopped following the newest row."""

        def __init__(self, follow: bool) -> None:
            super().__init__()
            self.follow = follow

    class FilterPasted(Message):
        """Text pasted on the timeline that starts with ``/``: the filter, opened with the rest."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, history: int = 100_000, **kwargs: Any) -> None:  # kwargs: Widget's (id, classes)
        super().__init__(**kwargs)
        self.history = history
        self.rows: deque[Row] = deque()  # at most ``history`` long: ``add`` drops, sparing a held screen
        self.filtered: deque[Row] | None = None
        self.needle = ""  # the view filter's text, as typed (stripped)
        self.row_filter = compile_filter("")  # and compiled (proctop.sinks.ui.query)
        #: Filters given up at their deadline, by text (``_give_up_filter``).
        self._gave_up: dict[str, Filter] = {}
        #: The mask as a view filter (a replay's ``Source.shows``); None shows every event.
        self.shows: Callable[[Event], bool] | None = None
        self.hidden = 0  # rows kept but hidden by ``shows``
        self.cursor = -1  # index into the view; -1: nothing yet
        self.held_dropped = 0  # rows the history cap dropped since the view was last following

    # --- data ------------------------------------------------------------

    @property
    def view(self) -> deque[Row]:
        return self.rows if self.filtered is None else self.filtered

    def add(self, rows: Iterable[Row]) -> None:
        """Append rows (oldest first), dropping the oldest beyond ``history`` but never a held screen's."""
        view_before = len(self.view)
        dropped_from_view = 0
        all_rows = self.rows
        filtered = self.filtered
        limit = self.history
        shows = self.shows
        visible = self._visible
        kept = None if self.follow else self._kept()  # (first, last) row the cap must not drop
        first_kept = kept[0] if kept else None
        spared = 0  # rows over the cap that the kept rows spared: dropped after them, below
        held = not self.follow
        new: list[Row] = []  # rows the view filter is asked about
        for row in rows:
            if len(all_rows) >= limit + spared:
                if all_rows[0] is first_kept:
                    spared += 1
                else:
                    gone = all_rows.popleft()
                    if held:
                        self.held_dropped += 1
                    if shows is not None and not shows(gone.ev):
                        self.hidden -= 1
                    if filtered is None:
                        dropped_from_view += 1
                    elif filtered and filtered[0] is gone:
                        filtered.popleft()
                        dropped_from_view += 1
            all_rows.append(row)
            if shows is not None and not shows(row.ev):
                self.hidden += 1
            if filtered is not None:
                new.append(row)
        if new and filtered is not None:
            fresh = new[-min(len(new), len(all_rows)) :]  # a batch longer than the history: its first rows are gone
            try:  # a pass of the filter over the new rows, under its deadline
                filtered.extend(bounded_pass(self.row_filter, lambda: [row for row in fresh if visible(row)]))
            except FilterTimeout:
                self._give_up_filter()
                return
        if spared and kept:
            self._drop_after(kept[1], spared)
        if len(self.view) == view_before and not dropped_from_view and not spared:
            return
        self._after_change(dropped_from_view)

    def _kept(self) -> tuple[Row, Row] | None:
        """The oldest and newest row the held view shows (the screen's rows and the cursor's)."""
        view = self.view
        if not view:
            return None
        top = self._top()
        page = max(1, self.scrollable_content_region.height - 1)
        cursor = self.cursor if self.cursor >= 0 else len(view) - 1
        first = max(0, min(top, cursor, len(view) - 1))
        last = min(len(view) - 1, max(top + page - 1, cursor))
        return view[first], view[last]

    def _drop_after(self, last_kept: Row, count: int) -> None:
        """Drop ``count`` rows just after ``last_kept`` (the newest rows stay; so does the screen).

        Only when the held screen is the oldest part of the history; a rotate and
        poplefts, so a cost in C of the history's length, once per batch.
        """
        rows = self.rows
        after = rows.index(last_kept) + 1  # identity first: Row has no __eq__
        count = min(count, len(rows) - after)
        if count <= 0:
            return
        rows.rotate(-after)
        gone = [rows.popleft() for _ in range(count)]
        rows.rotate(after)
        self.held_dropped += count
        shows = self.shows
        if shows is not None:
            self.hidden -= sum(1 for r in gone if not shows(r.ev))
        filtered = self.filtered
        if filtered is not None:
            visible = self._visible
            shown = sum(1 for r in gone if visible(r))
            if shown:
                at = filtered.index(last_kept) + 1
                filtered.rotate(-at)
                for _ in range(shown):
                    filtered.popleft()
                filtered.rotate(at)

    def _visible(self, row: Row) -> bool:
        rows = self.row_filter
        return (self.shows is None or self.shows(row.ev)) and (rows.everything or rows.matches(row))

    def watch_view_filter(self, text: str) -> None:
        self.set_filter(text)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.held_dropped = 0
        self.post_message(self.FollowChanged(follow))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """End is offered (in the footer) only while the view is held."""
        return not (action == "follow" and self.follow)

    def set_filter(self, text: str) -> None:
        """Show only the rows the view filter ``text`` matches (``proctop.sinks.ui.query``); empty shows all.

        Not lower-cased here: the query is case-insensitive itself, and a regex's ``\\S`` is not ``\\s``.
        """
        needle = text.strip()
        if needle == self.needle:
            return
        self.needle = needle
        self.row_filter = self._gave_up.get(needle) or compile_filter(needle)
        self._refilter()

    def set_shows(self, shows: Callable[[Event], bool] | None) -> None:
        """Hide the rows ``shows`` rejects (kept, and shown again when it accepts them)."""
        self.shows = shows
        self.hidden = 0 if shows is None else sum(1 for r in self.rows if not shows(r.ev))
        self._refilter()

    def _give_up_filter(self) -> None:
        """The filter ran past its deadline: it becomes an error that matches nothing (remembered
        for this text, so typing it again costs nothing) and the input is told."""
        text = self.row_filter.text
        self.row_filter = self._gave_up[text] = timed_out(text)
        self._refilter()
        self.post_message(self.FilterGaveUp(self.row_filter))

    def _refilter(self) -> None:
        selected = self.selected
        if not self.row_filter.everything or self.shows is not None:
            visible, rows = self._visible, self.rows
            try:  # no maxlen: a held view may keep rows past the history (see ``add``)
                self.filtered = bounded_pass(self.row_filter, lambda: deque(filter(visible, rows)))
            except FilterTimeout:
                self._give_up_filter()
                return
        else:
            self.filtered = None
        view = self.view
        if self.follow or selected is None:
            self.cursor = len(view) - 1
        else:
            self.cursor = self._index_of(selected, view)
        self._after_change(0, force_scroll=True)

    def _index_of(self, row: Row, view: deque[Row]) -> int:
        for i in range(len(view) - 1, -1, -1):
            if view[i] is row:
                return i
        return len(view) - 1

    def _after_change(self, dropped: int, force_scroll: bool = False, counted: bool = True) -> None:
        view = self.view
        if counted:
            full = len(self.rows) >= self.history
            self.post_message(self.ViewChanged(len(view), self.hidden, full, self.held_dropped))
        self.virtual_size = Size(self.size.width, len(view) + 1)
        if self.follow:
            self.cursor = len(view) - 1
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
            self.call_after_refresh(self._stick)
            self.post_message(self.CursorMoved(self.selected))
        else:
            if dropped:
                self.cursor = max(0 if view else -1, self.cursor - dropped)
                self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)
                self.post_message(self.CursorMoved(self.selected))
            elif force_scroll:
                self._scroll_cursor_into_view()
                self.post_message(self.CursorMoved(self.selected))
        self.refresh()

    def _top(self) -> int:
        """Index of the first row on screen (the bottom page while following)."""
        if self.follow:
            return max(0, len(self.view) + 1 - self.scrollable_content_region.height)
        return int(self.scroll_y)

    def _stick(self) -> None:
        if self.follow and self.scroll_y != self.max_scroll_y:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    @property
    def selected(self) -> Row | None:
        view = self.view
        if 0 <= self.cursor < len(view):
            return view[self.cursor]
        return None

    @property
    def visible_rows(self) -> list[Row]:
        """The rows on screen now (for tests and the details panel)."""
        view = self.view
        start = self._top()
        end = min(len(view), start + max(0, self.scrollable_content_region.height - 1))
        return [view[i] for i in range(start, end)]

    # --- cursor ----------------------------------------------------------

    def _move(self, delta: int) -> None:
        view = self.view
        if not view:
            return
        new = max(0, min(len(view) - 1, (self.cursor if self.cursor >= 0 else len(view) - 1) + delta))
        if self.follow and (delta < 0 or new != len(view) - 1):
            top = self._top()
            self.follow = False
            self.scroll_to(y=top, animate=False, immediate=True)
        self.cursor = new
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.CursorMoved(self.selected))

    def _scroll_cursor_into_view(self) -> None:
        reveal(self, self.cursor, self._top())

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up(self) -> None:
        self._move(-page_size(self))

    def action_page_down(self) -> None:
        self._move(page_size(self))

    def action_first(self) -> None:
        self._move(-len(self.view))

    def action_follow(self) -> None:
        self.follow = True
        self._after_change(0, counted=False)

    def on_paste(self, event: events.Paste) -> None:
        """A paste of ``/cmd:gcc`` (a bracketed paste: one event, not keys) opens the filter with ``cmd:gcc``."""
        lines = event.text.splitlines()
        if lines and lines[0].startswith("/"):
            self.post_message(self.FilterPasted(lines[0][1:]))
            event.stop()

    def on_click(self, event: events.Click) -> None:
        """A click selects a row (the keyboard does everything too)."""
        index = self._top() + event.y - 1
        if event.y >= 1 and 0 <= index < len(self.view):
            self._move(index - (self.cursor if self.cursor >= 0 else len(self.view) - 1))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:  # the wheel freezes the follow as the keys do
        self.follow = False

    # --- rendering -------------------------------------------------------

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.view) + 1)
        if self.follow:
            self.call_after_refresh(self._stick)
        elif self.cursor >= 0:
            self.call_after_refresh(self._scroll_cursor_into_view)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            return self._header_strip(width, base)
        index = self._top() + y - 1
        view = self.view
        if index < 0 or index >= len(view):
            if y == 1 and not view:
                style = base + self.get_component_rich_style("timeline--empty", partial=True)
                return Strip([Segment(fit(" " + self._empty_text(), width), style)])
            return Strip.blank(width, base)
        return self._row_strip(view[index], width, base, index == self.cursor)

    def _empty_text(self) -> str:
        """Why there is no row: nothing received yet (the app's note), or the filters hide them all."""
        if not self.rows:
            return self.empty_note or "no events yet"
        if self.row_filter.error:
            return f"the view filter matches nothing: {self.row_filter.error}"
        if self.needle:
            return f"no row matches the view filter ({len(self.rows)} received; Escape clears it)"
        return f"the event keys hide all {len(self.rows)} rows"

    def _header_strip(self, width: int, base: Style) -> Strip:
        style = base + self.get_component_rich_style("timeline--header", partial=True)
        parts = [" "] + [fit(column.title, column.width) + " " for column in fixed_columns(width)]
        parts.append(fit(COMMAND.title, command_width(width)))
        return Strip([Segment("".join(parts), style)]).adjust_cell_length(width, style)

    def _row_strip(self, row: Row, width: int, base: Style, is_cursor: bool) -> Strip:
        if is_cursor:  # one colour pair on the selected row, checked for contrast in every theme
            base = kind = base + self.get_component_rich_style("timeline--cursor", partial=True)
        else:
            kind = base + self.get_component_rich_style(f"event--{row.cls}", partial=True)
        return Strip(row_segments(row, width, base, kind, is_cursor)).adjust_cell_length(width, base)


def row_segments(row: Row, width: int, base: Style, kind: Style, is_cursor: bool = False) -> list[Segment]:
    """The segments of one timeline row, a column at a time (``proctop.sinks.text.columns``), every
    text through ``fit`` (so made safe). A column styled ``event`` takes the event's colour (``kind``)."""
    segments = [Segment("\u25b6" if is_cursor else " ", base)]
    for column in fixed_columns(width):
        style = kind if column.style == "event" else base
        segments.append(Segment(fit(column.cell(row), column.width) + " ", style))
    rest = command_width(width)
    detail = row.detail
    if detail and cell_len(detail) > rest - 13:
        detail = row.short
    if detail:
        dlen = cell_len(detail)
        cmd_w = max(rest - dlen - 1, min(rest, COMMAND.minimum)) if row.command else 0
        det_w = max(0, rest - cmd_w - 1) if cmd_w else rest
        if cmd_w:
            segments.append(Segment(fit(row.command, cmd_w) + " ", base))
        if det_w:
            segments.append(Segment(fit(detail, det_w), kind))
    else:
        segments.append(Segment(fit(row.command, rest), base))
    return segments
