"""States that speak (issue 14): what the header and an empty timeline say, follow mode, pause, the footer.

A quiet live source stands in for the kernel here (it never delivers), so
what is asserted is exactly what a first-time user sees before anything
happens; the kernel-driven behaviour is in test_ui_kernel.py and test_ui_e2e.py.
"""

from __future__ import annotations

import time

from ui_helpers import SAMPLE, screen_text, wait_for

from proctop.kernel.protocol import PROC_EVENT_ALL, PROC_EVENT_EXEC, PROC_EVENT_FORK, PROC_EVENT_NONZERO_EXIT
from proctop.model.events import Event
from proctop.sinks.ui.app import ProctopApp
from proctop.sources.base import Source
from proctop.sources.replay import ReplaySource


class QuietSource(Source):
    """A live source (not a recording) to which nothing happens."""

    kind = "native"
    label = "quiet kernel"

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Event]:
        time.sleep(timeout)
        return []


def footer(app: ProctopApp) -> str:
    return screen_text(app).splitlines()[-1]


async def test_an_empty_live_view_says_what_it_watches_and_since_when():
    app = ProctopApp(QuietSource(PROC_EVENT_NONZERO_EXIT), rate_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        since = time.strftime("%H:%M", time.localtime(app.since))
        text = screen_text(app)
        assert f"watching nonzero-exit since {since}" in text and "none yet" in text
        assert f"live since {since}" in text.splitlines()[0]
        # the price of watching failures only, said once: a failure that lives a millisecond may have no name
        assert "f[ ]fork e[ ]exec x[x]nonzero-exit  +7 off  exec off: names lost" in text.splitlines()[1]
        await pilot.press("a")  # all on
        await pilot.press("a")  # all off: nothing can arrive, and both the header and the view say so
        await pilot.pause()
        text = screen_text(app)
        assert "nothing can arrive" in text.splitlines()[1]
        assert "every kind is off in the kernel filter: nothing can arrive (press a)" in text


async def test_the_header_warns_when_exec_is_off_and_names_go():
    app = ProctopApp(QuietSource(PROC_EVENT_FORK | PROC_EVENT_NONZERO_EXIT), rate_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        lines = screen_text(app).splitlines()
        assert lines[1] == "kernel filter  f[x]fork e[ ]exec x[x]nonzero-exit  +7 off  exec off: names lost"
        await pilot.press("e")  # exec on again: the warning goes
        await pilot.pause()
        assert "exec off" not in screen_text(app)


class NamingSource(QuietSource):
    """A quiet source that says how it names (``ConnectorSource.describe``'s ``names``)."""

    def __init__(self, mask: int, names: bool) -> None:
        super().__init__(mask)
        self.names = names

    def describe(self):
        return {**super().describe(), "names": self.names}


async def test_the_header_says_whether_names_are_read_when_exec_is_off():
    for names, long, brief in ((True, "names on (exec read, not shown)", "names on"),
                               (False, "names off: names may be lost (e)", "names off: names lost")):  # fmt: skip
        for width, said in ((120, long), (80, brief)):  # at 80 the off kinds are listed too: the short form
            app = ProctopApp(NamingSource(PROC_EVENT_NONZERO_EXIT, names), rate_interval=None)
            async with app.run_test(size=(width, 24)) as pilot:
                await pilot.pause()
                line = screen_text(app).splitlines()[1]
                assert line.rstrip().endswith(said) and "f[ ]fork" in line, line
                assert names is False or "lost" not in line


async def test_the_header_keeps_to_two_lines_at_80_columns_in_every_mask():
    app = ProctopApp(QuietSource(PROC_EVENT_ALL), rate_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        # all on; all but nonzero-exit; all on; all off; fork only (exec off: a warning); fork and nonzero-exit
        for mask_keys in ([], ["x"], ["a"], ["a"], ["f"], ["x"]):
            await pilot.press(*mask_keys)
            await pilot.pause()
            assert app.header_bar.size.height == 2, mask_keys
            lines = screen_text(app).splitlines()
            assert lines[1].startswith("kernel filter "), lines[:3]
            assert lines[2].lstrip().startswith("TIME"), lines[:3]  # the timeline's column header follows


async def test_follow_mode_and_pause_are_named_in_the_header_and_the_footer():
    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    app = ProctopApp(source, rate_interval=None)
    async with app.run_test(size=(130, 30)) as pilot:  # wide enough for the long form of every state
        assert await wait_for(pilot, lambda: app.reader_done and app.timeline.rows)
        await pilot.pause()
        assert "following" in screen_text(app).splitlines()[0]
        assert "Follow" not in footer(app) and "Pause" in footer(app)
        await pilot.press("up")
        await pilot.pause()
        assert "held (end follows)" in screen_text(app).splitlines()[0]
        assert "Follow" in footer(app)
        await pilot.press("space")
        await pilot.pause()
        assert "PAUSED: 0 new held, none lost (space resumes)" in screen_text(app)
        assert "Resume" in footer(app) and "Pause" not in footer(app)
        await pilot.press("end", "space")
        await pilot.pause()
        assert "following" in screen_text(app).splitlines()[0] and "PAUSED" not in screen_text(app)
        assert "Follow" not in footer(app) and "Pause" in footer(app)


async def test_a_replay_header_names_the_file_and_its_time_span():
    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    app = ProctopApp(source, rate_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.reader_done)
        await pilot.pause()
        first = time.strftime("%H:%M:%S", time.localtime(app.span[0]))
        last = time.strftime("%H:%M:%S", time.localtime(app.span[1]))
        assert f"replay sample.jsonl {first}\u2013{last} end of capture" in screen_text(app).splitlines()[0]


async def test_the_kernel_filter_line_lists_each_kind_on_or_off_and_a_cycles_back():
    """A kind switched off says f[ ], it does not vanish; a cycles all, none, the start's; 'live since' stays."""
    app = ProctopApp(QuietSource(PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_NONZERO_EXIT), rate_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        started = screen_text(app).splitlines()[0]
        assert "live since" in started
        line = "kernel filter  {}fork e[x]exec x[x]nonzero-exit  7 more off (? keys)"
        assert screen_text(app).splitlines()[1] == line.format("f[x]")
        await pilot.press("f")
        await pilot.pause()
        assert screen_text(app).splitlines()[1] == line.format("f[ ]")
        await pilot.press("u")  # on: listed from now on; off again: still listed, as off
        await pilot.press("u")
        await pilot.pause()
        assert screen_text(app).splitlines()[1] == (
            "kernel filter  f[ ]fork e[x]exec x[x]nonzero-exit u[ ]uid  6 more off (? keys)"
        )
        start = PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_NONZERO_EXIT  # what it started with, not now
        for expected in (PROC_EVENT_ALL, 0, start, PROC_EVENT_ALL, 0, start):
            await pilot.press("a")
            assert app.source.mask == expected
        await pilot.pause()
        assert screen_text(app).splitlines()[0] == started  # the start time, not the last toggle's


async def test_a_replay_names_what_its_keys_filter():
    """In a replay the keys hide and show recorded rows: the line says so, not 'kernel filter'."""
    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    try:
        app = ProctopApp(source, rate_interval=None)
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: app.reader_done)
            await pilot.press("x")
            await pilot.pause()
            line = screen_text(app).splitlines()[1]
            # at 120 columns the shorter prefix, so that every name fits
            assert line.startswith("replay shows  f[x]fork e[x]exec x[ ]nonzero-exit X[x]exit"), line
            assert "kernel" not in screen_text(app)
            await pilot.press("a", "a")  # all, then none: every recorded row hidden
            await pilot.pause()
            assert "every kind hidden (a: shown again)" in screen_text(app).splitlines()[1]
    finally:
        source.close()


async def test_paused_and_held_at_80_columns_say_held_once():
    """Narrow, paused with the view held: the count of new rows, then "held" once (it read "PAUSED 0 held  held")."""
    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    app = ProctopApp(source, rate_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.reader_done and app.timeline.rows)
        await pilot.press("up", "space")
        await pilot.pause()
        first = screen_text(app).splitlines()[0]
        assert "PAUSED 0 new" in first and first.count("held") == 1, first
