"""The header (what is watched, its state, the kernel filter the keys set) and the details panel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.cells import cell_len
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from proctop.model import kinds
from proctop.model.kinds import MASK_BITS, toggles_on
from proctop.sinks.text.cells import format_time
from proctop.sinks.text.rows import Row, format_lifetime
from proctop.sinks.text.sanitize import ScreenText, bounded
from proctop.sinks.ui import keys
from proctop.sinks.ui.help import key_text
from proctop.sinks.ui.timeline import EVENT_CLASSES

#: (key, mask name, shown name) of the mask toggles, in the order of the header.
TOGGLES = kinds.TOGGLES

#: (event type, shown name) in the rates line, in display order.
RATE_TYPES = kinds.RATE_LABELS


#: Mask bits that name processes: without exec (or fork, whose child is a copy of its parent),
#: a process that runs a new program is seen only at its exit, by then often nameless.
NAMING_BITS = MASK_BITS["exec"]

#: The kinds proctop watches by default (``kinds.DEFAULT_MASK``): always listed, on or off.
DEFAULT_KINDS = kinds.DEFAULT_MASK

Chunk = tuple[str, str | None]  # (text, component class or None), one piece of a header line


class HeaderBar(Widget):
    """Two lines: what is watched and its state; the kernel filter the keys set.

    It draws its own attributes only: the app binds its state into them
    (``data_bind``), so a change anywhere redraws the header without a call.
    Both lines are fitted to the width: what matters least is shortened or
    dropped first (the rates, then the source's long name, then the list of
    kinds switched off), so at 80 columns the header is two lines.
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
    following: reactive[bool] = reactive(True)  # the view sticks to the newest row
    since: reactive[float] = reactive(0.0)  # live: when proctop started watching
    span: reactive[tuple[float, float] | None] = reactive(None)  # replay: first and last event's time
    shown_rows: reactive[int] = reactive(0)
    hidden_rows: reactive[int] = reactive(0)  # recorded rows the event keys hide (replay)
    history_full: reactive[bool] = reactive(False)  # the history cap bites: the oldest rows go
    dropped: reactive[int] = reactive(0)  # rows the cap dropped while the view was held or paused
    view_filter: reactive[str] = reactive("")
    lost: reactive[int] = reactive(0)
    error: reactive[str] = reactive("")
    mask: reactive[int] = reactive(0)
    rates: reactive[dict[str, float]] = reactive(dict)  # events/s of every kind seen so far

    def __init__(
        self,
        label: str,
        supported: int,
        *,
        recorded: str | None = None,
        names: bool | None = None,
        history: int = 0,
        keymap: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # kwargs: Widget's (id, classes)
        #: binding id -> keys remapped by the config file: every key the header names is the one bound
        self.keymap: Mapping[str, str] = keymap or {}
        self.history = history  # the history cap, said when it bites
        #: Mask bits the filter line lists by name: the default kinds, and every kind on at some time (watch_mask).
        self.listed = DEFAULT_KINDS
        self.label = label  # the source's label
        self.supported = supported  # mask bits the source can deliver at all
        self.recorded = recorded  # a replay: the capture's file name; None when live
        #: The source reads execs for names even when the mask lacks exec (``--names``); None: not said.
        self.names = names

    def key(self, binding_id: str, scope: keys.Scope = "app") -> str:
        """The key that runs ``binding_id`` now, as the footer writes it: a remapped ``pause = "z"``
        makes the header say ``(z resumes)``, never a default key that no longer does it."""
        return key_text(self.app, keys.lookup(binding_id, scope), self.keymap, first=True)

    def render(self) -> ScreenText:
        width = self.size.width or 80
        style = self.get_component_rich_style
        text = ScreenText(no_wrap=False, overflow="fold")
        for i, line in enumerate((self._state_line(width), self._filter_line(width))):
            if i:
                text.newline()
            for chunk, cls in line:
                text.append(chunk, style(cls) if cls else None)
        return text

    def _state_line(self, width: int) -> list[Chunk]:
        """What is watched, whether it moves, how many rows, lost events, errors; then the rates."""
        head: list[Chunk] = [(" proctop ", "header--title")]
        if self.recorded is not None:
            source = f" replay {self.recorded}"
            if self.span:
                source += f" {format_time(self.span[0])[:8]}\u2013{format_time(self.span[1])[:8]}"
            short = f" replay {self.recorded}"
        else:
            source = f" {self.label}"
            short = ""
        spaced: Chunk = (" ", None)
        dropped = self.dropped
        if self.paused:
            none_lost = "" if dropped else ", none lost"
            resumes = f"({self.key('pause')} resumes)"
            state: Chunk = (f" PAUSED: {self.waiting:,} new held{none_lost} {resumes} ", "header--paused")
            brief: Chunk = (f" PAUSED {self.waiting:,} new ", "header--paused")  # "held" would say it twice when held
        elif self.state == "live" and self.recorded is None:
            state = (f" live since {format_time(self.since)[:8]} " if self.since else " live ", "header--dim")
            brief = (" live ", "header--dim")
        else:
            failed = self.error and self.state != "live"
            state = (f" {self.state} ", "header--lost" if failed else "header--dim")
            brief = (" ended " if self.state == "end of capture" else f" {self.state} ", state[1])
        # what the history cap dropped while held or paused: said next to "held" (or PAUSED)
        lost_rows: list[Chunk] = []
        brief_lost: list[Chunk] = []
        if dropped:
            lost_rows = [(f"; {dropped:,} rows dropped (history {self.history:,})", "header--lost")]
            brief_lost = [(f"; {dropped:,} dropped", "header--lost")]
        if self.paused and self.following:
            state, brief = (state[0].rstrip(), state[1]), (brief[0].rstrip(), brief[1])

        follows = f"({self.key('follow', 'timeline')} follows)"

        def follow(lost: list[Chunk]) -> list[Chunk]:
            """Following or held, after the state; what the cap dropped said next to "held" (or PAUSED)."""
            if self.following:
                if self.paused and lost:
                    return [*lost, ("  following", "header--dim")]
                return [spaced, ("following", "header--dim")]
            if lost:
                return [spaced, ("held", "header--paused"), *lost, (f" {follows}", "header--paused")]
            return [spaced, (f"held {follows}", "header--paused")]

        rows = f"  rows {self.shown_rows:,}"
        if self.history_full:
            rows += " (history full)"
        short_rows = f"  rows {self.shown_rows:,}" + (" (full)" if self.history_full else "")
        hidden = f" ({self.hidden_rows:,} hidden by the event keys)" if self.hidden_rows else ""
        needle = self.view_filter.strip()
        tail: list[Chunk] = []
        if needle:
            tail += [("  view filter: ", None), (needle, "header--paused")]
        narrow_tail = [("  filter: ", None), *tail[1:]] if needle else tail
        tail.append(("  ", None))
        tail.append((f" LOST {self.lost} ", "header--lost") if self.lost else ("lost 0", "header--dim"))
        if self.error:
            tail += [("  ", None), (self.error, "header--lost")]
        rates: list[Chunk] = [("  events/s", "header--dim")]
        for kind, kind_label in RATE_TYPES:
            if kind in self.rates:
                rates += [("  ", None), (kind_label, f"event--{kind}"), (f" {self.rates[kind]:.0f}", None)]
        if len(rates) == 1:
            rates.append(("  none yet", "header--dim"))
        # from the fullest to the barest; the first that fits is drawn (the last one always is)
        short_hidden = f" ({self.hidden_rows:,} hidden)" if hidden else ""
        if self.following:
            held: list[Chunk] = brief_lost if self.paused else []
        else:
            held = [spaced, ("held", "header--paused"), *brief_lost]
        full = [(source, None), state, *follow(lost_rows), (rows + hidden, None), *tail]
        shorter = [(short, None), state, *follow(lost_rows), (short_rows + short_hidden, None), *tail]
        shortest = [(short, None), state, *follow(brief_lost), (short_rows + short_hidden, None), *tail]
        candidates = [
            [*head, *full, *rates],
            [*head, *full],
            [*head, *shorter],
            [*head, *shortest],
            # narrow: following is the usual state, so only "held" is said
            [*head, (short, None), brief, *held, (short_rows + short_hidden, None), *narrow_tail],
            [*head, brief, *held, (short_rows + short_hidden, None), *narrow_tail],
        ]
        return _first_fitting(candidates, width)

    def watch_mask(self, mask: int) -> None:
        self.listed |= mask  # a kind once on stays listed, on or off: switched off, it says [ ], not nothing

    def _filter_line(self, width: int) -> list[Chunk]:
        """The kernel filter: the keys toggle what the kernel sends from now on (not rows already here).

        In a replay the same keys hide and show recorded rows, and the line says so. Every kind
        the line lists it shows on (``[x]``) or off (``[ ]``); too narrow for all, it lists the
        kinds on now or on since the start and counts the others.
        """
        replay = self.recorded is not None
        on_names = toggles_on(self.mask)
        warning: list[Chunk] = []
        brief: list[Chunk] = []  # the warning, shorter
        if not self.mask:
            every_key = self.key("toggle-all")
            if replay:
                warning = [(f"  every kind hidden ({every_key}: shown again)", "header--lost")]
            else:
                warning = [(f"  nothing can arrive: every kind is off ({every_key}: back on)", "header--lost")]
        elif not replay and not self.mask & NAMING_BITS and on_names:
            if self.names:  # exec is read for names alone, never shown
                warning = [("  names on (exec read, not shown)", "header--dim")]
                brief = [("  names on", "header--dim")]
            else:
                said = "names off" if self.names is False else "exec off"
                warning = [(f"  {said}: names may be lost ({self.key('toggle-exec')})", "header--paused")]
                brief = [(f"  {said}: names lost", "header--paused")]
        prefix: Chunk = ("recorded events shown " if replay else "kernel filter ", "header--dim")

        def toggle(key: str, name: str, label: str, *, keys_only: bool = False) -> list[Chunk]:
            bit = MASK_BITS[name]
            on = bool(self.mask & bit)
            mark = "-" if not self.supported & bit else ("x" if on else " ")
            shown = f"{self.key(f'toggle-{name}')}[{mark}]" + ("" if keys_only else label)
            return [(" ", None), (shown, "header--on" if on else "header--off")]

        every = [chunk for key, name, label in TOGGLES for chunk in toggle(key, name, label)]
        listed = [(key, name, label) for key, name, label in TOGGLES if self.listed & MASK_BITS[name]]
        some = [chunk for key, name, label in listed for chunk in toggle(key, name, label)]
        more = len(TOGGLES) - len(listed)
        off = len(TOGGLES) - len(on_names)
        keys = [chunk for key, name, label in TOGGLES for chunk in toggle(key, name, label, keys_only=True)]
        candidates = [
            [prefix, *every, *warning],
            [prefix, *some, (f"  {more} more off ({self.key('help')} keys)", "header--dim"), *warning],
            [prefix, *some, (f"  +{more} off", "header--dim"), *warning],
        ]
        if brief:
            candidates.append([prefix, *some, (f"  +{more} off", "header--dim"), *brief])
        # a replay's shorter prefix: every kind's name still fits at 120 columns, and all on at 80
        prefixes = [prefix, ("replay shows ", "header--dim")] if replay else [prefix]
        if replay:
            candidates.append([prefixes[1], *every, *warning])
        if not off:  # every kind on: their names, none hidden
            candidates += [[first, (" on: " + " ".join(on_names), "header--on")] for first in prefixes]
        candidates.append([prefix, *keys, *warning])
        if not on_names:
            bare: list[Chunk] = [prefix, warning[0] if warning else ("", None)]
            candidates += [bare]
        return _first_fitting(candidates, width)


def _first_fitting(candidates: list[list[Chunk]], width: int) -> list[Chunk]:
    """The first candidate line that fits in ``width`` cells (the last one if none does)."""
    for line in candidates:
        if sum(cell_len(chunk) for chunk, _ in line) <= width:
            return line
    return candidates[-1]


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
