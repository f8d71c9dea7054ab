"""The recorder under a storm: ``proctop --record DIR --only all`` while bench/storm.c forks as fast as it can.

Run as root on Linux 6.6+ from the repository: ``python bench/record_bench.py [--n 200000]``
(with the package importable: the project's venv, or PYTHONPATH=.). Measures, per run:

- the storm's rate (processes/s, from storm.c's own clock);
- proctop's CPU (schedstat run time of all its threads, as bench.py measures it) per 10,000 processes;
- bytes proctop wrote (``wchar`` of /proc/PID/io: every write(2), i.e. the segments) per second and per event;
- the largest total size of DIR's segments seen (sampled every 50 ms) against ``--record-max-size``;
- completeness: the events in the record against ``proctop_events_total`` (what proctop received,
  scraped from ``--metrics`` just before it is stopped), and the storm's pids found as exits.

Three configurations, alternated over rounds: ``--json >/dev/null`` as the baseline, a bound
large enough to keep everything (completeness), and a small one that the storm overflows many
times (the bound holds while the oldest segments go).
Writes bench/record_results.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
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
from proctop.sinks.record import CaptureLines, parse_size, segment_paths  # noqa: E402

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
    settle(proc.pid, minimum=1.0, timeout=5)  # a shared machine may never be quiet: the per-event figure copes
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
    cpu0, w0, before = cpu_ns(proc.pid), wchar(proc.pid), received(port)[0]
    gt = workdir / "gt.txt"
    out = subprocess.run(
        [str(storm), "spawn", str(n), str(gt), "--fail", "0.01", "--parallel", str(parallel)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    settle(proc.pid, minimum=1.5, timeout=15)  # proctop has caught up and flushed (once a second)
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
        "bytes_per_event": (w1 - w0) / max(got_events - before, 1),
        "us_per_event": (cpu1 - cpu0) / 1e3 / max(got_events - before, 1),
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
    ap.add_argument("--n", type=int, default=100_000, help="processes per storm (default 100000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three runs, order rotated (default 3)")
    ap.add_argument("--parallel", type=int, default=2, help="storm spawner processes (default 2)")
    ap.add_argument("--small", default="1M", help="the bound the storm overflows (default 1M)")
    args = ap.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    storm = build_storm()
    configs: list[str | None] = [None, "1G", args.small]
    runs: dict[str | None, list[dict]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="proctop-record-bench-") as tmp:
        for i in range(args.rounds):
            for c in configs[i % 3 :] + configs[: i % 3]:  # drift on a shared machine hits all alike
                run_dir = Path(tmp) / f"r{i}"
                run_dir.mkdir(exist_ok=True)
                runs[c].append(one_run(storm, args.n, args.parallel, c, run_dir))
    write_markdown(runs, args, machine_info())
    return 0


def median(values) -> float:
    return statistics.median(values)


def write_markdown(runs: dict, args, machine: dict) -> None:
    lines = [
        "# Recording under a storm (`proctop --record DIR --only all`)",
        "",
        f"{machine['date']}; {machine['nproc']} cores ({machine['cpu']}), Linux {machine['kernel']}, "
        f"Python {machine['python']}; a machine shared with other work, so the rates vary between runs. "
        f"`python bench/record_bench.py --n {args.n} --rounds {args.rounds}`: bench/storm.c forking "
        f"{args.n:,} processes as fast as it can ({args.parallel} spawners, 1% failing) while proctop watches "
        "`--only all` (root, so at nice -10); each configuration once per round, the order rotated. "
        "Medians (min-max) over the rounds.",
        "",
        "| proctop | storm rate | proctop CPU | CPU per 10,000 processes | CPU per event | write rate | bytes/event "
        "| largest DIR seen | segments at the end | received = recorded | storm's exits in the record | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def spread(rs, key, fmt):
        vals = [r[key] for r in rs]
        return f"{fmt(median(vals))} ({fmt(min(vals))}-{fmt(max(vals))})"

    for config, rs in runs.items():
        name = f"`--record DIR --record-max-size {config}`" if config else "`--json >/dev/null` (baseline)"
        row = [
            name,
            spread(rs, "rate", lambda v: f"{v:,.0f}/s"),
            spread(rs, "cpu_share", lambda v: f"{v:.0%}"),
            spread(rs, "cpu_per_10k", lambda v: f"{v:.2f} s"),
            spread(rs, "us_per_event", lambda v: f"{v:.1f} us"),
        ]
        if config is None:
            row += ["", "", "", "", "", ""]
        else:
            bound = parse_size(config)
            peak = max(r["peak_dir_bytes"] for r in rs)
            row += [
                spread(rs, "write_rate", lambda v: f"{v / 1e3:.0f} kB/s"),
                spread(rs, "bytes_per_event", lambda v: f"{v:.1f}"),
                f"{peak:,} B of {bound:,} ({'within' if peak <= bound else 'OVER'})",
                ", ".join(str(r["segments"]) for r in rs),
                "n/a (oldest deleted)"
                if bound < 100 * 2**20
                else f"{sum(r['recorded'] >= r['received'] for r in rs)}/{len(rs)} runs",
                "n/a" if bound < 100 * 2**20 else ", ".join(f"{r['storm_exits_recorded']:.2%}" for r in rs),
            ]
        row.append(str(sum(r["lost_reported"] for r in rs)))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "received = `proctop_events_total` summed (every event proctop read), scraped just before proctop is"
        " stopped; recorded = event lines replayed from DIR afterwards (at least received: the machine's own"
        " processes between the scrape and the stop add a few). Storm's exits: the storm's ground truth (pid"
        " of every child, as a multiset since pids wrap) found as `exit` events in the record. Write rate:"
        " `wchar` of /proc/PID/io (every write(2) proctop made: the segments) over the storm's duration."
        " CPU per event: proctop's CPU over the events it received meanwhile (the machine's other processes"
        " included: on a shared machine the steadier figure)."
        " Largest DIR: total size of the segments, sampled every 50 ms. The baseline is the same storm"
        " watched by `--json` into /dev/null: the recorder's own cost is the difference.",
        "",
    ]
    errs = [r["stderr"] for rs in runs.values() for r in rs if r["stderr"]]
    if errs:
        lines += ["stderr: " + "; ".join(errs), ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
