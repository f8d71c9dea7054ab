"""The recorder under a storm: ``proctop --record DIR --only all`` while bench/storm.c forks as fast as it can.

Run as root on Linux 6.6+ from the repository: ``python bench/record_bench.py [--n 200000]``
(with the package importable: the project's venv, or PYTHONPATH=.). Measures, per run:

- the storm's rate (processes/s, from storm.c's own clock);
- proctop's CPU (schedstat run time of all its threads, as bench.py measures it) per 10,000 processes;
- bytes proctop wrote (``wchar`` of /proc/PID/io: every write(2), i.e. the segments) per second and per event;
- the largest total size of DIR's segments seen (sampled every 50 ms) against ``--record-max-size``;
- completeness: the events in the record against ``proctop_events_total`` (what proctop received,
  scraped from ``--metrics`` just before it is stopped), and the storm's pids found as exits.

Three runs: ``--json >/dev/null`` as the baseline, a bound large enough to keep everything
(completeness), and a small one that the storm overflows many times (the bound holds while
the oldest segments go).
Writes bench/record_results.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from bench import OUT, build_storm, cpu_ns, log, machine_info, settle  # noqa: E402
from proctop.record import CaptureLines, segment_paths  # noqa: E402

RESULTS = BENCH / "record_results.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wchar(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def received(port: int) -> tuple[int, int]:
    """(events received, events lost) from proctop's own counters."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    events = lost = 0
    for line in text.splitlines():
        if line.startswith("proctop_events_total{"):
            events += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("proctop_lost_events_total "):
            lost = int(float(line.rsplit(" ", 1)[1]))
    return events, lost


def one_run(storm: Path, n: int, parallel: int, max_size: str | None, workdir: Path) -> dict:
    """One storm watched by a recorder with ``--record-max-size max_size``, or (``None``) by ``--json >/dev/null``."""
    rec = workdir / f"rec-{max_size}"
    port = free_port()
    cmd = [sys.executable, "-m", "proctop", "--only", "all", "--metrics", f"127.0.0.1:{port}"]
    cmd += ["--record", str(rec), "--record-max-size", max_size] if max_size else ["--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            received(port)
            break
        except OSError:
            time.sleep(0.1)
    settle(proc.pid, minimum=1.0)
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            try:
                if max_size:
                    peak[0] = max(peak[0], sum(p.stat().st_size for p in segment_paths(rec)))
            except OSError:
                pass  # a segment deleted between listing and stat
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0, w0 = cpu_ns(proc.pid), wchar(proc.pid)
    gt = workdir / "gt.txt"
    out = subprocess.run(
        [str(storm), "spawn", str(n), str(gt), "--fail", "0.01", "--parallel", str(parallel)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    settle(proc.pid, minimum=1.5)  # proctop has caught up and flushed (once a second)
    cpu1, w1 = cpu_ns(proc.pid), wchar(proc.pid)
    got_events, lost = received(port)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    sampling.set()
    sampler.join()
    storm_pids = Counter(int(line.split()[0]) for line in gt.read_text().splitlines())  # pids wrap: a multiset
    gt.unlink()
    recorded = 0
    exits: Counter[int] = Counter()
    for line in CaptureLines(rec) if max_size else ():
        obj = json.loads(line)
        if "event" not in obj:
            continue
        recorded += 1
        if obj["event"] == "exit":
            exits[obj["pid"]] += 1
    final = sum(p.stat().st_size for p in segment_paths(rec)) if max_size else 0
    res = {
        "max_size": max_size or "(--json >/dev/null)",
        "n": n,
        "rate": info["rate"],
        "storm_s": info["elapsed"],
        "cpu_s": (cpu1 - cpu0) / 1e9,
        "cpu_per_10k": (cpu1 - cpu0) / 1e9 / n * 10_000,
        "cpu_share": (cpu1 - cpu0) / 1e9 / info["elapsed"],
        "written_bytes": w1 - w0,
        "write_rate": (w1 - w0) / info["elapsed"],
        "bytes_per_event": (w1 - w0) / max(got_events, 1),
        "peak_dir_bytes": peak[0],
        "final_dir_bytes": final,
        "segments": len(segment_paths(rec)) if max_size else 0,
        "received": got_events,
        "recorded": recorded,
        "lost_reported": lost,
        "storm_exits_recorded": (exits & storm_pids).total() / n if max_size else None,
        "stderr": proc.stderr.read().strip(),
    }
    log(json.dumps(res))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="processes per storm (default 200000)")
    ap.add_argument("--parallel", type=int, default=2, help="storm spawner processes (default 2)")
    ap.add_argument("--small", default="1M", help="the bound the storm overflows (default 1M)")
    args = ap.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    storm = build_storm()
    with tempfile.TemporaryDirectory(prefix="proctop-record-bench-") as tmp:
        runs = [one_run(storm, args.n, args.parallel, size, Path(tmp)) for size in (None, "1G", args.small)]
    write_markdown(runs, machine_info())
    return 0


def write_markdown(runs: list[dict], machine: dict) -> None:
    lines = [
        "# Recording under a storm (`proctop --record DIR --only all`)",
        "",
        f"{machine['date']}; {machine['nproc']} cores ({machine['cpu']}), Linux {machine['kernel']}, "
        f"Python {machine['python']}. `python bench/record_bench.py` (bench/storm.c forking as fast as it can, "
        "1% failing; proctop at its default nice -10 as root).",
        "",
        "| --record-max-size | processes | storm rate | proctop CPU | CPU per 10,000 | written | write rate "
        "| bytes/event | largest DIR seen | segments | received | recorded | lost (kernel) | storm exits recorded |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if r["storm_exits_recorded"] is None:  # the --json baseline: no record to check
            lines.append(
                f"| {r['max_size']} | {r['n']:,} | {r['rate']:,.0f}/s | {r['cpu_share']:.0%} of a core "
                f"| {r['cpu_per_10k']:.2f} s | | | | | | {r['received']:,} | | {r['lost_reported']:,} | |"
            )
            continue
        lines.append(
            f"| {r['max_size']} | {r['n']:,} | {r['rate']:,.0f}/s | {r['cpu_share']:.0%} of a core "
            f"| {r['cpu_per_10k']:.2f} s | {r['written_bytes'] / 1e6:.1f} MB | {r['write_rate'] / 1e6:.2f} MB/s "
            f"| {r['bytes_per_event']:.1f} | {r['peak_dir_bytes'] / 2**20:.2f} MiB | {r['segments']} "
            f"| {r['received']:,} | {r['recorded']:,} | {r['lost_reported']:,} | {r['storm_exits_recorded']:.2%} |"
        )
    lines += [
        "",
        "received = `proctop_events_total` summed (every event proctop read, `lost` records included),"
        " scraped just before proctop is stopped; recorded = event lines replayed from DIR. With the large"
        " bound recorded must be at least received (a few more: the machine's own processes between the"
        " scrape and the stop), and every exit of the storm must be there; with the small one the oldest"
        " segments were deleted, and the largest DIR seen (sampled every 50 ms during the run) must stay"
        " within the bound. The first row is the same"
        " storm watched by `--json` into /dev/null: the recorder's own cost is the difference.",
        "",
    ]
    if any(r["stderr"] for r in runs):
        lines += ["stderr: " + "; ".join(r["stderr"] for r in runs if r["stderr"]), ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
