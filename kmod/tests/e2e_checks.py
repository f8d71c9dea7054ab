#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-only
"""Guest side of proctop's end-to-end run, the parts a shell does badly (stdlib only).

Usage (as root; proctop itself runs as uid 65534 under setpriv):
  e2e_checks.py metrics DIR SOURCE WANT  `proctop --json --only nonzero-exit --metrics
                                         127.0.0.1:PORT`: a failing `sh -c 'exit 3'` is
                                         counted in /metrics (scraped with urllib), and
                                         proctop_info names source WANT; SIGTERM ends it
                                         with status 0
  e2e_checks.py ui DIR SOURCE WANT       `proctop --only nonzero-exit` (the UI) in a pty
                                         of 100x30 with TERM=xterm-256color: the header
                                         names source WANT, the row of a failing
                                         `sh -c 'exit 3'` appears, `q` ends it with status 0
DIR is the staged proctop (PYTHONPATH), SOURCE what --source to give (auto: none).
Prints "PASS [uid65534] ..." or "FAIL [uid65534] ...: why". Under TCG proctop
needs many seconds to start: every wait is a poll loop with a generous deadline,
never a fixed sleep.
"""
import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import urllib.request

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
       "PYTHONDONTWRITEBYTECODE": "1"}
START_TIMEOUT = 300.0  # proctop's start (imports, probe, subscribe) under a slow TCG guest
EVENT_TIMEOUT = 120.0  # from the first failing command to proctop showing one


def report(name, ok, why=""):
    print(f"{'PASS' if ok else 'FAIL'} [uid65534] {name}{'' if ok else ': ' + why}", flush=True)
    return ok


def proctop_argv(source, *args):
    extra = [] if source == "auto" else ["--source", source]
    return [*NOBODY, "/usr/bin/python3", "-m", "proctop", *extra, *args]


def fail_once():
    """`sh -c 'exit 3'` (as root: uid 65534 sees every process's events); its pid."""
    p = subprocess.Popen(["sh", "-c", "exit 3"])
    p.wait()
    return p.pid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_lines(f, buf, timeout):
    """Complete lines from the non-blocking pipe f within timeout; buf keeps the rest."""
    r, _, _ = select.select([f], [], [], timeout)
    if not r:
        return []
    chunk = os.read(f.fileno(), 65536)
    if not chunk:
        raise EOFError
    buf += chunk
    *lines, rest = buf.split(b"\n")
    buf[:] = rest
    return [line.decode(errors="replace") for line in lines]


def cmd_metrics(d, source, want):
    name = f"proctop --metrics --source {source}: a failure counted in /metrics, source {want}"
    port = free_port()
    env = dict(ENV, PYTHONPATH=d)
    proc = subprocess.Popen(
        proctop_argv(source, "--json", "--only", "nonzero-exit", "--metrics", f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/run", env=env)
    os.set_blocking(proc.stdout.fileno(), False)
    buf, seen, pids = bytearray(), [], set()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not seen and time.monotonic() < deadline:  # the header line: subscribed
            seen += read_lines(proc.stdout, buf, 1.0)
            if proc.poll() is not None:
                break
        if not seen:
            return report(name, False, f"no header from proctop (rc={proc.poll()}): "
                          f"{proc.stderr.read().decode(errors='replace')[-500:] if proc.poll() is not None else ''}")
        header = seen[0]
        got = None
        deadline = time.monotonic() + EVENT_TIMEOUT
        while got is None and time.monotonic() < deadline:
            pids.add(fail_once())
            t = time.monotonic() + 2.0
            while got is None and time.monotonic() < t:
                for line in read_lines(proc.stdout, buf, 0.5):
                    m = re.search(r'"event":"exit","pid":(\d+)', line)
                    if m and int(m.group(1)) in pids and '"exit_code":3' in line:
                        got = int(m.group(1))
        if got is None:
            return report(name, False, f"no failed exit on --json within {EVENT_TIMEOUT:.0f}s ({len(pids)} tried)")
        # the JSON line is written after the counter moved (one consumer path)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read().decode()
        failures = re.findall(r'^proctop_failures_total\{([^}]*status="3"[^}]*)\} ([0-9.e+]+)$', text, re.M)
        info = re.search(r'^proctop_info\{([^}]*)\} 1\.0$', text, re.M)
        exits = re.search(r'^proctop_events_total\{kind="exit"\} ([0-9.e+]+)$', text, re.M)
        for f in failures:
            print(f"  metrics: proctop_failures_total{{{f[0]}}} {f[1]}")
        print(f"  metrics: {info.group(0) if info else 'no proctop_info'}; exits {exits.group(1) if exits else '-'}")
        problems = []
        if f'"source":"{want}"' not in header:
            problems.append(f"header is not source {want}: {header[:200]}")
        if sum(float(v) for _, v in failures) < 1:
            problems.append("no proctop_failures_total{status=\"3\"} >= 1")
        if not exits or float(exits.group(1)) < 1:
            problems.append("no proctop_events_total{kind=\"exit\"} >= 1")
        if not info or f'source="{want}"' not in info.group(1):
            problems.append(f"proctop_info does not name source {want}")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        if rc != 0:
            problems.append(f"exit status {rc} after SIGTERM")
        return report(name, not problems, "; ".join(problems))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the UI in a pty ------------------------------------------------------------

ESC_CURSOR = re.compile(rb"\x1b\[\d*(?:;\d*)?[Hf]")  # a cursor move starts another line of screen
ESC_OTHER = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|[@-Z\\-_])")


def screen_text(raw):
    """The text proctop wrote, one line per cursor move, escape sequences removed."""
    return ESC_OTHER.sub(b"", ESC_CURSOR.sub(b"\n", raw)).decode(errors="replace")


def exit_row(text, pids):
    """A timeline row `HH:MM:SS.mmm exit PID ... exit 3` of one of pids, else None."""
    for m in re.finditer(r"\d\d:\d\d:\d\d\.\d{3} +exit +(\d+) [^\n]*", text):
        if int(m.group(1)) in pids and re.search(r"\bexit 3\b", m.group(0)):
            return m.group(0).rstrip()
    return None


def cmd_ui(d, source, want):
    name = f"proctop --source {source} (UI) in a 100x30 pty: source {want}, the failed exit's row, q exits 0"
    sys.path.insert(0, d)
    from proctop.kernel.probe import SOURCE_LABELS  # what the header calls each source

    label = SOURCE_LABELS[want]
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    argv = proctop_argv(source, "--only", "nonzero-exit")
    env = dict(ENV, PYTHONPATH=d, TERM="xterm-256color")
    pid = os.fork()
    if pid == 0:  # a session of its own with the pty as controlling terminal
        try:
            os.close(master)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.close(slave)
            os.chdir("/run")
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    os.close(slave)
    raw = bytearray()
    status = None

    def pump(timeout):
        """Read what proctop wrote within timeout; False once the pty is closed."""
        r, _, _ = select.select([master], [], [], timeout)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every slave end closed (proctop exited)
                return False
            if not chunk:
                return False
            raw.extend(chunk)
        return True

    def reap(timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                return st
            pump(0.2)
        return None

    try:
        pids, row, alive = set(), None, True
        # proctop's start takes long under TCG: failing commands from the start, one
        # a second, until the row of one of them is on the screen
        deadline = time.monotonic() + START_TIMEOUT + EVENT_TIMEOUT
        next_fail = time.monotonic()
        while row is None and alive and time.monotonic() < deadline:
            if time.monotonic() >= next_fail:
                pids.add(fail_once())
                next_fail = time.monotonic() + 1.0
            alive = pump(0.25)
            row = exit_row(screen_text(bytes(raw[-200000:])), pids)
        if row is None:
            tail = screen_text(bytes(raw[-3000:]))[-1500:]
            why = "proctop ended" if not alive else f"no row within {START_TIMEOUT + EVENT_TIMEOUT:.0f} s"
            return report(name, False, f"{why} ({len(pids)} failures run, {len(raw)} bytes); screen tail: {tail!r}")
        print(f"  ui row: {row[:100]}")
        shown = label in screen_text(bytes(raw))
        os.write(master, b"q")
        status = reap(120)
        if status is None:
            return report(name, False, "still running 120 s after q")
        ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        return report(name, ok and shown, f"wait status {status:#x}, header label {label!r} shown: {shown}")
    finally:
        if status is None:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        os.close(master)


if __name__ == "__main__":
    cmd, d, src, want = sys.argv[1:5]
    try:
        ok = {"metrics": cmd_metrics, "ui": cmd_ui}[cmd](d, src, want)
    except Exception as exc:  # the guest's verdict counts FAIL lines: one, with the cause
        ok = report(f"{cmd} --source {src}", False, f"{type(exc).__name__}: {exc}")
    sys.exit(0 if ok else 1)
