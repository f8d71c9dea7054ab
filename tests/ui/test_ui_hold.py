"""Hold means hold: a held or paused view keeps its rows on screen while the history cap drops others."""

from __future__ import annotations

import subprocess
import time

import pytest
from ui_helpers import screen_text, wait_for

from proctop.kernel.probe import probe
from proctop.kernel.protocol import PROC_EVENT_ALL
from proctop.model.events import Event
from proctop.model.kinds import DEFAULT_MASK
from proctop.sinks.ui.app import ProctopApp
from proctop.sources.base import Source
from proctop.sources.connector import ConnectorSource

HISTORY = 2_000


class Storm(Source):
    """200 forks every 10 ms (20,000 events/s), numbered: pid n is the n-th event."""

    kind = "native"
    label = "storm"

    def __init__(self) -> None:
        super().__init__(PROC_EVENT_ALL)
        self.sent = 0

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Event]:
        time.sleep(0.01)
        out = [
            Event(ts=1e9 + (self.sent + i) / 1e4, event="fork", pid=self.sent + i + 1, tgid=self.sent + i + 1, ppid=1)
            for i in range(200)
        ]
        self.sent += len(out)
        self.stats.by_type["fork"] = self.stats.by_type.get("fork", 0) + len(out)
        return out


def on_screen(app: ProctopApp) -> list[int]:
    return [row.ev.pid for row in app.timeline.visible_rows]


async def held_through_the_storm(pilot, app: ProctopApp, *keys: str) -> list[int]:
    """Press ``keys`` once the history is full; the pids on screen, checked to stay through 3 histories."""
    assert await wait_for(pilot, lambda: len(app.timeline.rows) == HISTORY, timeout=20)
    await pilot.press(*keys)
    await pilot.pause()
    held = on_screen(app)
    cursor = app.timeline.selected
    assert held and not app.timeline.follow
    seen = app.events_seen
    assert await wait_for(pilot, lambda: app.events_seen > seen + 3 * HISTORY, timeout=20)
    await pilot.pause()
    assert on_screen(app) == held, "the held screen moved"
    assert app.timeline.selected is cursor
    assert len(app.timeline.rows) <= HISTORY
    # the newest rows are kept too: End shows them
    assert app.timeline.rows[-1].ev.pid > seen + 3 * HISTORY - 400
    return held


@pytest.mark.parametrize("keys", [("up", "pageup"), ("home",), ("up", "up", "up")], ids=" ".join)
async def test_a_held_view_keeps_its_rows_in_a_storm(keys):
    app = ProctopApp(Storm(), history=HISTORY, rate_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await held_through_the_storm(pilot, app, *keys)
        header = screen_text(app).splitlines()[0]
        assert app.dropped > 3 * HISTORY - 400
        assert f"held; {app.dropped:,} dropped" in header  # 80 columns: the short form
        assert "rows 2,000 (full)" in header
        await pilot.press("end")
        await pilot.pause()
        assert app.timeline.follow and app.dropped == 0
        assert "dropped" not in screen_text(app).splitlines()[0]
        assert on_screen(app)[-1] == app.timeline.rows[-1].ev.pid


async def test_the_wide_header_says_what_the_cap_dropped_and_the_cap():
    app = ProctopApp(Storm(), history=HISTORY, rate_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await held_through_the_storm(pilot, app, "home")
        header = screen_text(app).splitlines()[0]
        assert f"held; {app.dropped:,} rows dropped (history 2,000) (end follows)" in header, header
        assert "rows 2,000 (full)" in header, header  # the long form did not fit
        await pilot.press("end")
        await pilot.pause()
        header = screen_text(app).splitlines()[0]
        assert "following  rows 2,000 (history full)" in header, header  # following, the cap still said


async def test_a_held_filtered_view_keeps_its_rows():
    app = ProctopApp(Storm(), history=HISTORY, rate_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        app.view_filter = "pid:/0$/"  # every tenth row
        held = await held_through_the_storm(pilot, app, "home")
        assert all(pid % 10 == 0 for pid in held)
        assert [r.ev.pid for r in app.timeline.view] == [r.ev.pid for r in app.timeline.rows if r.ev.pid % 10 == 0]


async def test_a_pause_counts_what_it_could_not_hold():
    app = ProctopApp(Storm(), history=HISTORY, rate_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: len(app.timeline.rows) == HISTORY, timeout=20)
        await pilot.press("space")
        await pilot.pause()
        held = on_screen(app)
        assert await wait_for(pilot, lambda: app.pending_dropped > HISTORY, timeout=20)
        await pilot.pause()
        assert on_screen(app) == held
        header = screen_text(app).splitlines()[0]
        assert "none lost" not in header
        assert f"PAUSED: 2,000 new held (space resumes); {app.dropped:,} dropped  following" in header, header
        await pilot.press("space")
        await pilot.pause()
        assert app.dropped == 0 and "dropped" not in screen_text(app).splitlines()[0]


@pytest.mark.kernel
async def test_a_held_view_keeps_its_rows_in_a_real_storm():
    """Real processes, a small history: the held screen stays while the kernel's events push others out."""
    source = ConnectorSource(probe(), DEFAULT_MASK)
    source.start()
    try:
        app = ProctopApp(source, history=300, rate_interval=None)
        async with app.run_test(size=(80, 24)) as pilot:
            storm = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
            try:
                assert await wait_for(pilot, lambda: len(app.timeline.rows) >= 300, timeout=20)
                await pilot.press("home")
                await pilot.pause()
                held = [id(r) for r in app.timeline.visible_rows]
                seen = app.events_seen
                assert await wait_for(pilot, lambda: app.events_seen > seen + 1_000, timeout=20)
                await pilot.pause()
                assert [id(r) for r in app.timeline.visible_rows] == held
                assert len(app.timeline.rows) <= 300
                assert app.dropped > 0 and f"{app.dropped:,} dropped" in screen_text(app).splitlines()[0]
            finally:
                storm.kill()
                storm.wait()
    finally:
        source.close()
