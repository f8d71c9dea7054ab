"""Helpers for tests: real processes, and waiting for what the kernel said about them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def unit_cgroup(name: str) -> Iterator[Callable[[], None]]:
    """A cgroup v2 directory named like a unit (``x.service``), what systemd would make; yields a
    ``preexec_fn`` that moves the child into it. Removed once its last process is gone."""
    for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.controllers").exists():
            path = root / name
            break
    else:
        raise AssertionError("no cgroup v2 hierarchy on this machine")
    path.mkdir()
    try:
        yield lambda: (path / "cgroup.procs").write_text(str(os.getpid()))
    finally:
        for _ in range(50):  # the kernel frees a cgroup a moment after its last exit
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)
