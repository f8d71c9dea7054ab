"""The TUI over a slow link: a pty whose reader takes only RATE bytes a second (issue 22 item 7).

SSH on a thin line drains the terminal slower than a storm makes frames. This
starts ``proctop`` (live kernel, default mask) on a 100x30 pty, answers
Textual's synchronized-output query so each frame ends with ``ESC[?2026l``,
runs a fork storm (``sh`` spawning ``/bin/true`` in a loop), and reads the pty
at ``--rate`` bytes/s for ``--seconds``. It reports:

- bytes/s and frames/s that got through;
- the age of what the screen shows: at each frame's end, wall-clock time minus
  the newest row time received so far (``HH:MM:SS.mmm`` in the TIME column),
  median and max over the second half of the run;
- ``q`` to exit: from writing ``q`` to the process's end, still read at ``--rate``.

``--checkout DIR`` runs the proctop of another source tree (``PYTHONPATH=DIR``),
e.g. the commit before the pacing, to compare. Needs root (the storm is
watched through the proc connector). Prints one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from datetime import datetime

SYNC_END = b"\x1b[?2026l"
DECRQM_2026 = b"\x1b[?2026$p"
ROWS, COLS = 30, 100
ROW_TIME = re.compile(rb"(\d\d):(\d\d):(\d\d)\.(\d{3}) ")  # a row's TIME (the header's times have no ms)
TICK = 0.05  # seconds between reads at most: RATE * TICK bytes each (less above 20 KB/s: a quick reader)


def row_time(match: re.Match[bytes]) -> float:
    """The wall-clock time of a TIME column value (today, local time)."""
    h, m, s, ms = (int(g) for g in match.groups())
    day = datetime.now().replace(hour=h, minute=m, second=s, microsecond=ms * 1000)
    return day.timestamp()


def run(rate: int, seconds: float, checkout: str | None) -> dict[str, object]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = dict(os.environ, TERM="xterm-256color")  # the bench's own time zone: row times read as local
    if checkout:
        env["PYTHONPATH"] = checkout
    proc = subprocess.Popen(
        [sys.executable, "-m", "proctop"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        cwd="/",
    )
    os.close(slave)
    storm = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"], start_new_session=True)
    received = storm_bytes = 0
    frames: list[float] = []
    ages: list[tuple[float, float]] = []  # (when, age of the newest row shown)
    newest = 0.0
    tail = b""
    began = time.monotonic()

    def read_some(budget: int) -> bytes:
        nonlocal received, newest, tail
        ready, _, _ = select.select([master], [], [], 0)
        if not ready:
            return b""
        try:
            data = os.read(master, budget)
        except OSError:
            return b""
        received += len(data)
        chunk = tail + data
        if DECRQM_2026 in chunk:
            os.write(master, b"\x1b[?2026;2$y")  # supported, currently reset
        for match in ROW_TIME.finditer(chunk):
            newest = max(newest, row_time(match))
        ends = chunk.count(SYNC_END) - tail.count(SYNC_END)
        now = time.monotonic()
        for _ in range(ends):
            frames.append(now)
            if newest:
                ages.append((now, time.time() - newest))
        tail = chunk[-64:]
        return data

    try:
        tick = min(TICK, 1000 / rate)  # 20 KB/s: 1 KB every 50 ms; a fast link: a read every few ms
        budget = max(1, int(rate * tick))
        while time.monotonic() - began < seconds:
            read_some(budget)
            time.sleep(tick)
        storm_bytes = received
        os.write(master, b"q")
        pressed = time.monotonic()
        while proc.poll() is None and time.monotonic() - pressed < 120:
            read_some(budget)
            time.sleep(tick)
        quit_s = time.monotonic() - pressed if proc.poll() is not None else None
    finally:
        os.killpg(storm.pid, signal.SIGKILL)
        storm.wait()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            os.close(master)
    second_half = [age for when, age in ages if when - began >= seconds / 2]
    return {
        "rate_limit_bytes_s": rate,
        "seconds": seconds,
        "checkout": checkout or "this",
        "bytes_s": round(storm_bytes / seconds),
        "frames_s": round(len([t for t in frames if t - began < seconds]) / seconds, 2),
        "age_p50_s": round(statistics.median(second_half), 2) if second_half else None,
        "age_max_s": round(max(second_half), 2) if second_half else None,
        "quit_s": round(quit_s, 2) if quit_s is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=int, default=20_000, help="bytes/s the reader takes (default 20000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the storm runs (default 20)")
    parser.add_argument("--checkout", help="run the proctop of this source tree instead")
    args = parser.parse_args()
    result = run(args.rate, args.seconds, args.checkout)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
