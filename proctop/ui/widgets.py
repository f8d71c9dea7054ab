"""The header (source, mask toggles, rates, lost counter) and the details panel."""

from __future__ import annotations

from typing import Any

from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from proctop.model import kinds
from proctop.model.kinds import MASK_BITS
from proctop.ui.rows import Row, format_lifetime, format_time
from proctop.ui.sanitize import ScreenText, bounded
from proctop.ui.timeline import EVENT_CLASSES

#: (key, mask name, shown name) of the mask toggles, in the order of the header.
TOGGLES = kinds.TOGGLES

#: (event type, shown name) in the rates line, in display order.
RATE_TYPES = kinds.RATE_LABELS


class HeaderBar(Widget):
    """Three lines: source and state; the mask toggles; events/s per type.

    It draws its own attributes only: the app binds its state into them
    (``data_bind``), so a change anywhere redraws the header without a call.
    """

    COMPONENT_CLASSES = {
        "header--title",
        "header--on",
        "header--off",
        "header--lost",
        "header--paused",
        "header--dim",
        *(f"event--{name}" for name in EVENT_CLASSES),
    }

    paused: reactive[bool] = reactive(False)
    waiting: reactive[int] = reactive(0)  # events held while paused
    state: reactive[str] = reactive("live")  # "live", "stopped", "end of capture"
    shown_rows: reactive[int] = reactive(0)
    hidden_rows: reactive[int] = reactive(0)  # recorded rows the event keys hide (replay)
    view_filter: reactive[str] = reactive("")
    lost: reactive[int] = reactive(0)
    error: reactive[str] = reactive("")
    mask: reactive[int] = reactive(0)
    rates: reactive[dict[str, float]] = reactive(dict)  # events/s of every kind seen so far

    def __init__(self, label: str, supported: int, **kwargs: Any) -> None:  # kwargs: Widget's (id, classes)
        super().__init__(**kwargs)
        self.label = label  # the source's label
        self.supported = supported  # mask bits the source can deliver at all

    def render(self) -> ScreenText:
        style = self.get_component_rich_style
        text = ScreenText(no_wrap=False, overflow="fold")
        text.append(" proctop ", style("header--title"))
        text.append(f" {self.label} ")
        if self.paused:
            text.append(f" PAUSED ({self.waiting} waiting) ", style("header--paused"))
        else:
            failed = self.error and self.state != "live"
            text.append(f" {self.state} ", style("header--lost" if failed else "header--dim"))
        text.append(f" rows {self.shown_rows}")
        if self.hidden_rows:
            text.append(f" ({self.hidden_rows} hidden by the event keys)", style("header--dim"))
        needle = self.view_filter.strip()
        if needle:
            text.append(" filter: ")
            text.append(needle, style("header--paused"))
        text.append("  ")
        if self.lost:
            text.append(f" LOST {self.lost} ", style("header--lost"))
        else:
            text.append("lost 0", style("header--dim"))
        if self.error:
            text.append("  ")
            text.append(self.error, style("header--lost"))
        text.newline()
        for i, (key, name, label) in enumerate(TOGGLES):
            bit = MASK_BITS[name]
            if i:
                text.append(" ")
            on = bool(self.mask & bit)
            mark = "-" if not self.supported & bit else ("x" if on else " ")
            text.append(f"{key}[{mark}]{label}", style("header--on" if on else "header--off"))
        text.newline()
        rates = self.rates
        text.append("events/s", style("header--dim"))
        shown = False
        for kind, kind_label in RATE_TYPES:
            if kind not in rates:
                continue
            shown = True
            text.append("  ")
            text.append(kind_label, style(f"event--{kind}"))
            text.append(f" {rates[kind]:.0f}")
        if not shown:
            text.append("  none yet", style("header--dim"))
        return text


#: Characters of one field of the details panel: a megabyte argv is cut, with the bytes left out named.
DETAIL_LIMIT = 8192


class DetailsPanel(Static):
    """Everything known about the selected row, and its ancestry."""

    def show(self, row: Row | None, ancestry: list[tuple[int, str]] | None) -> None:
        self.update(details_text(row, ancestry))


def details_text(row: Row | None, ancestry: list[tuple[int, str]] | None) -> ScreenText:
    """The details panel's text; every value goes through ``ScreenText``, so it is made safe.

    ``ancestry`` None: not known yet (the reader thread is asked; see ``ProctopApp._show_details``).
    """
    text = ScreenText(no_wrap=False, overflow="fold")
    if row is None:
        text.append("no event selected")
        return text
    ev = row.ev

    def field(label: str, value: str) -> None:
        text.append(f"{label:<10}", style="bold")
        text.append(bounded(value, DETAIL_LIMIT)).newline()

    text.append(f"{row.label} ", style="bold")
    text.append(f"at {format_time(ev.ts)}  pid {ev.pid}")
    if ev.tgid and ev.tgid != ev.pid:
        text.append(f" (tgid {ev.tgid})")
    if ev.ppid:
        text.append(f"  ppid {ev.ppid}")
    if ev.event != "lost":
        text.append(f"  user {row.user}" + (f" (uid {ev.uid})" if ev.uid is not None else ""))
    text.newline()
    if ev.event == "lost":
        field("lost", row.detail)
        return text
    if ev.event == "exit":  # one field a line: a long value never runs into the next label
        lifetime = format_lifetime(ev.lifetime, ev.lifetime_resolution)
        field("status", ev.status_text + (f", after {lifetime}" if lifetime else ""))
        if ev.reason:
            field("reason", ev.reason)
    elif row.detail:
        field("detail", row.detail)
    field("command", " ".join(ev.cmdline) if ev.cmdline else "?")
    field("exe", ev.exe or "?")
    field("comm", ev.comm or "?")
    if ev.unit:
        field("unit", ev.unit)
    parent = ancestry[0][1] if ancestry else None
    if parent == "?":
        parent = None
    if ev.parent_cmdline:
        parent = " ".join(ev.parent_cmdline)
    elif ev.parent_comm and parent is None:
        parent = ev.parent_comm
    field("parent", parent or "?")
    text.append(f"{'ancestry':<10}", style="bold")
    if ancestry is None:
        text.append("\u2026").newline()
    elif not ancestry:
        text.append("unknown").newline()
    for i, (pid, command) in enumerate(ancestry or ()):
        if i:
            text.append(" " * 10)
        text.append(f"{'  ' * i}\u2514 {pid} ")
        text.append(bounded(command, DETAIL_LIMIT)).newline()
    text.rstrip()
    return text
