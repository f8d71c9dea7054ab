"""The proctop TUI: a reader thread feeding a Line-API timeline in batches.

The source is polled in a Textual thread worker. The worker never waits on
the UI: it accumulates events and posts at most one ``Batch`` message every
``1 / BATCH_HZ`` seconds, and only when the previous batch has been taken and
the terminal has taken the last frame (a slow link lowers the frame rate), so
a storm of events costs one message per frame, not one per event. The UI
touches the source only through the ``Source`` interface.

Threads: the worker is the source's consumer, so it alone touches the process
table (``proctop.model.proctable``). The details panel's ancestry is a question
put on ``_questions``; the worker answers it between polls with an
``AncestryFound`` message.

State: the app's reactives (paused, rows, filter, mask, lost, ...) are bound
into the header and the timeline (``data_bind``); children report up with
messages (``Timeline.ViewChanged``, ``FollowChanged``, ``CursorMoved``,
``FailuresView.Open``). Nothing is refreshed by hand.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.widgets import ContentSwitcher, Footer, Input
from textual.worker import Worker, get_current_worker

from proctop.errors import ProctopError
from proctop.model.events import Event
from proctop.model.failures import LOOP_BURST, LOOP_INTERVAL, FailureBoard
from proctop.model.kinds import MASK_BITS, PROC_EVENT_ALL, toggles_on
from proctop.sinks.text.cells import format_time
from proctop.sinks.text.rows import Row
from proctop.sinks.text.sanitize import safe
from proctop.sinks.ui import keys
from proctop.sinks.ui.board import FailuresView
from proctop.sinks.ui.help import HelpScreen, palette_commands
from proctop.sinks.ui.query import compile_filter
from proctop.sinks.ui.themes import DEFAULT_THEME, EVENT_DEFAULTS, event_css, load_themes
from proctop.sinks.ui.timeline import Timeline
from proctop.sinks.ui.widgets import TOGGLES, DetailsPanel, HeaderBar
from proctop.sources.base import Source

if TYPE_CHECKING:
    from textual.driver import Driver
    from textual.screen import Screen
    from textual.theme import Theme

    from proctop.sinks.ui.terminal import TerminalGuard

#: Batches per second at most (the UI's frame rate for new events).
BATCH_HZ = 15
POLL_TIMEOUT = 0.05

#: key -> mask name toggled by it.
MASK_KEYS = {key: name for key, name, _ in TOGGLES}


class Batch(Message):
    """Events read since the last batch (oldest first)."""

    def __init__(self, events: list[Event], overflow: int = 0) -> None:
        super().__init__()
        self.events = events
        self.overflow = overflow


class AncestryFound(Message):
    """The worker's answer: the ancestry of ``row``'s process (raw text, made safe when shown)."""

    def __init__(self, row: Row, chain: list[tuple[int, str]]) -> None:
        super().__init__()
        self.row = row
        self.chain = chain


class ReaderStopped(Message):
    """The reader loop ended (end of a replay, or an error)."""

    def __init__(self, error: str | None = None, status: int | None = None) -> None:
        super().__init__()
        self.error = error
        self.status = status  # set for an error that ends proctop (a bad capture line: 2)


#: Actions bound to printable keys (disabled while the filter input is open).
_TEXT_KEY_ACTIONS = {"toggle_mask", "toggle_all", "pause", "resume", "filter", "quit", "details", "help"}
#: Priority actions that would change the view under a screen on top (the help, the palette).
_VIEW_ACTIONS = {"filter", "toggle_board"}


class ProctopApp(App[int]):
    """Live process events."""

    CSS_PATH = "proctop.tcss"
    CSS = event_css()  # the .event--* rules, from the table of kinds (see event_css)
    TITLE = "proctop"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = keys.bindings("app")  # every key, its id and its help: proctop/sinks/ui/keys.py

    # The app's state; the header and the timeline are bound to it (see compose).
    paused: reactive[bool] = reactive(False, init=False, bindings=True)
    waiting: reactive[int] = reactive(0, init=False)  # events held while paused
    state: reactive[str] = reactive("live", init=False)
    shown_rows: reactive[int] = reactive(0, init=False)
    hidden_rows: reactive[int] = reactive(0, init=False)
    history_full: reactive[bool] = reactive(False, init=False)  # the history cap bites: the oldest rows go
    dropped: reactive[int] = reactive(0, init=False)  # rows the cap dropped while the view was held or paused
    view_filter: reactive[str] = reactive("", init=False)
    lost: reactive[int] = reactive(0, init=False)
    error: reactive[str] = reactive("", init=False)
    mask: reactive[int] = reactive(0, init=False)
    rates: reactive[dict[str, float]] = reactive(dict, init=False)
    following: reactive[bool] = reactive(True, init=False)
    filter_open: reactive[bool] = reactive(False, init=False)
    details_open: reactive[bool] = reactive(False, init=False)
    failures: reactive[int] = reactive(0, init=False)  # failed exits fed to the boards
    since: reactive[float] = reactive(0.0, init=False)  # when proctop started watching (a toggle keeps it)
    span: reactive[tuple[float, float] | None] = reactive(None, init=False)  # first and last event's time
    empty_note: reactive[str] = reactive("", init=False)  # what an empty timeline says

    def __init__(
        self,
        source: Source,
        *,
        history: int = 100_000,
        theme: str | None = None,
        rate_interval: float | None = 1.0,
        loop_burst: int = LOOP_BURST,
        loop_interval: float = LOOP_INTERVAL,
        duration: float | None = None,
        count: int | None = None,
        keymap: Mapping[str, str] | None = None,
        save_theme: Callable[[str], str | None] | None = None,
    ) -> None:
        self._themes = load_themes()
        super().__init__()
        for t in self._themes.values():
            self.register_theme(t)
        self.theme = theme or DEFAULT_THEME
        #: Remembers a theme chosen in the palette (the config file's, via proctop/cli/config.py).
        self._save_theme = save_theme
        self._saved_theme = self.theme
        self.source = source
        self.history = history
        self.pending: deque[Row] = deque(maxlen=history)
        self.pending_dropped = 0  # rows the pause held beyond the history, dropped (said in the header)
        #: Rows whose ancestry the details panel asks the worker for (it owns the process table).
        #: Ancestry questions for the reader thread; None wakes it to stop (``_end_reader``).
        self._questions: queue.SimpleQueue[Row | None] = queue.SimpleQueue()
        #: The failures board's model, one per grouping, fed every failed exit received.
        self.boards = {
            by: FailureBoard(by=by, loop_burst=loop_burst, loop_interval=loop_interval) for by in ("command", "unit")
        }
        self.rate_interval = rate_interval
        self.batches = 0  # Batch messages handled (tests and the load bench look at it)
        self.events_seen = 0  # events received from the worker, shown or waiting
        self.overflow = 0  # events the worker dropped because the UI fell behind by a whole history
        self.reader_done = False
        self._inflight = threading.Event()
        self._stop = threading.Event()
        self._rate_prev: tuple[float, dict[str, int]] | None = None
        self.duration = duration  # quit after this many seconds (--duration), as top -n does
        self.count = count  # quit once this many events arrived (--count)
        #: Signal handlers and exit watchdog of a real run (run_app); None under a test pilot.
        self.terminal_guard: TerminalGuard | None = None
        self.fatal: str | None = None  # the one line an error that ended the run leaves on stderr
        self.keymap: dict[str, str] = {}  # binding id -> keys, from a config file (apply_keymap)
        if keymap:
            self.apply_keymap(keymap)
        self._details_row: Row | None = None  # the row the details panel shows
        self.start_mask = 0  # the kinds watched at the start (on_mount)

    def _remember_theme(self, theme: Theme) -> None:
        """The theme changed (the palette): save it, or say in a notification why it was not."""
        if self._save_theme is None or theme.name == self._saved_theme:
            return
        self._saved_theme = theme.name
        problem = self._save_theme(theme.name)
        if problem:
            self.notify(problem, severity="warning")

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(EVENT_DEFAULTS)

    # --- layout ------------------------------------------------------------

    def compose(self) -> ComposeResult:
        app = ProctopApp
        recorded = self.source.describe().get("file") if self.source.recorded else None
        header = HeaderBar(
            self.source.label,
            self.source.supported,
            recorded=os.path.basename(recorded) if recorded else None,
            names=self.source.describe().get("names"),
            history=self.history,
            keymap=self.keymap,
            id="header",
        )
        self.header_bar = header.data_bind(
            app.paused,
            app.waiting,
            app.state,
            app.following,
            app.since,
            app.span,
            app.shown_rows,
            app.hidden_rows,
            app.history_full,
            app.dropped,
            app.view_filter,
            app.lost,
            app.error,
            app.mask,
            app.rates,
        )
        self.timeline = Timeline(self.history, id="timeline").data_bind(app.view_filter, app.empty_note)
        self.details_body = DetailsPanel(id="details-body")
        self.filter_input = Input(
            placeholder=f"filter rows (Enter keeps, {self.header_bar.key('close')} clears)",
            id="filter",
            select_on_focus=False,
        )
        self.board_view = FailuresView(self.boards, id="board").data_bind(app.failures)
        self.views = ContentSwitcher(initial="timeline", id="views")
        yield self.header_bar
        with self.views:
            yield self.timeline
            yield self.board_view
        self.details = VerticalScroll(id="details")
        with self.details:
            yield self.details_body
        yield self.filter_input
        yield Footer()

    def on_mount(self) -> None:
        self.since = time.time()
        self.start_mask = self.source.mask  # the third stop of a's cycle (all, none, these)
        self._sync_source()
        self.timeline.focus()
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.source.recorded:  # the mask keys hide recorded rows instead of discarding them
            self.timeline.set_shows(self.source.shows)
        if self.terminal_guard is not None:
            self.terminal_guard.attach(self, asyncio.get_running_loop())
        if self.count == 0 or self.duration == 0:
            self._time_up()
        elif self.duration is not None:
            self.set_timer(self.duration, self._time_up)
        if self.rate_interval:
            self.set_interval(self.rate_interval, self._update_rates)
        self._read_loop()

    def on_unmount(self) -> None:
        self._end_reader()

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """Every way out (q, a signal, --count/--duration, a dead terminal) ends the reader thread too."""
        self._end_reader()
        super().exit(*args, **kwargs)

    def _end_reader(self) -> None:
        """Tell the reader thread to stop, and wake it with a ``None`` question.

        Its wait for questions has a timeout, but after SIGSTOP/SIGCONT that timed
        wait (``SimpleQueue.get(timeout=0.05)``, a futex in CPython 3.11) was seen
        to sleep on for good, and asyncio's shutdown then waited for the thread for
        ever: ``q`` left a blank screen and a live process (1 run in 3). A put is
        what wakes any wait on the queue.
        """
        self._stop.set()
        self._questions.put(None)

    # --- the terminal: see proctop/sinks/ui/terminal.py -------------------------------

    def get_driver_class(self) -> type[Driver]:
        """Textual's Linux driver, told that a terminal can go away."""
        from proctop.sinks.ui.terminal import ProctopDriver

        return ProctopDriver

    def _time_up(self) -> None:
        self._stop.set()
        self.exit(0)

    # --- the reader ----------------------------------------------------------

    @work(thread=True, exclusive=True, group="reader", name="proctop-reader")
    def _read_loop(self) -> None:
        """Poll the source and post batches; then, once it is done, keep answering questions."""
        worker = get_current_worker()
        self._read_events(worker)
        while not (worker.is_cancelled or self._stop.is_set()):
            try:
                row = self._questions.get(timeout=POLL_TIMEOUT)
            except queue.Empty:
                continue
            if row is None:  # _end_reader
                break
            self._answer(row)

    def _answer(self, row: Row) -> None:
        """The ancestry of ``row``, from the source's process table (this thread's own)."""
        try:
            chain = self.source.ancestry(row.ev)
        except Exception:  # /proc races, a broken source: the panel shows what the row tells
            chain = []
        self.post_message(AncestryFound(row, chain))

    def _read_events(self, worker: Worker[None]) -> None:
        """The reader proper, until the source is done (then it posts ``ReaderStopped``) or the app ends."""
        source = self.source
        buf: deque[Event] = deque(maxlen=self.history)
        overflow = 0
        interval = 1.0 / BATCH_HZ
        last = 0.0
        error: str | None = None
        questions = self._questions
        while not (worker.is_cancelled or self._stop.is_set()):
            while not questions.empty():
                question = questions.get()
                if question is None:  # _end_reader
                    return
                self._answer(question)
            try:
                events = source.poll(POLL_TIMEOUT)
            except Exception as exc:  # a broken source must not take the UI down
                if isinstance(exc, ProctopError):  # proctop's own error (a bad capture line): it ends the run
                    self.post_message(ReaderStopped(str(exc), exc.status))
                    return
                error = f"reading events failed: {exc}"
                break
            if events:
                room = buf.maxlen - len(buf)  # type: ignore[operator]  # made with maxlen=self.history, never None
                if len(events) > room:
                    overflow += len(events) - room
                buf.extend(events)
            now = time.monotonic()
            if buf and not self._inflight.is_set() and now - last >= interval and self._output_ready():
                self._inflight.set()
                self.post_message(Batch(list(buf), overflow))
                buf.clear()
                overflow = 0
                last = now
            if source.finished:
                if not buf:
                    break
                time.sleep(interval / 2)
        else:
            return
        self.post_message(ReaderStopped(error))

    def _output_ready(self) -> bool:
        """The terminal took the last frame (``ProctopDriver.output_ready``): over a slow link the
        reader waits for it, so the frame rate drops to what the link carries instead of frames
        queueing (the rows wait in the reader's buffer meanwhile; bench/slow_link.py measures it).
        Any other driver (a test pilot's) is always ready."""
        ready: Callable[[], bool] | None = getattr(self._driver, "output_ready", None)
        return ready is None or ready()

    def on_batch(self, message: Batch) -> None:
        self._inflight.clear()
        events = message.events
        if self.count is not None:
            if self.events_seen >= self.count:
                return  # already quitting
            events = events[: self.count - self.events_seen]
        self.batches += 1
        self.overflow += message.overflow
        self.events_seen += len(events)
        rows = [Row(ev) for ev in events]
        if events and self.source.recorded:
            first = self.span[0] if self.span else events[0].ts
            self.span = (first, events[-1].ts)
        boards = self.boards.values()
        failures = self.failures
        for ev in events:
            if ev.failed:
                failures += 1
                for board in boards:
                    board.add(ev)
        self.failures = failures
        if self.paused:
            self.pending_dropped += max(0, len(self.pending) + len(rows) - self.history)
            self.pending.extend(rows)
            self.waiting = len(self.pending)
            self._count_dropped()
        else:
            self.timeline.add(rows)
        self._sync_source()
        if self.count is not None and self.events_seen >= self.count:
            self._stop.set()
            self.call_after_refresh(self.exit, 0)  # the last events are drawn first

    def on_reader_stopped(self, message: ReaderStopped) -> None:
        self.reader_done = True
        if message.status is not None:  # printed as one line once the terminal is restored (run_app)
            self.fatal = message.error
            self.exit(message.status, return_code=message.status)
            return
        if message.error:
            self.say(message.error, severity="error", timeout=10)
        self._sync_source()

    def _sync_source(self) -> None:
        """Copy what the source says of itself into the app's state (and so into the header)."""
        source = self.source
        self.mask = source.mask
        self.lost = source.stats.lost
        self.error = str(source.error or "")
        seen = source.stats.by_type
        if any(kind not in self.rates for kind in seen):  # a kind seen is listed from its first event on
            self.rates = {**dict.fromkeys(seen, 0.0), **self.rates}
        if self.reader_done or source.finished:
            self.state = "end of capture" if source.kind == "replay" else "stopped"
        self.empty_note = self._empty_note()

    def _empty_note(self) -> str:
        """What an empty timeline says: what is watched and since when, or why nothing comes."""
        if self.source.recorded:
            return "no events in this capture" if self.state != "live" else "reading the capture\u2026"
        if self.state != "live":
            return "stopped: no more events will come"
        names = toggles_on(self.mask)
        if not names:
            key = self.header_bar.key("toggle-all")
            return f"every kind is off in the kernel filter: nothing can arrive (press {key})"
        since = format_time(self.since)[:8]
        return f"watching {', '.join(names)} since {since} \u2014 none yet"

    def say(self, message: str, *, severity: SeverityLevel = "information", timeout: float | None = None) -> None:
        """A notification; the only way the app shows one, so its text is always made safe."""
        self.notify(safe(message), severity=severity, timeout=timeout, markup=False)

    def _update_rates(self) -> None:
        now = time.monotonic()
        counts = dict(self.source.stats.by_type)
        if self._rate_prev is not None:
            then, before = self._rate_prev
            span = max(now - then, 1e-3)
            self.rates = {k: (v - before.get(k, 0)) / span for k, v in counts.items()}
        else:
            self.rates = dict.fromkeys(counts, 0.0)
        self._rate_prev = (now, counts)
        self._sync_source()

    # --- actions ---------------------------------------------------------------

    def apply_keymap(self, keymap: Mapping[str, str]) -> None:
        """Remap keys by binding id (``pause = "z"``); ids and defaults: proctop/sinks/ui/keys.py.

        Raises ValueError for an unknown id: the config reader checks first
        (``keys.check_keymap``) and reports the file and key.
        """
        problem = keys.check_keymap(keymap)
        if problem:
            raise ValueError(problem)
        self.keymap.clear()  # in place: the header holds this very map and names the keys bound now
        self.keymap.update(keymap)
        self.set_keymap(self.keymap)
        if self.is_running:  # composed: before that, the header reads the map when it is drawn
            for header in self.query(HeaderBar):
                header.refresh()

    def action_help(self) -> None:
        """? and F1: proctop's keys, as bound now."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.keymap))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """proctop's actions with their keys first, then Textual's but its generic "Keys" and "Quit"."""
        yield from palette_commands(self, self.keymap, self._run_spec, self._palette_title)
        for command in super().get_system_commands(screen):
            if command.title not in ("Keys", "Quit"):
                yield command

    def _palette_title(self, spec: keys.KeySpec) -> str:
        return "Resume" if spec.action == "pause" and self.paused else spec.description

    async def _run_spec(self, spec: keys.KeySpec) -> None:
        action = "resume" if spec.action == "pause" and self.paused else spec.action  # one entry, both states
        await self.run_action(action, self.timeline if spec.scope == "timeline" else self)

    def action_interrupt(self) -> None:
        """ctrl+c quits, whatever has the focus."""
        self.exit(0)

    def action_toggle_mask(self, name: str) -> None:
        bit = MASK_BITS[name]
        self._set_mask(self.source.mask ^ bit)

    def action_toggle_all(self) -> None:
        """a cycles every kind on, then none, then the kinds proctop started with (--only, the default)."""
        mask = self.source.mask
        if mask & PROC_EVENT_ALL == PROC_EVENT_ALL:
            self._set_mask(0)
        elif mask == 0 and self.start_mask:
            self._set_mask(self.start_mask)
        else:
            self._set_mask(PROC_EVENT_ALL)

    def _set_mask(self, mask: int) -> None:
        """Hand the new mask to the source (and so to the kernel) now.

        ``set_mask`` only writes one netlink message on the socket's stdlib dup,
        so it is safe and quick on the event loop's thread.
        """
        try:
            self.source.set_mask(mask)
            error = self.source.error
        except Exception as exc:  # a failed write must not take the UI down
            error = str(exc)
        if error:
            self.say(f"cannot change the mask: {error}", severity="error")
        if self.source.recorded:
            self.timeline.set_shows(self.source.shows)
        self._sync_source()

    def action_toggle_board(self) -> None:
        """Tab: the failures board, and back to the timeline."""
        if self.views.current == "board":
            self.views.current = "timeline"
            self.timeline.focus()
        else:
            self.views.current = "board"
            self.board_view.focus()

    def on_failures_view_open(self, message: FailuresView.Open) -> None:
        """Enter on the board: the timeline, filtered to exactly that group's failures (an ``id:`` term)."""
        self.views.current = "timeline"
        self.timeline.focus()
        self.filter_input.value = message.text  # the filter follows (on_input_changed)

    def action_resume(self) -> None:
        self.action_pause()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            if not self.timeline.follow:  # still held: what the pause dropped was dropped while held
                self.timeline.held_dropped += self.pending_dropped
            self.pending_dropped = 0
            if self.pending:
                rows = list(self.pending)
                self.pending.clear()
                self.waiting = 0
                self.timeline.add(rows)
            self._count_dropped()

    def _count_dropped(self) -> None:
        """Rows the history cap dropped while the view was held (the timeline's count) or paused (ours)."""
        self.dropped = self.timeline.held_dropped + self.pending_dropped

    def on_timeline_view_changed(self, message: Timeline.ViewChanged) -> None:
        self.shown_rows, self.hidden_rows = message.shown, message.hidden
        self.history_full = message.full
        self._count_dropped()

    def on_timeline_follow_changed(self, message: Timeline.FollowChanged) -> None:
        self.following = message.follow
        self._count_dropped()

    def on_timeline_filter_pasted(self, message: Timeline.FilterPasted) -> None:
        self.filter_open = True
        self.filter_input.insert_text_at_cursor(message.text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While the filter input is open, letters are text, not commands."""
        if action in _VIEW_ACTIONS and len(self.screen_stack) > 1:
            return False
        if self.filter_open and action in _TEXT_KEY_ACTIONS:
            return False
        if action in ("pause", "resume"):  # one key, and the footer names what it does now
            return self.paused == (action == "resume")
        return True

    def watch_filter_open(self, open_: bool) -> None:
        """The focus moves at once, not on the next turn of the loop (``Widget.focus``): the keys
        typed or pasted right after ``/`` are already queued, and each goes to whoever has the
        focus when the app takes it, so the input gets every one, in order."""
        self.filter_input.set_class(open_, "-open")
        screen = self.filter_input.screen
        screen.set_focus(self.filter_input if open_ else self.timeline)

    def watch_details_open(self, open_: bool) -> None:
        self.details.set_class(open_, "-open")
        if open_:
            self._show_details(self.timeline.selected)

    def action_filter(self) -> None:
        self.filter_open = True

    def on_input_changed(self, event: Input.Changed) -> None:
        self.view_filter = event.value
        error = compile_filter(event.value.strip()).error  # cached: the timeline compiles the same text
        if self.timeline.needle == event.value.strip() and self.timeline.row_filter.error:
            error = self.timeline.row_filter.error  # given up at its deadline
        self._show_filter_error(error)

    def on_timeline_filter_gave_up(self, message: Timeline.FilterGaveUp) -> None:
        if message.row_filter.text == self.filter_input.value.strip():
            self._show_filter_error(message.row_filter.error)

    def _show_filter_error(self, error: str | None) -> None:
        """In the input's border, as text: the error quotes what was typed, never markup
        (``/x[/`` raised a MarkupError, ``[@click=app.quit]`` was a live link)."""
        self.filter_input.border_subtitle = Content(safe(error)) if error else None
        self.filter_input.set_class(error is not None, "-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.filter_open = False

    def action_details(self) -> None:
        self.details_open = not self.details_open

    def action_close(self) -> None:
        if self.filter_open:
            self.filter_input.value = ""
            self.filter_open = False
        else:
            self.details_open = False

    def on_timeline_cursor_moved(self, message: Timeline.CursorMoved) -> None:
        if self.details_open:
            self._show_details(message.row)

    def _show_details(self, row: Row | None) -> None:
        """The row at once, its ancestry when the worker has answered (``on_ancestry_found``)."""
        self._details_row = row
        self.details_body.show(row, None if row is not None and row.ev.event != "lost" else [])
        if row is not None and row.ev.event != "lost":
            self._questions.put(row)

    def on_ancestry_found(self, message: AncestryFound) -> None:
        if self.details_open and message.row is self._details_row:
            self.details_body.show(message.row, message.chain)


def run_app(app: ProctopApp, *, exit_process: bool = False) -> int:
    """Run the TUI ``app`` on its source (started here, closed on the way out); the exit status.

    The command line builds the app from its options (proctop/cli/main.py). The
    ``TerminalGuard`` is in place before the screen is touched: from then on
    any fatal signal, hangup or dead tty ends the run within ``EXIT_DEADLINE``
    seconds with the terminal given back (see proctop/sinks/ui/terminal.py). With
    ``exit_process`` (the command line) the process ends here, by ``os._exit``
    or by the signal that ended the run; otherwise the status is returned.
    """
    from proctop.sinks.ui.terminal import QUIT_SIGNALS, TerminalGuard

    source = app.source
    guard = TerminalGuard()
    app.terminal_guard = guard
    guard.install()
    try:
        source.start()
        try:
            app.run()
        finally:
            guard.restore_modes()  # the modes saved before the screen opened, whatever happened since
            source.close()
    finally:
        guard.uninstall()
    status = 0 if guard.tripped else (app.return_code or 0)
    if app.fatal and not guard.tripped:
        print(f"proctop: {safe(app.fatal)}", file=sys.stderr)
    if source.command_status is not None:  # -- COMMAND: its status is proctop's
        status = source.command_status
    if exit_process or (guard.signum is not None and guard.signum not in QUIT_SIGNALS):
        guard.finish(status)  # SIGUSR1 & co: dies by it here, now that the terminal is restored
    return status
