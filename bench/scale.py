"""Issue 20's scale target: 100,000 live processes, first failure <= 0.5 s, RSS <= 50 MB, idle CPU <= 1.5%.

Run as root (pid_max is raised for the sleepers and restored after):

    .venv/bin/python bench/scale.py [--n 100000] [--tree NAME=PATH ...] [--idle 10]

Each ``--tree`` is a proctop source tree (``git archive <commit> | tar -x -C DIR``
gives an older one) run with this interpreter, so a before/after comparison
comes from one run on one machine state. For each tree, with N sleeping
processes alive (``storm hold N``: forked children that pause()):

* ``first_line_s``: from the Popen of ``proctop --json --only nonzero-exit``
  to its first failure line on stdout, while this script runs ``/bin/false``
  every 20 ms (so the figure is start-up time plus at most 20 ms);
* ``rss_mb``: proctop's VmRSS after the failures stopped and 2 s passed;
* ``idle_cpu_pct``: its CPU (user + system) over ``--idle`` seconds with no
  failure at all, as a share of one core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def build_storm(out: Path) -> Path:
    exe = out / "storm"
    subprocess.run(
        ["gcc", "-O2", "-static", "-pthread", "-o", str(exe), str(ROOT / "bench" / "storm.c")],
        check=True,
    )
    return exe


@contextlib.contextmanager
def sysctl_at_least(name: str, want: int):
    """Raise a sysctl for the duration of a block (restored after)."""
    path = Path(name)
    old = int(path.read_text())
    if old < want:
        path.write_text(str(want))
    try:
        yield
    finally:
        if old < want:
            with contextlib.suppress(OSError):
                path.write_text(str(old))


class Sleepers:
    """N paused children of ``storm hold`` (killed and reaped on release)."""

    def __init__(self, storm: Path, n: int) -> None:
        self.proc = subprocess.Popen(
            [str(storm), "hold", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.made = 0
        for line in self.proc.stdout:
            if line.startswith("ready"):
                self.made = int(line.split()[1])
                break

    def release(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Failures:
    """``/bin/false`` every ``every`` seconds in a thread, until stopped."""

    def __init__(self, every: float = 0.02) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self.thread.start()

    def _run(self, every: float) -> None:
        while not self.stop.is_set():
            subprocess.run(["/bin/false"], check=False)
            self.stop.wait(every)

    def end(self) -> None:
        self.stop.set()
        self.thread.join()


def measure(name: str, tree: Path, idle: float, extra: list[str]) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [sys.executable, "-m", "proctop", "--json", "--only", "nonzero-exit", *extra]
    fails = Failures()
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=tree, text=True)
        assert proc.stdout is not None
        first = None
        header = None
        for line in proc.stdout:
            d = json.loads(line)
            if "event" not in d:
                header = d
            elif d["event"] == "exit":
                first = time.monotonic() - t0
                break
        if first is None:
            raise RuntimeError(f"{name}: proctop ended before any failure line")
    finally:
        fails.end()
    # keep its pipe drained while it idles
    drain = threading.Thread(target=lambda: proc.stdout.read(), daemon=True)  # type: ignore[union-attr]
    drain.start()
    time.sleep(2.0)
    rss = rss_mb(proc.pid)
    c0, w0 = cpu_s(proc.pid), time.monotonic()
    time.sleep(idle)
    c1, w1 = cpu_s(proc.pid), time.monotonic()
    rss_end = rss_mb(proc.pid)
    proc.terminate()
    proc.wait(timeout=10)
    return {
        "tree": name,
        "first_line_s": round(first, 3),
        "rss_mb": round(max(rss, rss_end), 1),
        "idle_cpu_pct": round(100 * (c1 - c0) / (w1 - w0), 2),
        "header": {k: v for k, v in (header or {}).items() if k in ("reader", "names", "source")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="sleeping processes to hold")
    ap.add_argument("--tree", action="append", default=[], help="NAME=PATH of a proctop tree (default: this one)")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--proctop-arg", action="append", default=[], help="extra proctop argument (repeatable)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("scale: run as root (pid_max for the sleepers)", file=sys.stderr)
        return 2
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("this", str(ROOT))]
    with tempfile.TemporaryDirectory() as tmp:
        storm = build_storm(Path(tmp))
        with (
            sysctl_at_least("/proc/sys/kernel/pid_max", args.n + 65536),
            sysctl_at_least("/proc/sys/kernel/threads-max", 2 * args.n + 65536),
        ):
            t = time.monotonic()
            hold = Sleepers(storm, args.n)
            live = sum(1 for p in os.listdir("/proc") if p.isdigit())
            print(
                f"# {hold.made} sleepers in {time.monotonic() - t:.1f}s, {live} pids live, "
                f"load {os.getloadavg()[0]:.2f}",
                file=sys.stderr,
            )
            results = []
            try:
                for r in range(args.rounds):
                    for name, path in trees:
                        rec = measure(name, Path(path), args.idle, args.proctop_arg)
                        rec["round"] = r
                        rec["live_pids"] = live
                        results.append(rec)
                        print(json.dumps(rec), flush=True)
            finally:
                hold.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
