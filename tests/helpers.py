"""Helpers for tests: real processes, and waiting for what the kernel said about them."""

from __future__ import annotations

import errno
import os
import platform
import pty
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from proctop.kernel.protocol import CN_IDX_PROC, NETLINK_CONNECTOR

REPO = Path(__file__).resolve().parent.parent


def need_tool(name: str) -> str:
    """The path of ``name``; without it, skip (a plain ``pytest`` on a laptop) or fail (``.ci/run``, which
    installs every tool and sets PROCTOP_REQUIRE_TOOLS=1: a test CI is meant to run is never skipped there)."""
    import pytest

    path = shutil.which(name)
    if path:
        return path
    message = f"missing tool: {name} (.ci/run installs it)"
    if os.environ.get("PROCTOP_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


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


def run_in_pty(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: str = "/", timeout: float = 60
) -> tuple[int, str, str]:
    """``cmd`` with a terminal for stdin and stdout (as the UI needs) and stderr on a pipe: status, screen, stderr."""
    main_fd, tty_fd = pty.openpty()
    proc = subprocess.Popen(
        cmd,
        stdin=tty_fd,
        stdout=tty_fd,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**(env or os.environ), "TERM": "xterm-256color"},
    )
    os.close(tty_fd)
    screen = b""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if select.select([main_fd], [], [], 0.1)[0]:
            try:
                screen += os.read(main_fd, 65536)
            except OSError:
                break
    try:
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main_fd)
    assert proc.stderr is not None
    return status, screen.decode("utf-8", "replace"), proc.stderr.read().decode()


@dataclass(frozen=True)
class NonrootSubscribe:
    """Whether this kernel lets uid 65534 join the proc connector's group, as the kernel itself answered."""

    allowed: bool
    errno: int | None
    reason: str  # why the tests that need it are skipped, when not allowed


@cache
def nonroot_subscribe_answer() -> NonrootSubscribe:
    """Ask the kernel once per run: a forked child drops to uid 65534 and binds to CN_IDX_PROC.

    Linux 6.6+ upstream allows it (the connector's non-root receive flag); a kernel
    built or configured otherwise answers EPERM (Linux 6.18.44 on the build machines).
    """
    if os.geteuid() != 0:
        return NonrootSubscribe(False, None, "needs root to drop to uid 65534 (CI runs as root)")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR) as sock:
                sock.bind((0, CN_IDX_PROC))
        except OSError as exc:
            code = exc.errno or errno.EIO
        os.write(w, str(code).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = int(f.read() or b"-1")
    os.waitpid(pid, 0)
    if answer == 0:
        return NonrootSubscribe(True, None, "")
    return NonrootSubscribe(
        False,
        answer,
        f"kernel {platform.release()} refuses a non-root proc connector subscriber (uid 65534's bind: "
        f"{errno.errorcode.get(answer, answer)}); the QEMU guests prove this path (make -C kmod check)",
    )


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
        remove_cgroup(path)


def remove_cgroup(path: Path) -> None:
    """rmdir a test cgroup once its last process is gone (the kernel frees it a moment after the exit)."""
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)
