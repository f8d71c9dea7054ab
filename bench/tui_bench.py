"""Bench case 6: the TUI in a real pseudo-terminal under a process storm.

Starts ``proctop --only all`` (default history) on a 120x40 pty, answers
Textual's synchronized-output query so every frame ends with ``ESC[?2026l``,
and then:

1. runs a fork storm at 5,000 processes/s, counting frames per second and
   timing ``space`` (pause / resume) from the key write to the first frame
   byte showing ``PAUSED`` / `` live ``;
2. runs fork storms at top rate until the kernel has sent ``--events``
   events (2 per process + the spawners'), waits until proctop is idle again
   and reads its RSS.

Prints one JSON object on the last line. Needs root or Linux 6.6+.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from bench import cpu_ns  # bench/ is sys.path[0]: this file runs as a script beside bench.py

SYNC_END = b"\x1b[?2026l"
DECRQM_2026 = b"\x1b[?2026$p"
ROWS, COLS = 40, 120


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (peak) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class Terminal:
    """The pty's master side: drains output, counts frames, finds text after a time."""

    def __init__(self, argv: list[str], env: dict) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, cwd="/"
        )
        os.close(slave)
        self.frames: list[float] = []
        self.lock = threading.Lock()
        self.watch: tuple[bytes, float] | None = None
        self.found = threading.Event()
        self.found_at = 0.0
        self.tail = b""
        self.total = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            self.total += len(data)
            chunk = self.tail + data
            if DECRQM_2026 in chunk:
                os.write(self.master, b"\x1b[?2026;2$y")  # supported, currently reset
            n = chunk.count(SYNC_END) - self.tail.count(SYNC_END)
            with self.lock:
                self.frames.extend([now] * n)
                if self.watch is not None and self.watch[0] in chunk and now >= self.watch[1]:
                    self.found_at = now
                    self.watch = None
                    self.found.set()
            self.tail = chunk[-32:]

    def key_latency(self, key: bytes, expect: bytes, timeout: float = 5.0) -> float | None:
        """Seconds from writing ``key`` to the first output holding ``expect``."""
        self.found.clear()
        t0 = time.monotonic()
        with self.lock:
            self.watch = (expect, t0)
            self.tail = b""
        os.write(self.master, key)
        if not self.found.wait(timeout):
            with self.lock:
                self.watch = None
            return None
        return self.found_at - t0

    def frames_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for t in self.frames if t0 <= t < t1)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"q")
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        os.close(self.master)


def storm(exe: str, n: int, rate: float = 0, tag: str = "tui") -> subprocess.Popen:
    out = Path(tempfile.gettempdir()) / f"tui-gt-{os.getpid()}.txt"
    cmd = [exe, "spawn", str(n), str(out), "--fail", "0.01", "--tag", tag]
    if rate:
        cmd += ["--rate", str(rate)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def settle(pid: int, quiet_ns: float = 20e6, step: float = 0.5, timeout: float = 120) -> None:
    t0 = time.monotonic()
    prev = cpu_ns(pid)
    while time.monotonic() - t0 < timeout:
        time.sleep(step)
        cur = cpu_ns(pid)
        if cur - prev < quiet_ns:
            return
        prev = cur


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storm", required=True, help="path of the compiled bench/storm helper")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--presses", type=int, default=20)
    ap.add_argument("--mass-rate", type=float, default=0, help="processes/s of the million-event part (0: top rate)")
    args = ap.parse_args()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS))
    term = Terminal([sys.executable, "-m", "proctop", "--only", "all"], env)
    result: dict = {}
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and len(term.frames) < 1:
            time.sleep(0.05)
        if not term.frames:
            raise SystemExit(f"the TUI drew nothing in 20 s ({term.total} bytes of output)")
        settle(term.proc.pid, step=0.3)
        idle_t0 = time.monotonic()
        time.sleep(2.0)
        idle_fps = term.frames_between(idle_t0, time.monotonic()) / 2.0
        # 1. a 5,000 proc/s storm: frames per second and key latency
        n = int(args.rate * args.seconds)
        s = storm(args.storm, n, args.rate)
        time.sleep(1.0)  # let the storm reach its rate
        w0 = time.monotonic()
        lat_pause: list[float] = []
        lat_resume: list[float] = []
        misses = 0
        for _ in range(args.presses // 2):
            if time.monotonic() - w0 > args.seconds - 2.5:
                break
            a = term.key_latency(b" ", b"PAUSED")
            time.sleep(0.1)
            b = term.key_latency(b" ", b" live ")
            time.sleep(0.1)
            for v, dest in ((a, lat_pause), (b, lat_resume)):
                if v is None:
                    misses += 1
                else:
                    dest.append(v)
        w1 = time.monotonic()
        info = json.loads(s.communicate()[0])
        fps = term.frames_between(w0, w1) / (w1 - w0)
        lat = sorted(lat_pause + lat_resume)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, round(p * (len(lat) - 1)))] * 1000 if lat else float("nan")

        settle(term.proc.pid)
        result.update(
            {
                "storm_rate": info["rate"],
                "updates_per_s": fps,
                "idle_updates_per_s": idle_fps,
                "key_presses": len(lat) + misses,
                "key_missed": misses,
                "key_p50_ms": pct(0.5),
                "key_p95_ms": pct(0.95),
                "key_max_ms": max(lat) * 1000 if lat else float("nan"),
                "key_mean_ms": statistics.mean(lat) * 1000 if lat else float("nan"),
                "rss_mb_start": rss_mb(term.proc.pid),
            }
        )
        # 2. a million events at top rate, then RSS
        sent = 2 * info["n"]
        c0, t0 = cpu_ns(term.proc.pid), time.monotonic()
        peak = [0.0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.25):
                with contextlib.suppress(OSError, ValueError):
                    peak[0] = max(peak[0], rss_mb(term.proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        while sent < args.events:
            chunk = min(100_000, (args.events - sent) // 2 + 1)
            s = storm(args.storm, chunk, args.mass_rate, "tuimass")
            info = json.loads(s.communicate()[0])
            sent += 2 * info["n"] + 2 * (1 + len(info["spawners"]))
        t_storm = time.monotonic() - t0
        settle(term.proc.pid)
        sampling.set()
        result.update(
            {
                "events": sent,
                "mass_storm_s": t_storm,
                "drain_s": time.monotonic() - t0 - t_storm,
                "cpu_s": (cpu_ns(term.proc.pid) - c0) / 1e9,
                "rss_mb": rss_mb(term.proc.pid),
                "rss_peak_mb": rss_mb(term.proc.pid, "VmHWM"),
                "rss_peak_sampled_mb": peak[0],
                "alive": term.proc.poll() is None,
            }
        )
    finally:
        term.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
