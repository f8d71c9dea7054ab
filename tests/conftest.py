"""Shared helpers: real processes, and waiting for what the kernel said about them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def proctop_cmd(*args: str) -> list[str]:
    """Run proctop as a user would: the interpreter this test runs under."""
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


@pytest.fixture
def nonroot_child():
    """Run ``fn`` in a forked child that dropped to uid/gid 65534; returns its result.

    A forked child, not another interpreter: /root (where the venv lives on CI)
    is not readable by nobody. The result travels back through a pipe as repr.
    """

    def call(fn: Callable[[], object]):
        import pickle

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            status = 0
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                result = ("ok", fn())
            except BaseException as exc:  # report everything to the parent
                result = ("error", f"{type(exc).__name__}: {exc}")
                status = 1
            with os.fdopen(w, "wb") as f:
                pickle.dump(result, f)
            os._exit(status)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        kind, value = pickle.loads(data)
        if kind == "error":
            raise AssertionError(f"non-root child failed: {value}")
        return value

    return call
