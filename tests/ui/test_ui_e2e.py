"""End to end in a real terminal: the installed ``proctop`` in tmux, as uid 65534.

A fresh world-readable venv gets ``pip install <repo>``; tmux runs its
``proctop`` under ``setpriv`` as nobody (the kernel 6.6+ filter needs no
root); the test runs failing commands with unique names and reads the pane
with ``tmux capture-pane``. Needs root (for setpriv) and tmux: CI has both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from helpers import REPO, run_in_pty
from ui_helpers import SETPRIV_NOBODY, as_nobody_where_allowed

pytestmark = pytest.mark.kernel

#: The environment of the tmux server and so of proctop: a login-like one. Not the test's,
#: which carries COLUMNS/LINES (set by the test tools; they would override the pane size),
#: PYTHONPATH and TZ.
TERMINAL_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "TERM": "xterm-256color",
}


class Tmux:
    """One tmux server of our own (``-L``), one session, one pane."""

    def __init__(self, command: str, width: int = 100, height: int = 30, socket: str = "") -> None:
        self.socket = socket or f"proctop-e2e-{os.getpid()}"
        self.target = "e2e"
        self.tmux("new-session", "-d", "-s", self.target, "-x", str(width), "-y", str(height), "-c", "/tmp", command)
        self.socket_path = ""
        try:
            self.tmux("set-option", "-t", self.target, "remain-on-exit", "on")
            self.socket_path = self.info("#{socket_path}")
        except BaseException:
            self.kill()
            raise

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10, env=TERMINAL_ENV
        )
        if done.returncode:
            raise AssertionError(f"tmux {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def capture(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target)

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.target, *keys)

    def info(self, fmt: str) -> str:
        return self.tmux("display-message", "-p", "-t", self.target, fmt).strip()

    def wait_for(self, predicate, timeout: float = 10.0) -> str:
        """The pane text once ``predicate(text)`` holds; AssertionError with the pane otherwise."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.capture()
            if predicate(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out; the pane shows:\n{text}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        if self.socket_path:
            Path(self.socket_path).unlink(missing_ok=True)


def run_failing(name: str) -> int:
    """Run ``sh`` with argv[0] = ``name`` that exits with 42; returns its pid.

    The script says ``$((6*7))`` so that "exit 42" on screen can only be the status column.
    """
    proc = subprocess.Popen([name, "-c", "sleep 0.3; exit $((6*7))"], executable="/bin/sh")
    assert proc.wait(timeout=10) == 42
    return proc.pid


def lines_with(text: str, *needles: str) -> list[str]:
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def rows_of(text: str, event: str, name: str) -> list[str]:
    """Timeline rows of type ``event`` whose command starts with ``name``."""
    row = re.compile(rf"^.\d\d:\d\d:\d\d\.\d{{3}} {event} +\d+ +\d* +\S+ +{re.escape(name)} ")
    return [line for line in text.splitlines() if row.match(line)]


@pytest.mark.nonroot
def test_proctop_in_tmux_as_nobody(proctop_bin):
    term = Tmux(f"setpriv --reuid=65534 --regid=65534 --clear-groups {proctop_bin}")
    try:
        screen = term.wait_for(lambda t: "x[x]nonzero-exit" in t, timeout=30)
        assert "kernel 6.6+ native filter" in screen
        pid = int(term.info("#{pane_pid}"))
        assert Path(f"/proc/{pid}").stat().st_uid == 65534  # really running as nobody

        assert "TIME         EVENT    PID     PPID    USER     COMMAND / DETAIL" in screen
        # 100 columns: one line, the kinds that are on, and a count of the others
        assert "kernel filter  f[x]fork e[x]exec x[x]nonzero-exit  7 more off (? keys)" in screen

        # short unique argv[0]s: the command column is narrow
        prefix = f"e2e{os.getpid() % 100000}"
        term.send("/")  # filter the view to our commands: the machine is busy
        term.wait_for(lambda t: "filter rows" in t)
        term.send("-l", prefix)
        term.wait_for(lambda t: f"filter: {prefix.lower()}" in t)
        term.send("Enter")
        term.wait_for(lambda t: "filter rows" not in t)

        # A busy machine can overflow the socket (the header then shows LOST n): only
        # then is a command whose events went missing retried, under another name.
        first = None
        for attempt in "abc":
            name = prefix + attempt
            run_failing(name)
            try:
                screen = term.wait_for(lambda t, name=name: rows_of(t, "exit", name), timeout=5)
            except AssertionError:
                assert " LOST " in term.capture(), "the failed exit never showed, and no events were lost"
                continue
            first = name
            break
        assert first is not None, "events lost three times in a row"
        assert "exit 42 after" in rows_of(screen, "exit", first)[0]

        term.send("x")
        term.wait_for(lambda t: "x[ ]nonzero-exit  7 more off" in t)  # off, still listed
        second = None
        for attempt in "xyz":
            name = prefix + attempt
            run_failing(name)
            # the exec still arrives (the reader is live) but the failed exit does not
            try:
                term.wait_for(lambda t, name=name: rows_of(t, "exec", name), timeout=5)
            except AssertionError:
                assert " LOST " in term.capture(), "the exec never showed, and no events were lost"
                continue
            second = name
            break
        assert second is not None, "events lost three times in a row"
        time.sleep(1.5)
        screen = term.capture()
        assert rows_of(screen, "exit", second) == [], screen
        assert not lines_with(screen, "exit 42 after", second), screen
        assert rows_of(screen, "exit", first), screen

        # SIGTERM ends it cleanly and gives the terminal back
        stop_and_check_terminal(term, pid, signal.SIGTERM)
    finally:
        term.kill()


def stop_and_check_terminal(term: Tmux, pid: int, sig: int) -> None:
    """Send ``sig``; proctop must exit 0 having left the alternate screen and mouse mode.

    (A process killed by the signal's default action leaves both on; tmux keeps
    the dead pane's modes, so this tells a clean exit from a crash.)
    """
    os.kill(pid, sig)
    # Generous: the process ends once the reader's current poll() returns, which on a
    # machine under a fork storm can take seconds (the terminal itself is restored first).
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, f"proctop did not exit on signal {sig}"
        dead, _, status = term.info("#{pane_dead}:#{pane_dead_status}/#{pane_dead_signal}").partition(":")
        if dead == "1" and status != "/":
            break  # tmux reaped it: "0/" is exit status 0, "/15" death by SIGTERM
        if dead == "1" and (wait_status := zombie_wait_status(pid)) is not None:
            # tmux 3.3 sometimes leaves the child a zombie: its wait status is in /proc
            status = "0/" if wait_status == 0 else f"wait status {wait_status:#x}"
            break
        time.sleep(0.1)
    assert status == "0/", f"exit status/signal: {status}"
    assert term.info("#{alternate_on}") == "0"  # left the alternate screen
    assert term.info("#{mouse_any_flag}") == "0"  # mouse reporting off


def zombie_wait_status(pid: int) -> int | None:
    """The wait status of an unreaped process (``exit_code`` in /proc/PID/stat), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3, "state"
    if fields[0] != "Z" or len(fields) < 50:
        return None
    return int(fields[49])  # field 52


def test_sighup_restores_the_terminal(proctop_bin):
    # and under TERM=screen, the classic terminal of tmux and GNU screen
    term = Tmux(f"env TERM=screen {as_nobody_where_allowed()} {proctop_bin}", 80, 24)
    try:
        screen = term.wait_for(lambda t: "x[x]nonzero-exit" in t, timeout=30)
        assert "f[x]fork e[x]exec x[x]nonzero-exit" in screen  # usable at 80x24 too
        assert "TIME         EVENT    PID     PPID    USER     COMMAND / DETAIL" in screen
        pid = int(term.info("#{pane_pid}"))
        assert "TERM=screen\0" in Path(f"/proc/{pid}/environ").read_text()
        assert term.info("#{alternate_on}") == "1"
        term.send("X")  # shift-x: every exit
        term.wait_for(lambda t: "X[x]exit" in t)
        term.send("X")
        term.wait_for(lambda t: "X[ ]exit  6 more off" in t)  # off, still listed
        stop_and_check_terminal(term, pid, signal.SIGHUP)
    finally:
        term.kill()


@pytest.mark.kernel
def test_a_refusing_kernel_gives_nobody_one_line_in_every_mode(proctop_bin, nonroot_subscribe):
    """The real refusal as a new user meets it (issue 18): uid 65534 on a kernel that refuses its bind gets one
    line, status 3 and the ways forward from --json, --summary, --record and the UI in a terminal (as over SSH),
    and the UI never opens its screen."""
    if nonroot_subscribe.allowed:
        pytest.skip("this kernel lets uid 65534 subscribe: no refusal to meet (test_proctop_in_tmux_as_nobody runs)")
    records = Path(tempfile.mkdtemp(prefix="proctop-refused-"))  # not under tmp_path: nobody cannot enter that
    os.chown(records, 65534, 65534)  # nobody's own: the recorder refuses a directory another user controls
    nobody = [*SETPRIV_NOBODY.split(), str(proctop_bin)]
    for mode in (["--json"], ["--summary", "--duration", "5"], ["--record", str(records)], []):
        if mode:
            proc = subprocess.run([*nobody, *mode], capture_output=True, text=True, cwd="/", timeout=60)
            status, screen, stderr = proc.returncode, proc.stdout, proc.stderr
        else:
            status, screen, stderr = run_in_pty(nobody)
            assert "\x1b[?1049h" not in screen  # the alternate screen was never entered
        assert status == 3, (mode, stderr)
        assert "Traceback" not in stderr and stderr.count("\n") == 1, (mode, stderr)
        assert "refuses process events to non-root users (joining the proc connector: Operation not" in stderr
        assert "run as root or with CAP_NET_ADMIN" in stderr and "--replay FILE" in stderr
        assert mode != ["--json"] or screen == ""
    assert [p.name for p in records.iterdir()] in ([], [".proctop.lock"])  # nothing recorded (the lock may stay)
    shutil.rmtree(records)


def test_the_installed_package_carries_the_module_source(proctop_bin):
    """``pip install .`` ships kmod/ to <prefix>/share/proctop/kmod, which the refusal's advice names."""
    venv = proctop_bin.parent.parent
    kmod = venv / "share" / "proctop" / "kmod"
    for name in ("proctop_cn.c", "Kbuild", "Makefile", "dkms.conf"):
        assert (kmod / name).read_bytes() == (REPO / "kmod" / name).read_bytes()
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from proctop.kernel.probe import kmod_source; print(kmod_source())"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert found.stdout.strip() == str(kmod), found.stderr


@pytest.mark.kernel
def test_the_advised_capability_lets_nobody_watch(proctop_bin):
    """The refusal's first way forward, run as written: uid 65534 with only CAP_NET_ADMIN (setpriv) subscribes
    on any kernel, this one included, and sees a failure."""
    with_capability = [*SETPRIV_NOBODY.split(), "--inh-caps=+net_admin", "--ambient-caps=+net_admin"]
    cmd = [*with_capability, str(proctop_bin), "--json", "--only", "nonzero-exit", "--count", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        assert proc.stdout is not None
        header = json.loads(proc.stdout.readline())  # written once subscribed
        assert header["source"] == "native"
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            subprocess.run(["sh", "-c", "exit 3"])
            time.sleep(0.2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert event["event"] == "exit" and event["exit_code"] not in (0, None)


def test_keys_and_pastes_right_after_slash_reach_the_filter(proctop_bin):
    """A real terminal in a storm: '/cmd:gcc' typed in one write, pasted (a bracketed paste), and '/' then a
    paste reach the filter whole and in order, and no letter toggles the kernel filter."""
    storm = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
    term = Tmux(f"{as_nobody_where_allowed()} {proctop_bin}", 100, 30)
    try:
        term.wait_for(lambda t: "x[x]nonzero-exit  7 more off" in t, timeout=30)
        ways = {
            "typed": lambda: term.send("-l", "/cmd:gcc"),
            "pasted": lambda: (
                term.tmux("set-buffer", "-b", "e2e", "/cmd:gcc"),
                term.tmux("paste-buffer", "-p", "-b", "e2e", "-t", term.target),
            ),
            "slash then pasted": lambda: (
                term.send("-l", "/"),
                term.tmux("set-buffer", "-b", "e2e", "cmd:gcc"),
                term.tmux("paste-buffer", "-p", "-b", "e2e", "-t", term.target),
            ),
        }
        for way, send in [*ways.items()] * 3:
            send()
            screen = term.wait_for(lambda t: "filter: cmd:gcc  " in t.splitlines()[0], timeout=5)  # header: whole
            assert "x[x]nonzero-exit  7 more off" in screen, (way, screen)
            term.send("Escape")
            term.wait_for(lambda t: "cmd:gcc" not in t)
        term.send("q")
        term.wait_for(lambda t: term.info("#{pane_dead}") == "1")
    finally:
        term.kill()
        storm.kill()
        storm.wait()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_q_after_a_resize_leaves_nothing_of_the_screen_behind(proctop_bin, size):
    """Resized while on the alternate screen, then q: the main screen and its scrollback hold the shell's lines
    only (tmux carried the top of the last frame into the scrollback when the window had grown)."""
    sample = REPO / "tests" / "data" / "sample.jsonl"
    term = Tmux(f"sh -c 'clear; echo BEFORE; {proctop_bin} --replay {sample}; echo AFTER; exec sleep 60'", 100, 30)
    try:
        term.wait_for(lambda t: "end of capture" in t, timeout=30)
        term.tmux("resize-window", "-t", term.target, "-x", str(size[0]), "-y", str(size[1]))
        term.wait_for(lambda t: ("UNIT" in t) == (size[0] >= 120) and len(t.splitlines()[0]) <= size[0])
        term.send("q")
        term.wait_for(lambda t: "AFTER" in t)
        everything = term.tmux("capture-pane", "-p", "-t", term.target, "-S", "-100")
        assert [line for line in everything.splitlines() if line.strip()] == ["BEFORE", "AFTER"], everything
        assert term.info("#{history_size}") == "0"
        assert term.info("#{alternate_on}") == "0"
    finally:
        term.kill()
