"""Shared helpers for the UI tests (imported by conftest and the test modules)."""

from __future__ import annotations

import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE = DATA / "sample.jsonl"


def screen_text(app) -> str:
    """What the screen shows now, as plain text (one line per terminal row)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)


async def wait_for(pilot, predicate, timeout: float = 5.0, step: float = 0.05) -> bool:
    """Let the app run until ``predicate()`` holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(step)
    return predicate()


async def details_body(pilot, app, timeout: float = 5.0) -> str:
    """The details panel's text once the reader thread has answered its ancestry question."""
    assert await wait_for(pilot, lambda: "ancestry  \u2026" not in str(app.details_body.render()), timeout)
    return str(app.details_body.render())
