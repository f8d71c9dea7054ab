"""Snapshots of the main screen and the details panel (replayed capture, UTC, frozen rates).

Regenerate after an intended change of the look with
``pytest tests/ui/test_ui_snapshots.py --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

import threading
import time

import pytest
from ui_helpers import SAMPLE, details_body, wait_for

from proctop.kernel.protocol import PROC_EVENT_ALL
from proctop.model.events import Event
from proctop.sinks.ui.app import ProctopApp
from proctop.sources.base import Source
from proctop.sources.replay import ReplaySource, load_capture

SIZES = [(100, 30), (80, 24), (120, 40)]
THEMES = ["proctop-dark", "proctop-cb-safe"]


def make_app(theme: str) -> ProctopApp:
    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    return ProctopApp(source, theme=theme, rate_interval=None)


async def _loaded(pilot) -> None:
    app = pilot.app
    assert await wait_for(pilot, lambda: app.reader_done and len(app.timeline.rows) == app.source.stats.delivered)
    await pilot.pause()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, size, theme):
    assert snap_compare(make_app(theme), terminal_size=size, run_before=_loaded)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_details_panel(snap_compare, size, theme):
    async def select_crash(pilot) -> None:
        await _loaded(pilot)
        app = pilot.app
        for _ in range(30):  # up to the SIGSEGV exit of ./crashme
            ev = app.timeline.selected.ev
            if ev.event == "exit" and ev.pid == 1400:
                break
            await pilot.press("up")
        await pilot.press("enter")
        await details_body(pilot, app)  # the reader thread has answered the ancestry
        await pilot.pause()

    assert snap_compare(make_app(theme), terminal_size=size, run_before=select_crash)


async def _filtered(pilot) -> None:
    """The view filter open, with a column term: only the failed exits are left."""
    await _loaded(pilot)
    await pilot.press("slash", *"event:failed")
    await pilot.pause()


async def _bad_filter(pilot) -> None:
    """A regex that cannot compile: said in the input, no row matches, nothing raised."""
    await _loaded(pilot)
    await pilot.press("slash", *"cmd:/(/")
    await pilot.pause()


async def _paused_and_held(pilot) -> None:
    """Paused (space says Resume) and the view held three rows up (End follows, in the footer)."""
    await _loaded(pilot)
    await pilot.press("space", "up", "up", "up")
    await pilot.pause()


@pytest.mark.parametrize(
    "state", [_filtered, _bad_filter, _paused_and_held], ids=lambda f: f.__name__.strip("_").replace("_", "-")
)
def test_states_at_80x24(snap_compare, state):
    """80x24 first: the header keeps to two lines and the footer to one in every state."""
    assert snap_compare(make_app("proctop-dark"), terminal_size=(80, 24), run_before=state)


class TwoPhases(Source):
    """The sample three times over: 45 events, then the rest once ``more`` is set; then it is finished."""

    kind = "replay"  # finished: "end of capture", no clock time in the header
    label = "sample, twice held"

    def __init__(self) -> None:
        super().__init__(PROC_EVENT_ALL)
        self.events: list[Event] = load_capture(SAMPLE)[1] * 3
        self.more = threading.Event()
        self.given = 0

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Event]:
        until = len(self.events) if self.more.is_set() else 45
        out = self.events[self.given : min(until, self.given + 5)]  # a few at a time: no batch overflows
        self.given += len(out)
        time.sleep(0.02 if out else timeout)
        return out

    @property
    def finished(self) -> bool:
        return self.given == len(self.events)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_held_while_the_history_cap_drops(snap_compare, size):
    """Home holds the oldest rows with a history of 40; 39 more arrive: the screen stays, the header counts."""
    source = TwoPhases()

    async def hold_then_more(pilot) -> None:
        app = pilot.app
        assert await wait_for(pilot, lambda: app.events_seen == 45)
        await pilot.press("home")
        source.more.set()
        assert await wait_for(pilot, lambda: app.reader_done and app.dropped == 39)
        await pilot.pause()

    app = ProctopApp(source, theme="proctop-dark", rate_interval=None, history=40)
    assert snap_compare(app, terminal_size=size, run_before=hold_then_more)
