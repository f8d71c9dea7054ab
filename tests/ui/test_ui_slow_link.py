"""Over a slow link the UI lowers its frame rate instead of queueing frames (issue 22 item 7).

The figures (bytes/s, frames/s, the age of what the screen shows) are bench/slow_link.py's,
in docs/performance.md; here: the pacing itself, on a real pty read slowly, and the app's
reader waiting for the terminal.
"""

from __future__ import annotations

import os
import threading
import time

from test_ui_app import SAMPLE_EVENTS, GatedSource, make_app
from ui_helpers import wait_for

from proctop.sinks.ui.terminal import BLOCKED, MAX_GAP, _TerminalFile

FRAME = "x" * 10_000  # about one 100x30 frame of a storm


def frames_through(terminal: _TerminalFile, seconds: float) -> int:
    """Write frames as Textual's writer does, each when ``ready`` says so; how many went out."""
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if terminal.ready():
            terminal.write(FRAME)
            terminal.flush()
            sent += 1
        else:
            time.sleep(0.005)
    return sent


def test_a_terminal_that_drains_slowly_gets_fewer_frames_and_a_fast_one_all_again():
    master, slave = os.openpty()
    out = os.fdopen(slave, "w", encoding="utf-8")
    rate = [20_000]  # bytes/s the reader takes
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                os.read(master, max(1, rate[0] // 100))
            except OSError:
                return
            time.sleep(0.01)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        terminal = _TerminalFile(out, lambda: None)
        slow = frames_through(terminal, 3.0)
        # 20 KB/s carries 2 frames/s at most; paced, fewer are attempted, and the gap says why
        assert slow <= 3 * 2 + 2, slow
        assert terminal.gap > BLOCKED
        assert terminal.gap <= MAX_GAP
        rate[0] = 50_000_000  # the link is fast again: the gap shrinks to nothing, frames flow
        fast = 0
        deadline = time.monotonic() + 15  # generous: a loaded machine stalls the writer now and then
        while terminal.gap and time.monotonic() < deadline:
            fast += frames_through(terminal, 0.5)
        assert terminal.gap == 0.0 and fast > slow
    finally:
        stop.set()
        out.close()
        os.close(master)
        thread.join(2)


async def test_the_reader_hands_the_ui_rows_only_when_the_terminal_is_ready():
    source = GatedSource(SAMPLE_EVENTS)
    app = make_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        ready = [False]
        app._driver.output_ready = lambda: ready[0]  # type: ignore[union-attr]  # as ProctopDriver's
        source.gate.set()
        await pilot.pause(1.0)
        assert source.given == len(SAMPLE_EVENTS)  # read, counted...
        assert app.batches == 0 and len(app.timeline.rows) == 0  # ...but held for the terminal
        ready[0] = True
        assert await wait_for(pilot, lambda: len(app.timeline.rows) == len(SAMPLE_EVENTS))
        assert app.overflow == 0  # nothing lost while waiting
