"""Pilot tests of the TUI on a replayed capture (tests/data/sample.jsonl)."""

from __future__ import annotations

import json
import threading
import time

from textual import events
from ui_helpers import SAMPLE, details_body, screen_text, wait_for

from proctop.kernel.protocol import (
    PROC_EVENT_ALL,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONZERO_EXIT,
)
from proctop.model.events import Event
from proctop.model.kinds import MASK_BITS
from proctop.sinks.ui import keys
from proctop.sinks.ui.app import BATCH_HZ, MASK_KEYS, ProctopApp
from proctop.sources.base import Source
from proctop.sources.replay import ReplaySource, load_capture

_, SAMPLE_EVENTS = load_capture(SAMPLE)


def make_app(source, **kw) -> ProctopApp:
    return ProctopApp(source, rate_interval=None, **kw)


async def loaded(pilot, app, n: int = len(SAMPLE_EVENTS)):
    assert await wait_for(pilot, lambda: app.reader_done and len(app.timeline.rows) >= n), (
        f"only {len(app.timeline.rows)} of {n} rows arrived"
    )


async def test_rows_appear(sample_source):
    app = make_app(sample_source)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        assert len(app.timeline.rows) == len(SAMPLE_EVENTS) == 28
        # everything came in few batches, not one message per event
        assert 1 <= app.batches <= 3
        text = screen_text(app)
        assert "kernel" not in text.splitlines()[0]  # the header names the replay source
        assert " replay " in text.splitlines()[0]
        assert "LOST 3" in text.splitlines()[0]
        # newest at the bottom, followed: the last event is on screen, the first is not
        assert "exit 3 after 119ms" in text
        assert "sshd: /usr/sbin/sshd" not in text
        assert "SIGSEGV (core dumped) after 1.50s" in text
        assert "22:13:22.001 exit     1400    1200    alice" in text
        assert "uid 1000\u21920" in text
        assert "3+ events lost" in text
        # the cursor marks the newest row
        assert app.timeline.selected.ev.pid == 1600 and app.timeline.selected.ev.event == "exit"


async def test_hostile_strings_are_shown_literally(sample_source):
    app = make_app(sample_source)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot, app)
        text = screen_text(app)
        # markup is not interpreted, escapes are made visible
        assert r"sh -c echo [bold red]x[/] \x1b]0;pwned\x07 \xff done" in text
        assert "comm \u2192 evil\\x1b[2J" in text
        await pilot.press("up", "up", "enter")  # the exec of the hostile command, in the details
        await pilot.pause()
        assert app.timeline.selected.ev.event == "exec"
        assert r"command   sh -c echo [bold red]x[/] \x1b]0;pwned\x07 \xff done" in screen_text(app)
        strips = app.screen._compositor.render_strips()
        for strip in strips:
            for seg in strip:
                assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in seg.text), repr(seg.text)
                assert not any(0xD800 <= ord(ch) < 0xE000 for ch in seg.text), repr(seg.text)


async def test_details_show_the_ancestry(sample_source):
    app = make_app(sample_source)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        # walk up to the SIGSEGV exit of ./crashme
        for _ in range(30):
            ev = app.timeline.selected.ev
            if ev.event == "exit" and ev.pid == 1400:
                break
            await pilot.press("up")
        assert app.timeline.follow is False
        await pilot.press("enter")
        body = await details_body(pilot, app)
        assert "command   ./crashme --now" in body
        assert "exe       /home/alice/src/crashme" in body
        assert "status    SIGSEGV (core dumped)" in body
        assert "status    SIGSEGV (core dumped), after 1.50s\n" in body  # one field a line
        assert "comm      crashme\n" in body
        assert "parent    make -j2" in body
        lines = [line.strip() for line in body.splitlines()]
        start = next(i for i, line in enumerate(lines) if line.startswith("ancestry"))
        chain = lines[start : start + 4]
        assert chain[0].endswith("\u2514 1200 make -j2")
        assert chain[1] == "\u2514 1000 -bash"
        assert chain[2] == "\u2514 800 sshd: alice [priv]" or chain[2].startswith("\u2514 800 sshd")
        assert chain[3] == "\u2514 1 ?"
        assert "ancestry" in screen_text(app)
        # the panel follows the cursor; Escape closes it
        await pilot.press("up")
        await pilot.pause()
        assert "coredump" in str(app.details_body.render()).splitlines()[0]
        await pilot.press("escape")
        await pilot.pause()
        assert not app.query_one("#details").display
        # End resumes following the newest row
        await pilot.press("end")
        assert app.timeline.follow and app.timeline.selected.ev.pid == 1600


class GatedSource(Source):
    """Replays a capture's events only once ``gate`` is set; counts like a real source."""

    kind = "replay"
    label = "gated replay"

    def __init__(self, events: list[Event], mask: int = PROC_EVENT_ALL) -> None:
        super().__init__(mask)
        self.events = list(events)
        self.gate = threading.Event()
        self.given = 0

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Event]:
        if not self.gate.wait(timeout):
            return []
        out, self.events = self.events[:5], self.events[5:]  # a few per poll
        for ev in out:
            self.stats.by_type[ev.event] = self.stats.by_type.get(ev.event, 0) + 1
        self.stats.delivered += len(out)
        self.given += len(out)
        if not out:
            time.sleep(timeout)
        return out


async def test_pause_keeps_counting_and_catches_up():
    source = GatedSource(SAMPLE_EVENTS)
    app = make_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("space")
        assert app.paused
        source.gate.set()
        # events are read and counted while paused, but the view does not move
        assert await wait_for(pilot, lambda: app.events_seen == len(SAMPLE_EVENTS))
        assert len(app.timeline.rows) == 0
        assert len(app.pending) == len(SAMPLE_EVENTS)
        assert sum(source.stats.by_type.values()) == len(SAMPLE_EVENTS)
        assert f"PAUSED: {len(SAMPLE_EVENTS)} new held, none lost" in screen_text(app)
        await pilot.press("space")
        await pilot.pause()
        assert not app.paused
        assert len(app.timeline.rows) == len(SAMPLE_EVENTS)
        assert [r.ev for r in app.timeline.rows] == SAMPLE_EVENTS
        assert "PAUSED" not in screen_text(app)
        assert "exit 3 after 119ms" in screen_text(app)


async def test_filter_narrows_rows(sample_source):
    app = make_app(sample_source)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        await pilot.press("slash")
        assert app.filter_input.has_focus
        await pilot.press(*"crashme")
        await pilot.pause()
        view = list(app.timeline.view)
        assert [(r.ev.event, r.ev.pid) for r in view] == [
            ("exec", 1400),
            ("ptrace", 1400),
            ("coredump", 1400),
            ("exit", 1400),
        ]
        text = screen_text(app)
        assert "filter: crashme" in text
        assert "sudo id" not in text
        # typing in the filter does not toggle the mask ("c" is comm, "e" is exec)
        assert app.source.mask == PROC_EVENT_ALL
        await pilot.press("enter")  # keep the filter, back to the timeline
        assert app.timeline.has_focus and len(app.timeline.view) == 4
        await pilot.press("slash", "escape")  # Escape clears and closes
        await pilot.pause()
        assert len(app.timeline.view) == len(SAMPLE_EVENTS)
        assert not app.filter_input.display


async def test_filter_matches_detail_and_user(sample_source):
    app = make_app(sample_source)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        app.view_filter = "SIGSEGV"
        assert [r.ev.pid for r in app.timeline.view] == [1400]
        app.view_filter = "root"
        assert {r.ev.pid for r in app.timeline.view} == {800, 1000, 1500}


async def test_mask_keys_change_the_source_mask(sample_source):
    sample_source.set_mask(PROC_EVENT_FORK | PROC_EVENT_NONZERO_EXIT)
    app = make_app(sample_source)
    async with app.run_test(size=(130, 30)) as pilot:  # wide: every toggle is listed, on or off
        assert "recorded events shown  f[x]fork e[ ]exec x[x]nonzero-exit X[ ]exit" in screen_text(app)
        for key, name in MASK_KEYS.items():
            before = app.source.mask
            await pilot.press(key)
            assert app.source.mask == before ^ MASK_BITS[name], key
            await pilot.press(key)
            assert app.source.mask == before, key
        await pilot.press("x", "X")
        await pilot.pause()
        assert app.source.mask == PROC_EVENT_FORK | PROC_EVENT_EXIT
        assert "f[x]fork e[ ]exec x[ ]nonzero-exit X[x]exit" in screen_text(app)
        await pilot.press("a")
        assert app.source.mask == PROC_EVENT_ALL
        await pilot.press("a")
        assert app.source.mask == 0
        await pilot.pause()
        # nothing on: the keys alone, and a warning that every recorded row is hidden
        assert "f[ ] e[ ] x[ ] X[ ] u[ ]" in screen_text(app)
        assert "every kind hidden (a: shown again)" in screen_text(app)
        await pilot.press("a")  # and back to the kinds it started with
        assert app.source.mask == PROC_EVENT_FORK | PROC_EVENT_NONZERO_EXIT


async def test_mask_hides_replayed_events_without_discarding_them():
    """A replay keeps every recorded row; the mask keys hide and show them again, and the header counts them."""
    source = ReplaySource(SAMPLE, PROC_EVENT_NONZERO_EXIT)
    source.start()
    app = make_app(source)
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.reader_done)
        await pilot.pause()
        assert len(app.timeline.rows) == len(SAMPLE_EVENTS)
        kinds = [(r.ev.event, r.ev.pid) for r in app.timeline.view]
        assert kinds == [("exit", 1301), ("exit", 1400), ("exit", 1200), ("lost", 0), ("exit", 1600)]
        hidden = len(SAMPLE_EVENTS) - 5
        assert app.timeline.hidden == hidden
        assert f"rows 5 ({hidden} hidden" in screen_text(app).splitlines()[0]
        await pilot.press("X")  # every exit, the clean ones too
        await pilot.pause()
        clean = [r.ev.pid for r in app.timeline.view if r.ev.event == "exit" and not r.ev.failed]
        assert len(clean) == 2
        await pilot.press("a")  # all on: nothing hidden
        await pilot.pause()
        assert len(app.timeline.view) == len(SAMPLE_EVENTS) and app.timeline.hidden == 0
        assert "hidden" not in screen_text(app).splitlines()[0]


def test_replay_without_only_shows_every_recorded_event(tmp_path):
    """A capture of `--only all` replayed as it is: clean exits included (they were dropped silently)."""
    import subprocess

    from helpers import proctop_cmd

    lines = [
        json.dumps({"ts": 1.0 + i, "event": "exit", "pid": 100 + i, "tgid": 100 + i, "exit_code": i % 2})
        for i in range(10)
    ]
    path = tmp_path / "all.jsonl"
    path.write_text("\n".join(lines) + "\n")

    def replay(*extra: str) -> list[dict]:
        cmd = proctop_cmd("--json", "--replay", str(path), *extra)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path, timeout=30).stdout
        return [json.loads(line) for line in out.splitlines()[1:]]

    assert [e["exit_code"] for e in replay()] == [i % 2 for i in range(10)]
    assert [e["pid"] for e in replay("--only", "nonzero-exit")] == [101, 103, 105, 107, 109]


async def test_history_is_bounded():
    source = GatedSource(SAMPLE_EVENTS)
    source.gate.set()
    app = make_app(source, history=10)
    async with app.run_test(size=(100, 30)) as pilot:
        # the reader keeps at most a history of events for a UI that lags (counted as overflow)
        assert await wait_for(pilot, lambda: app.events_seen + app.overflow == len(SAMPLE_EVENTS))
        await pilot.pause()
        assert [r.ev for r in app.timeline.rows] == SAMPLE_EVENTS[-10:]
        assert len(app.timeline.view) == 10
        assert "exit 3 after 119ms" in screen_text(app)


async def test_no_color(sample_source, no_color):
    """Without colour the type, mask and state are still readable as text."""
    app = make_app(sample_source)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        text = screen_text(app)
        assert "replay shows  on: fork exec" in text and "LOST 3" in text and "\u25b622:13:24.120 exit" in text


class StormSource(Source):
    """Thousands of events per poll, as fast as the reader asks."""

    kind = "native"
    label = "storm"

    def __init__(self) -> None:
        super().__init__(PROC_EVENT_ALL)
        self.polls = 0
        self.mask_changed_at: float | None = None

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Event]:
        """1000 forks every 20 ms: 50,000 events a second."""
        self.polls += 1
        base = self.polls * 1000
        time.sleep(0.02)
        out = [
            Event(ts=1e9 + i / 1e4, event="fork", pid=base + i, tgid=base + i, ppid=1, comm="storm")
            for i in range(1000)
        ]
        self.stats.by_type["fork"] = self.stats.by_type.get("fork", 0) + len(out)
        return out

    def set_mask(self, mask: int) -> None:
        super().set_mask(mask)
        self.mask_changed_at = time.monotonic()


async def test_keys_stay_responsive_in_a_storm():
    source = StormSource()
    app = make_app(source, history=20_000)
    async with app.run_test(size=(100, 30)) as pilot:
        began = time.monotonic()
        assert await wait_for(pilot, lambda: app.events_seen >= 30_000, timeout=30)
        elapsed = time.monotonic() - began
        # batches are bounded in rate (BATCH_HZ, 15/s): far fewer messages than events
        assert app.batches <= elapsed * BATCH_HZ + 2
        assert app.batches * 500 < app.events_seen
        assert len(app.timeline.rows) == 20_000
        started = time.monotonic()
        await pilot.press("f")
        assert source.mask_changed_at is not None
        assert source.mask_changed_at - started < 1.0
        assert not source.mask & PROC_EVENT_FORK
        await pilot.press("space")
        assert app.paused
        seen = app.events_seen
        assert await wait_for(pilot, lambda: app.events_seen > seen + 5_000, timeout=10)
        await pilot.press("space")
        assert not app.paused


async def test_q_and_ctrl_c_quit(sample_source):
    for key in ("q", "ctrl+c"):
        app = make_app(sample_source)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(key)
            await pilot.pause()
            assert not app.is_running, key
        assert app.return_code == 0


async def test_keys_typed_right_after_slash_go_to_the_filter(sample_source):
    """A fast typist (or a paste) sends '/exec' in one read: no letter may toggle the mask."""
    app = make_app(sample_source)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        for key, char in [("slash", "/"), ("e", "e"), ("x", "x"), ("e", "e"), ("c", "c")]:
            app.post_message(events.Key(key, char))  # all queued before any is handled
        assert await wait_for(pilot, lambda: app.filter_input.value == "exec")
        assert app.source.mask == PROC_EVENT_ALL
        await pilot.press("slash", "u")  # inside the input '/' is text
        assert app.filter_input.value == "exec/u"
        await pilot.press("enter", "f")  # back on the timeline letters are commands again
        assert app.source.mask == PROC_EVENT_ALL ^ PROC_EVENT_FORK


async def test_every_key_after_slash_reaches_the_filter_in_order():
    """Typed with no delay, in a storm (a busy loop), ten times over: every key, in order, none a command."""
    source = StormSource()
    app = make_app(source, history=20_000)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.events_seen >= 5_000, timeout=30)
        for _ in range(10):
            for char in "/cmd:gcc":
                app.post_message(events.Key(keys.normalize_key(char), char))  # all queued before any is handled
            assert await wait_for(pilot, lambda: len(app.filter_input.value) >= 7)
            await pilot.pause()
            assert app.filter_input.value == "cmd:gcc"
            assert app.source.mask == PROC_EVENT_ALL  # the c of cmd toggled no comm events
            await pilot.press("escape")
            assert not app.filter_open and app.filter_input.value == ""


async def test_a_paste_after_slash_or_with_it_reaches_the_filter(sample_source):
    """A terminal's bracketed paste is one Paste event, not keys: it goes where the keys would."""
    app = make_app(sample_source)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        app.post_message(events.Paste("/cmd:gcc"))  # the slash pasted too: the filter opens with the rest
        assert await wait_for(pilot, lambda: app.filter_input.value == "cmd:gcc")
        assert app.filter_open
        await pilot.press("escape")
        app.post_message(events.Key("slash", "/"))
        app.post_message(events.Paste("exit 3"))  # queued right behind the slash
        app.post_message(events.Key("x", "x"))
        assert await wait_for(pilot, lambda: app.filter_input.value == "exit 3x")
        assert app.source.mask == PROC_EVENT_ALL
        await pilot.press("escape")
        app.post_message(events.Paste("cmd:gcc"))  # no slash: a paste on the timeline does nothing
        await pilot.pause()
        assert not app.filter_open and app.filter_input.value == "" and app.source.mask == PROC_EVENT_ALL


async def test_moving_up_freezes_the_view_until_end():
    source = GatedSource(SAMPLE_EVENTS[:20])
    source.gate.set()
    app = make_app(source)
    async with app.run_test(size=(100, 16)) as pilot:
        assert await wait_for(pilot, lambda: len(app.timeline.rows) == 20)
        await pilot.press("up", "up")
        frozen = [r.ev for r in app.timeline.visible_rows]
        selected = app.timeline.selected.ev
        assert not app.timeline.follow and selected is SAMPLE_EVENTS[17]
        source.events = list(SAMPLE_EVENTS[20:])  # more events arrive while frozen
        assert await wait_for(pilot, lambda: len(app.timeline.rows) == len(SAMPLE_EVENTS))
        await pilot.pause()
        assert [r.ev for r in app.timeline.visible_rows] == frozen
        assert app.timeline.selected.ev is selected
        assert "exit 3 after 119ms" not in screen_text(app)
        await pilot.press("end")
        await pilot.pause()
        assert app.timeline.follow and app.timeline.selected.ev is SAMPLE_EVENTS[-1]
        assert "exit 3 after 119ms" in screen_text(app)
        # a click selects a row and freezes the view as well
        await pilot.click("#timeline", offset=(5, 3))
        assert not app.timeline.follow
        assert app.timeline.selected is app.timeline.visible_rows[2]


async def test_a_bad_capture_line_ends_the_ui_with_one_line_and_status_2(tmp_path):
    """The rows before it are read; then the run ends as the CLI does for bad input (run_app prints it)."""
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"ts": 1.0, "event": "exit", "pid": 7, "tgid": 7, "exit_code": 3})
    path.write_text(good + "\n" + '{"ts": NaN, "event": "exit"}\n')
    source = ReplaySource(path, PROC_EVENT_ALL)
    source.start()
    app = make_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.fatal is not None)
    assert app.return_code == 2
    assert app.fatal.startswith(f"{path}:2: not valid JSON")


async def test_j_and_k_move_the_cursor_as_down_and_up_do(sample_source):
    app = make_app(sample_source)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        newest = app.timeline.cursor
        await pilot.press("k", "k")
        assert app.timeline.cursor == newest - 2 and not app.timeline.follow  # k holds the view, as Up does
        await pilot.press("j")
        assert app.timeline.cursor == newest - 1
        await pilot.press("tab", "j")  # the board's cursor too (the same binding ids)
        assert app.views.current == "board" and len(app.board_view.rows) > 1
        assert app.board_view.cursor == 1
        await pilot.press("k")
        assert app.board_view.cursor == 0
        assert app.source.mask == PROC_EVENT_ALL  # no letter toggled anything
