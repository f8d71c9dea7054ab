"""Helpers for tests: real processes, and waiting for what the kernel said about them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def proctop_cmd(*args: str) -> list[str]:
    """Run proctop as a user would: the installed package, under this test's interpreter.

    Callers pass a ``cwd`` outside the source tree so that ``-m`` cannot pick
    up ./proctop instead of what ``pip install`` put in the venv.
    """
    return [sys.executable, "-m", "proctop", *args]


def collect(source, done: Callable[[list], bool], timeout: float = 5.0) -> list:
    """Poll ``source`` until ``done(events)`` holds or ``timeout`` passes; all events seen."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.extend(source.poll(0.1))
        if done(seen):
            break
    return seen


def run(cmd: list[str], **kw) -> int:
    """Start ``cmd``, wait for it, return its pid."""
    proc = subprocess.Popen(cmd, **kw)
    proc.wait()
    return proc.pid
