"""Shared helpers for the UI tests (imported by conftest and the test modules)."""

from __future__ import annotations

import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE = DATA / "sample.jsonl"
SETPRIV_NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups"


def as_nobody_where_allowed() -> str:
    """The command prefix for the terminal tests: uid 65534 where the kernel lets it subscribe, else root.

    What those tests prove is the terminal's handling (drops, signals, --duration), which
    does not depend on the user; on a kernel that refuses uid 65534 (Linux 6.18.44 here)
    they run as root rather than not at all. The tests about non-root itself are marked
    ``nonroot`` and skipped there (tests/conftest.py).
    """
    from helpers import nonroot_subscribe_answer

    return SETPRIV_NOBODY if nonroot_subscribe_answer().allowed else ""


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
