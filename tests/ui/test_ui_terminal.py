"""The terminal contract (README "Using it"): a terminal that goes away ends
proctop within 2 s leaving nothing running; any fatal signal gives the
terminal back; the UI refuses a stdin or stdout that is not a terminal;
``--duration``/``--count`` end the UI.

Drops are real: ``tmux kill-session`` closes the pty's master as an SSH drop
or a closed window does. Before proctop/sinks/ui/terminal.py, Textual's input thread
spun on the hung-up tty's end of file and its writer thread died on EIO and
then blocked the event loop: proctop stayed, orphaned (the ``no-sighup`` and
``render`` states below show it every time and often, respectively).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import proctop_cmd
from test_ui_e2e import Tmux, zombie_wait_status
from ui_helpers import as_nobody_where_allowed

from proctop.sinks.ui.app import ProctopApp
from proctop.sinks.ui.terminal import EXIT_DEADLINE

HEADER = "kernel filter "  # the header's second line, at every width and mask
REPLAY_HEADER = "recorded events shown "  # ... and in a replay
#: Drop states: what the TUI is doing when its terminal goes away.
STATES = ("idle", "storm", "details", "render", "no-sighup")


# --- helpers -------------------------------------------------------------------------


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, session id) of a live process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[3])


def alive(pid: int) -> bool:
    state = proc_state(pid)
    return state is not None and state[0] not in ("Z", "X")


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: what a drop must not leave behind."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            state = proc_state(int(entry))
            if state is not None and state[1] == sid and state[0] not in ("Z", "X"):
                out.append(int(entry))
    return out


def proctop_pid(term: Tmux) -> int:
    """proctop's pid: the pane's process, or its child when a shell wraps it."""
    pane = int(term.info("#{pane_pid}"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in [pane, *children(pane)]:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(arg.endswith(b"/proctop") for arg in argv[:2]):
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no proctop under pane process {pane}")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Storm:
    """Real processes, as fast as one shell can fork them, until stopped."""

    def __enter__(self) -> Storm:
        self.proc = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"], start_new_session=True)
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def drop(proctop_bin: Path, state: str, *, nobody: bool, socket: str) -> float:
    """Start proctop in tmux in ``state``, close the terminal; seconds until proctop was gone.

    Fails if proctop outlives EXIT_DEADLINE, or anything of its session is left running.
    """
    cmd = f"{as_nobody_where_allowed()} {proctop_bin} --only all" if nobody else f"{proctop_bin} --only all"
    if state == "no-sighup":
        # The session leader ignores SIGHUP and so does not die: the kernel sends SIGHUP to the
        # session leader only, so proctop sees nothing but end of file on stdin and EIO on stdout.
        cmd = f"bash -c \"trap '' HUP; {cmd}; true\""
    term = Tmux(cmd, 100, 30, socket=socket)
    try:
        term.wait_for(lambda t: HEADER in t, timeout=60)
        pid = proctop_pid(term)
        sid = proc_state(pid)[1]  # type: ignore[index]
        if state == "details":
            term.send("Enter")
            term.wait_for(lambda t: "no event selected" in t or re.search(r"^\W*command  ", t, re.M))
        elif state == "render":
            term.send("Enter", *(["Up", "PageUp", "Down", "End"] * 10))  # no waiting: frames are being written
        t0 = time.monotonic()
        term.tmux("kill-session", "-t", term.target)
        while alive(pid):
            elapsed = time.monotonic() - t0
            if elapsed > EXIT_DEADLINE:
                raise AssertionError(f"{state}: proctop {pid} still running {elapsed:.1f} s after the drop")
            time.sleep(0.01)
        took = time.monotonic() - t0
        time.sleep(max(0.0, t0 + EXIT_DEADLINE - time.monotonic()))
        left = session_members(sid)
        assert not left, f"{state}: left running after the drop: {left}"
        return took
    finally:
        term.kill()


# --- stdin/stdout that are not a terminal ----------------------------------------------


def test_stdin_from_dev_null_is_refused():
    # Before: Textual's input loop span on the end of file, using a whole core, for ever.
    master, slave = os.openpty()
    try:
        done = subprocess.run(
            proctop_cmd(), stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, timeout=30, cwd="/"
        )
    finally:
        os.close(master)
        os.close(slave)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1 and "stdin is not one" in lines[0] and "--json" in lines[0], lines


def test_stdout_to_a_pipe_is_refused():
    master, slave = os.openpty()
    try:
        done = subprocess.run(proctop_cmd(), stdin=slave, capture_output=True, timeout=30, cwd="/")
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 2
    assert done.stdout == b""  # nothing drawn
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "stdout is not one" in lines[0] and "--json" in lines[0], lines


# --- the watchdog: the last line of defence -----------------------------------------------

#: A run whose shutdown is stuck for ever: the guard is tripped, the main thread never returns.
STUCK = """
import os, signal, sys, threading
from proctop.sinks.ui.terminal import TerminalGuard
guard = TerminalGuard()
guard.install()
if sys.argv[1] == "gone":
    guard.terminal_gone()
else:
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
print("tripped", flush=True)
threading.Event().wait()
"""


@pytest.mark.parametrize(
    ("how", "returncode"),
    [("gone", 0), ("SIGHUP", 0), ("SIGTERM", 0), ("SIGUSR1", -signal.SIGUSR1), ("SIGALRM", -signal.SIGALRM)],
)
def test_watchdog_ends_a_stuck_shutdown(how, returncode):
    done = subprocess.run(
        [sys.executable, "-c", STUCK, how], stdin=subprocess.DEVNULL, capture_output=True, timeout=30, cwd="/"
    )
    assert done.returncode == returncode, done.stderr
    if how != "gone":  # (a gone terminal sends stdout to /dev/null)
        assert done.stdout == b"tripped\n"


# --- --duration and --count end the UI --------------------------------------------------


async def test_count_quits_after_that_many_events(sample_source):
    app = ProctopApp(sample_source, count=3, rate_interval=None)
    await asyncio.wait_for(app.run_async(headless=True, size=(100, 30)), 30)
    assert app.return_code == 0
    assert app.events_seen == 3


async def test_count_zero_quits_at_once(sample_source):
    app = ProctopApp(sample_source, count=0, rate_interval=None)
    await asyncio.wait_for(app.run_async(headless=True, size=(100, 30)), 30)
    assert app.return_code == 0
    assert app.events_seen == 0


async def test_duration_quits_the_ui(sample_source):
    app = ProctopApp(sample_source, duration=0.5, rate_interval=None)
    await asyncio.wait_for(app.run_async(headless=True, size=(100, 30)), 30)
    assert app.return_code == 0
    assert app.events_seen > 0  # it ran, and read the replay, before it quit


async def test_without_duration_the_ui_stays(sample_source):
    # the control for the test above: a finished replay alone does not end the UI
    app = ProctopApp(sample_source, rate_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(1.5)
        assert app.reader_done and app.is_running


# --- real terminals (tmux) ----------------------------------------------------------------


@pytest.mark.kernel
def _dead_status(term: Tmux, pid: int) -> str | None:
    """``"0/"`` (exit status 0), ``"/15"`` (killed by SIGTERM) once the pane's process ended, else None.

    tmux marks a pane dead when its pty closes, which can come before it reaped the
    process, and tmux 3.3 sometimes leaves it a zombie: then the status is read from /proc.
    """
    dead, _, status = term.info("#{pane_dead}:#{pane_dead_status}/#{pane_dead_signal}").partition(":")
    if dead != "1":
        return None
    if status != "/":
        return status
    wait_status = zombie_wait_status(pid)
    if wait_status is None:
        return None
    return f"{os.waitstatus_to_exitcode(wait_status)}/" if os.WIFEXITED(wait_status) else f"/{wait_status & 0x7F}"


def test_duration_in_the_terminal(proctop_bin):
    term = Tmux(f"{as_nobody_where_allowed()} {proctop_bin} --duration 3", 100, 30, socket=f"proctop-dur-{os.getpid()}")
    try:
        term.wait_for(lambda t: HEADER in t, timeout=60)
        pid = int(term.info("#{pane_pid}"))
        term.wait_for(lambda t: _dead_status(term, pid) is not None, timeout=30)
        assert _dead_status(term, pid) == "0/"
        assert term.info("#{alternate_on}") == "0"
        assert term.info("#{mouse_any_flag}") == "0"
    finally:
        term.kill()


#: signal -> expected "status=" of a shell that ran proctop: 0 for the README's three, else death by it.
SIGNALS = {
    sig: 0 if sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM) else 128 + sig
    for sig in (
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGALRM,
        signal.SIGPIPE,
        signal.SIGQUIT,
        signal.SIGVTALRM,
        signal.SIGPROF,
        signal.SIGXCPU,
        signal.SIGXFSZ,
        signal.SIGRTMIN,
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
    )
}


def signal_and_check(proctop_bin: Path, sig: int, workdir: Path) -> str | None:
    """Send ``sig`` to proctop run by a shell in tmux; what went wrong, or None."""
    before, after = workdir / f"{sig}.before", workdir / f"{sig}.after"
    shell = (
        f"stty -g > {before}; {proctop_bin} --only all; echo status=$?; stty -g > {after}; printf 'cursor:'; sleep 120"
    )
    term = Tmux(f"bash -c {shlex.quote(shell)}", 100, 30, socket=f"proctop-sig{sig}-{os.getpid()}")
    try:
        term.wait_for(lambda t: HEADER in t, timeout=60)
        pid = proctop_pid(term)
        os.kill(pid, sig)
        screen = term.wait_for(lambda t: "cursor:" in t, timeout=EXIT_DEADLINE + 8)
        problems = []
        status = re.search(r"status=(\d+)", screen)
        if status is None or int(status.group(1)) != SIGNALS[sig]:
            problems.append(f"status {status and status.group(1)}, want {SIGNALS[sig]}")
        for fmt, want in (("alternate_on", "0"), ("mouse_any_flag", "0"), ("cursor_flag", "1")):
            if (got := term.info(f"#{{{fmt}}}")) != want:
                problems.append(f"{fmt}={got}")
        if before.read_text() != after.read_text():
            problems.append(f"termios {before.read_text().strip()} became {after.read_text().strip()}")
        return f"{signal.Signals(sig).name}: {', '.join(problems)}" if problems else None
    except AssertionError as exc:
        return f"{signal.Signals(sig).name}: {exc}"
    finally:
        term.kill()


@pytest.mark.kernel
def test_fatal_signals_restore_the_terminal(proctop_bin):
    """Alternate screen left, cursor shown, mouse off, termios as before; the right status."""
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: signal_and_check(proctop_bin, s, Path(tmp)), SIGNALS))
    problems = [r for r in results if r]
    assert not problems, "\n".join(problems)


@pytest.mark.kernel
@pytest.mark.parametrize("state", STATES)
def test_terminal_drop_ends_proctop(proctop_bin, state):
    with Storm() if state in ("storm", "render") else _nothing():
        drop(proctop_bin, state, nobody=True, socket=f"proctop-drop-{os.getpid()}")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


DROPS = 50


@pytest.mark.kernel
def test_fifty_drops_leave_nothing_behind(proctop_bin):
    """50 terminal drops across the states, 5 at a time, 1 in 5 as uid 65534, with a storm running."""
    plan = [(STATES[i % len(STATES)], i % 5 == 0) for i in range(DROPS)]
    times: list[tuple[str, float]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        state, nobody = plan[i]
        try:
            took = drop(proctop_bin, state, nobody=nobody, socket=f"proctop-50-{os.getpid()}-{i}")
        except AssertionError as exc:
            with lock:
                failures.append(f"drop {i}: {exc}")
            return
        with lock:
            times.append((state, took))

    with Storm(), ThreadPoolExecutor(5) as pool:
        list(pool.map(one, range(DROPS)))
    for state in ("all", *STATES):  # the distribution, for the record (pytest -s shows it)
        spread = sorted(t for s, t in times if state in ("all", s))
        if spread:
            print(
                f"\n{state:>9}: {len(spread)} drops, gone after min {spread[0]:.3f} s, "
                f"median {spread[len(spread) // 2]:.3f} s, p90 {spread[int(0.9 * (len(spread) - 1))]:.3f} s, "
                f"max {spread[-1]:.3f} s",
                end="",
                file=sys.stderr,
            )
    assert not failures, "\n".join(failures)
    assert len(times) == DROPS


# --- stopped and continued (issue 23 item 7) -------------------------------------------------


def stop_continue_quit(proctop_bin: Path, workdir: Path, name: str) -> str | None:
    """SIGSTOP and SIGCONT proctop (as ``kill -STOP``/``-CONT`` from elsewhere would), then ``q``:
    what went wrong, or None. The terminal's modes after must be those before."""
    before, after = workdir / f"{name}.before", workdir / f"{name}.after"
    sample = Path(__file__).resolve().parents[1] / "data" / "sample.jsonl"
    shell = (
        f"stty -g > {before}; {proctop_bin} --replay {sample}; echo status=$?; stty -g > {after}; "
        "printf 'cursor:'; sleep 120"
    )
    term = Tmux(f"bash -c {shlex.quote(shell)}", 100, 30, socket=f"proctop-stop-{name}-{os.getpid()}")
    try:
        term.wait_for(lambda t: REPLAY_HEADER in t, timeout=60)
        pid = proctop_pid(term)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(pid, signal.SIGCONT)
        time.sleep(1.0)
        term.send("q")
        screen = term.wait_for(lambda t: "cursor:" in t, timeout=15)
        problems = []
        if "status=0" not in screen:
            problems.append("status not 0")
        if before.read_text() != after.read_text():
            problems.append(f"termios {before.read_text().strip()} became {after.read_text().strip()}")
        if (got := term.info("#{alternate_on}")) != "0":
            problems.append(f"alternate_on={got}")
        return ", ".join(problems) or None
    except AssertionError as exc:
        return str(exc)
    finally:
        term.kill()


def test_stop_and_continue_then_quit_restores_the_terminal(proctop_bin):
    """4 of 4 runs left the terminal raw (``-isig -icanon -echo``): Textual's SIGCONT handler
    started its application mode again, saving the raw modes as the ones to restore."""
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: stop_continue_quit(proctop_bin, Path(tmp), str(i)), range(2)))
    problems = [r for r in results if r]
    assert not problems, "\n".join(problems)
