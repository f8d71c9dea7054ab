"""The failures board in the TUI: Tab, crash loops first, sorting, Enter back to the timeline; snapshots."""

from __future__ import annotations

import pytest
from ui_helpers import DATA, screen_text, wait_for

from proctop.kernel.protocol import PROC_EVENT_ALL
from proctop.sources.replay import ReplaySource
from proctop.ui.app import ProctopApp

FAILURES = DATA / "failures.jsonl"
THEMES = ["proctop-dark", "proctop-cb-safe"]


def make_app(theme: str | None = None) -> ProctopApp:
    source = ReplaySource(FAILURES, PROC_EVENT_ALL)
    source.start()
    return ProctopApp(source, theme=theme, rate_interval=None)


async def _on_board(pilot) -> None:
    app = pilot.app
    assert await wait_for(pilot, lambda: app.reader_done and len(app.timeline.rows) == 14)
    await pilot.press("tab")
    await pilot.pause()


async def test_tab_shows_the_board_with_the_crash_loop_first():
    app = make_app()
    async with app.run_test(size=(140, 30)) as pilot:
        await _on_board(pilot)
        assert app.views.current == "board"
        rows = app.board_view.rows
        assert [g.key for g in rows[:2]] == ["flaky-job @flaky.service", "make @session-3.scope"]
        assert app.board_view.board.is_loop(rows[0])
        text = screen_text(app)
        assert "loop 7" in text and "exit 1 \u00d77" in text
        assert "java -jar app.jar  (killed by the OOM killer)" in text  # the reason follows the command
        assert "flaky.service" in text  # the unit column, from 130 columns
        assert r"sh -c 'evil\x1b]0;TITLE\x07'" in text  # hostile names drawn literally; inline code quoted
        assert "Sort" in text.splitlines()[-1]  # the footer names the board's keys
        await pilot.press("tab")
        assert app.views.current == "timeline"


async def test_sorting_cycles_and_enter_opens_the_timeline_filtered():
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await _on_board(pilot)
        view = app.board_view
        await pilot.press("o")
        assert view.sort == "rate"
        await pilot.press("o")
        assert view.sort == "recent"
        assert view.rows[0].key == "flaky-job @flaky.service"  # a loop sorts first whatever the order
        assert view.rows[1].key == "java @app.service"  # the most recent other failure
        await pilot.press("o")
        assert view.sort == "count"
        await pilot.press("down", "enter")  # make
        await pilot.pause()
        assert app.views.current == "timeline"
        assert app.timeline.needle == 'event:failed id:"make @session-3.scope"'
        assert app.filter_input.value == app.timeline.needle  # shown in the filter box, as typed
        assert {r.ev.cmdline[0] for r in app.timeline.view} == {"make"}
        assert len(app.timeline.view) == 3


async def test_grouping_by_unit():
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await _on_board(pilot)
        await pilot.press("b")
        keys = {g.key: g.count for g in app.board_view.rows}
        assert keys["session-3.scope"] == 4 and keys["flaky.service"] == 7
        assert "by unit" in screen_text(app)


@pytest.mark.parametrize("theme", THEMES)
def test_board_snapshot_80x24(snap_compare, theme):
    assert snap_compare(make_app(theme), terminal_size=(80, 24), run_before=_on_board)


async def test_the_timeline_shows_units_when_wide_and_the_filter_matches_them():
    app = make_app()
    async with app.run_test(size=(130, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.reader_done and len(app.timeline.rows) == 14)
        assert "backup.service" in screen_text(app)
        app.view_filter = "flaky.service"
        await pilot.pause()
        assert len(app.timeline.view) == 7
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.reader_done and len(app.timeline.rows) == 14)
        assert "backup.service" not in screen_text(app)  # narrow: the column hides
