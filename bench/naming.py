"""Issue 10's targets, each beside forkstat's figure from the same run: is every process named, at forkstat's cost?

Run as root, with an interpreter that has proctop's dependencies (forkstat is
run as root; proctop as uid 65534 where the target says so), about 6 minutes:

    sudo .venv/bin/python bench/naming.py [--rounds 3] [--sections argv,latency,cpu,lifetimes] [--json out.json]

Sections (contenders alternate within a section, so drift hits both alike):

1. **argv, 200 at once**: a shell loop starts 200 ``/bin/true TAG-i`` (and,
   apart, 200 ``sh -c 'exit 0' TAG-i``) in the background and waits; share
   whose argv was printed. proctop as uid 65534 ``--only exec,exit``,
   forkstat ``-e all`` as root.
2. **argv under a storm**: ``storm spawn --exec --rate 1000 --sleep-us 1000``
   (every child lives >= 1 ms), the same two contenders.
3. **exec -> /proc read latency**, uid 65534: proctop's from the kernel's
   event timestamp to the end of its /proc read (a ``ConnectorSource`` in a
   child process, its snapshot timed); forkstat prints no read time, so its
   distribution is bounded from outside: the share of children living L us
   whose argv it printed is P(latency < L), for both.
4. **CPU per event**, root: ``--only all`` and ``--only nonzero-exit`` against
   ``forkstat -e all`` on the fork storm and the exec storm (bench.py's method:
   schedstat of every thread, idle rate subtracted).
6. **Failures named** (issue 19): every child of ``storm spawn --exec --fail 1``
   fails after living L (no sleep: well under 1 ms; 3 ms; 20 ms); the share
   named with its argv (its TAG-i) at its exit by ``proctop --only
   nonzero-exit`` (names on, and ``--names off``), beside the share forkstat
   printed the argv of at exec, and proctop's wrong names (an exit named with
   another child's TAG-i), all as root; and the CPU each took.
5. **Lifetimes**: proctop (uid 65534, ``fork,exec,exit``) and forkstat watching
   the same exec storm at once; per pid, |proctop's lifetime - forkstat's|.
   forkstat prints milliseconds, so "within 1 ms" allows its 0.5 ms rounding.

Prints a Markdown table of every target with both figures and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench as suite  # bench/bench.py: Env, Watcher, storm_run, the storm binary
from bench import NOBODY, OUT, Env, Watcher, log, measure_idle, run_storm, storm_run

FORKSTAT_LINE = re.compile(rb"^\S+ (fork|exec|exit|comm|uid|gid|sid|ptrce|core|clone)\s+(\d+) ?(.*)$")
FORKSTAT_EXIT = re.compile(rb"^\s*\S+\s+([\d.]+)s (.*)$")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / max(whole, 1):.1f}%)"


# --- reading what each watcher printed ------------------------------------------


def forkstat_seen(w: Watcher) -> tuple[dict[int, bytes], dict[int, float]]:
    """pid -> the argv forkstat printed at exec; pid -> the lifetime it printed at exit."""
    argv: dict[int, bytes] = {}
    life: dict[int, float] = {}
    for raw in w.lines():
        m = FORKSTAT_LINE.match(raw.rstrip(b"\n"))
        if not m:
            continue
        kind, pid, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind == b"exec":
            argv[pid] = rest.strip()
        elif kind == b"exit":
            e = FORKSTAT_EXIT.match(rest)
            if e:
                life[pid] = float(e.group(1))
    return argv, life


def proctop_seen(w: Watcher) -> tuple[dict[int, bytes], dict[int, float]]:
    """The same from proctop's JSON lines (argv joined with spaces, as forkstat prints it)."""
    argv: dict[int, bytes] = {}
    life: dict[int, float] = {}
    for raw in w.lines():
        try:
            d = json.loads(raw)
        except ValueError:
            continue
        kind = d.get("event")
        if kind == "exec" and d.get("cmdline"):
            argv[d["tgid"]] = " ".join(d["cmdline"]).encode("utf-8", "surrogateescape")
        elif kind == "exit" and d.get("lifetime") is not None:
            life[d["tgid"]] = d["lifetime"]
    return argv, life


def seen(w: Watcher) -> tuple[dict[int, bytes], dict[int, float]]:
    return forkstat_seen(w) if w.kind == "forkstat" else proctop_seen(w)


def tags_captured(w: Watcher, tag: str) -> set[str]:
    """The TAG-i words that ended an argv the watcher printed."""
    argv, _ = seen(w)
    prefix = tag.encode() + b"-"
    return {cmd.rsplit(b" ", 1)[-1].decode() for cmd in argv.values() if cmd.rsplit(b" ", 1)[-1].startswith(prefix)}


def watched(w: Watcher, work) -> None:
    """Start ``w``, run ``work()``, wait until ``w`` is quiet, stop it."""
    w.start()
    try:
        work()
        suite.settle(w.pid)
    finally:
        w.stop()


# --- 1, 2: argv captured ------------------------------------------------------------


#: The 200-process workloads: a shell loop starts them in the background, each exits at once.
BURSTS = {
    "true": "/bin/true {tag}-$i",  # ~0.5 ms from exec to exit (dynamic loading only)
    "sh": "sh -c 'exit 0' {tag}-$i",  # ~1 ms: a shell that starts and exits ($0 carries the tag)
}


def burst(tag: str, program: str, n: int = 200) -> None:
    cmd = BURSTS[program].format(tag=tag)
    loop = f"i=0; while [ $i -lt {n} ]; do {cmd} & i=$((i+1)); done; wait"
    subprocess.run(["sh", "-c", loop], check=True, cwd="/")


def section_argv(env: Env, rounds: int, storm_n: int, user: str = "nobody") -> dict:
    who = "uid 65534" if user == "nobody" else user
    contenders = [
        Watcher(env, f"proctop exec,exit {who}", "proctop", "exec,exit", user),
        Watcher(env, "forkstat -e all root", "forkstat"),
    ]
    out: dict = {"burst": {}, "storm": {}}
    for r in range(rounds):
        for w in contenders if r % 2 == 0 else contenders[::-1]:
            for program in BURSTS:
                tag = env.next_tag()
                watched(w, lambda tag=tag, program=program: burst(tag, program))
                got = len(tags_captured(w, tag))
                out["burst"].setdefault(program, {}).setdefault(w.name, []).append(got / 200)
                w.remove()
            tag = env.next_tag()
            box: dict = {}

            def storm(tag=tag, box=box) -> None:
                box.update(run_storm(env, storm_n, kind="exec", tag=tag, rate=1000))

            watched(w, storm)
            got = len(tags_captured(w, tag))
            out["storm"].setdefault(w.name, []).append(got / box["n"])
            log(
                f"argv r{r} {w.name}: bursts {[round(v[w.name][-1], 3) for v in out['burst'].values()]} "
                f"storm {got}/{box['n']} ({box['rate']:.0f}/s)"
            )
            w.remove()
    return out


# --- 3: latency -----------------------------------------------------------------------


LATENCY_CHILD = r"""
import json, os, select, sys, time
from proctop.kernel.probe import probe
from proctop.model.kinds import parse_mask
import proctop.sources.connector as connector
import proctop.sources.reader as reader

reads = {}
real = reader.snapshot
def timed(pid, **kw):
    snap = real(pid, **kw)
    reads.setdefault(pid, time.monotonic_ns())
    return snap
reader.snapshot = timed
import proctop.sources.creader as creader
real_c = creader.CReader._read
at = 6 if os.environ.get("BENCH_LATENCY_AT") == "argv" else 0  # when argv was in hand, or all five reads
def timed_c(self, ev, argv, pre):  # the compiled reader read in its thread: when it ended
    if pre is not None and argv:
        reads.setdefault(ev.tgid, pre[at])
    return real_c(self, ev, argv, pre)
creader.CReader._read = timed_c
src = connector.ConnectorSource(probe(), parse_mask("exec,exit"))
src.start()
print("ready", flush=True)
lat = []
while True:
    for ev in src.poll(0.1):
        if ev.event == "exec" and ev.tgid in reads:  # every exec seen (the storm's, on a quiet machine)
            kernel_ns = round((ev.ts - src.enricher.clock_offset) * 1e9)
            lat.append((reads.pop(ev.tgid) - kernel_ns) / 1e3)
    if sys.stdin in select.select([sys.stdin], [], [], 0)[0]:
        sys.stdin.readline()
        break
src.close()
print(json.dumps(lat))
"""


#: The floor of a reader process of its own (issue 10's candidate): one Python
#: thread, nothing else in the process, that polls, recvs, decodes and reads
#: argv, and no consumer to share a GIL with.
BARE_CHILD = r"""
import json, select, sys, time
from proctop.kernel.probe import probe
from proctop.kernel.protocol import PROC_EVENT_EXEC, DecodeStats, decode_buffer
from proctop.model.kinds import parse_mask
from proctop.kernel.socket import FilteredProcSocket
from proctop.model.procfs import read_cmdline

cap = probe()
sock = FilteredProcSocket.open(idx=cap.idx, val=cap.val, groups=cap.groups, legacy=cap.legacy)
sock.raw.setblocking(False)
sock.listen(parse_mask("exec,exit"))
raw, buf, stats = sock.raw, bytearray(65536), DecodeStats()
poller = select.poll()
poller.register(raw.fileno(), select.POLLIN)
poller.register(sys.stdin.fileno(), select.POLLIN)
print("ready", flush=True)
lat = []
while True:
    ready = dict(poller.poll(250))
    if sys.stdin.fileno() in ready:
        break
    try:
        while True:
            n, _ = raw.recvfrom_into(buf)
            for ev in decode_buffer(buf, n, stats, cap.idx):
                if ev.what == PROC_EVENT_EXEC:
                    read_cmdline(ev.tgid)
                    lat.append((time.monotonic_ns() - ev.ts_ns) / 1e3)
    except BlockingIOError:
        pass
print(json.dumps(lat))
"""


#: Who the latency children run as (``--latency-user``): uid 65534 as issue 10 asked, or
#: root where the kernel refuses a non-root subscriber (Linux 6.18 here).
LATENCY_USER = {"nobody": {"user": NOBODY, "group": NOBODY, "extra_groups": []}, "root": {}}


def proctop_latency(
    env: Env,
    n: int,
    rate: float,
    code: str = LATENCY_CHILD,
    argv: list[str] | None = None,
    user: str = "nobody",
    reader: str = "",
    at: str = "",
) -> list[float]:
    """exec -> end of /proc read, us, in a ConnectorSource (reads timed where they happen), or in ``argv``.

    ``at="argv"``: to the end of the compiled reader's argv read (the first of its five, and
    the one the floor makes), not of all five.
    """
    child_env = dict(env.env, PROCTOP_READER=reader, BENCH_LATENCY_AT=at) if reader else env.env
    child = subprocess.Popen(
        argv or [env.python, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env,
        cwd="/",
        **LATENCY_USER[user],
    )
    assert child.stdin is not None and child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("latency child did not start")
    time.sleep(0.5)
    run_storm(env, n, kind="exec", tag=env.next_tag(), rate=rate)
    time.sleep(0.5)
    child.stdin.write("stop\n")
    child.stdin.flush()
    out = child.stdout.read()
    child.wait(10)
    return sorted(json.loads(out.strip().splitlines()[-1]))


def quantile(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def section_latency(env: Env, n: int, lives_us: list[int], rounds: int, user: str = "nobody") -> dict:
    lat: list[float] = []
    lat_argv: list[float] = []
    lat_py: list[float] = []
    bare: list[float] = []
    floor: list[float] = []
    exec_mask = "0x2"  # PROC_EVENT_EXEC
    for _ in range(rounds):  # alternating: proctop (C reader, Python reader), the bare Python reader, the floor
        lat += proctop_latency(env, n, rate=200, user=user, reader="c")
        lat_argv += proctop_latency(env, n, rate=200, user=user, reader="c", at="argv")
        lat_py += proctop_latency(env, n, rate=200, user=user, reader="python")
        bare += proctop_latency(env, n, rate=200, code=BARE_CHILD, user=user)
        floor += proctop_latency(env, n, rate=200, argv=[str(env.storm), "readlat", exec_mask], user=user)
    lat.sort()
    lat_argv.sort()
    lat_py.sort()
    bare.sort()
    floor.sort()
    for name, xs in (
        ("proctop (C reader)", lat),
        ("proctop (C reader) to argv", lat_argv),
        ("proctop (Python reader)", lat_py),
        ("bare Python reader", bare),
        ("bare C reader", floor),
    ):
        log(f"latency {name} ({user}): n={len(xs)} p50 {quantile(xs, 0.5):.0f} us p99 {quantile(xs, 0.99):.0f} us")
    cdf: dict = {}
    proctop_name = "proctop exec,exit uid 65534" if user == "nobody" else "proctop exec,exit root"
    contenders = [
        Watcher(env, proctop_name, "proctop", "exec,exit", user),
        Watcher(env, "forkstat -e all root", "forkstat"),
    ]
    for life in lives_us:
        for w in contenders:
            tag = env.next_tag()
            box: dict = {}

            def storm(tag=tag, box=box, life=life) -> None:
                box.update(storm_with_life(env, n, tag, life))

            watched(w, storm)
            got = len(tags_captured(w, tag))
            cdf.setdefault(w.name, {})[life] = got / box["n"]
            log(f"latency cdf {w.name}: lives {life} us: {got}/{box['n']}")
            w.remove()
    return {
        "proctop_us": {q: quantile(lat, q) for q in (0.5, 0.9, 0.99, 0.999)} | {"max": lat[-1] if lat else None},
        "proctop_python_reader_us": {q: quantile(lat_py, q) for q in (0.5, 0.9, 0.99)},
        "proctop_argv_us": {q: quantile(lat_argv, q) for q in (0.5, 0.9, 0.99)},
        "bare_reader_us": {q: quantile(bare, q) for q in (0.5, 0.9, 0.99)},
        "bare_c_reader_us": {q: quantile(floor, q) for q in (0.5, 0.9, 0.99)},
        "user": user,
        "samples": len(lat),
        "captured_by_life": cdf,
    }


def spawn_storm(env: Env, n: int, tag: str, *, fail: int, rate: int, sleep_us: int) -> dict:
    """``storm spawn``: n tagged children exec'd at ``rate``/s, each exiting ``fail`` after ``sleep_us``;
    its JSON figures, with ``rows`` the ground truth's (pid, ...) lines."""
    gt = OUT / f"gt-{tag}.txt"
    cmd = [str(env.storm), "spawn", str(n), str(gt), "--fail", str(fail), "--tag", tag, "--exec", "--rate", str(rate)]
    if sleep_us:
        cmd += ["--sleep-us", str(sleep_us)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    info = json.loads(res.stdout)
    info["rows"] = [tuple(map(int, line.split())) for line in gt.read_text().splitlines()]
    gt.unlink()
    return info


def storm_with_life(env: Env, n: int, tag: str, life_us: int) -> dict:
    return spawn_storm(env, n, tag, fail=0, rate=200, sleep_us=life_us)


# --- 4: CPU -----------------------------------------------------------------------------


def section_cpu(env: Env, rounds: int, n: int) -> dict:
    contenders = [
        Watcher(env, "proctop all", "proctop", "all", reader="c"),
        Watcher(env, "proctop nonzero-exit", "proctop", "nonzero-exit", reader="c"),
        Watcher(env, "proctop all (Python reader)", "proctop", "all", reader="python"),
        Watcher(env, "proctop nonzero-exit (Python reader)", "proctop", "nonzero-exit", reader="python"),
        Watcher(env, "forkstat -e all", "forkstat"),
    ]
    idle = {w.name: measure_idle(env, w, 2.0) for w in contenders}
    runs: dict = {}
    plan = [(w, kind) for kind in ("fork", "exec") for w in contenders]
    for r in range(rounds):
        k = r * 2 % len(plan)
        for w, kind in plan[k:] + plan[:k]:
            rec = storm_run(env, w, idle[w.name], n, kind)
            runs.setdefault(kind, {}).setdefault(w.name, []).append(rec)
            log(f"cpu r{r} {kind} {w.name}: {rec['cpu_per_10k']:.3f} s/10k ({rec['storm_rate']:.0f}/s)")
    summary: dict = {}
    for kind, by in runs.items():
        for name, recs in by.items():
            summary.setdefault(kind, {})[name] = statistics.median(x["cpu_per_10k"] for x in recs)
    return {
        "summary": summary,
        "runs": {k: {n: [x["cpu_per_10k"] for x in v] for n, v in b.items()} for k, b in runs.items()},
    }


# --- 5: lifetimes -------------------------------------------------------------------------


def section_lifetimes(env: Env, n: int) -> dict:
    pt = Watcher(env, "proctop fork,exec,exit uid 65534", "proctop", "fork,exec,exit", "nobody")
    fs = Watcher(env, "forkstat -e all root", "forkstat")
    tag = env.next_tag()
    pt.start()
    try:
        fs.start()
        try:
            run_storm(env, n, kind="exec", tag=tag, rate=500)
            suite.settle(pt.pid)
            suite.settle(fs.pid)
        finally:
            fs.stop()
    finally:
        pt.stop()
    _, plife = proctop_seen(pt)
    _, flife = forkstat_seen(fs)
    pt.remove()
    fs.remove()
    both = sorted(set(plife) & set(flife))
    diffs = sorted(abs(plife[p] - flife[p]) for p in both)
    within = sum(1 for d in diffs if d <= 0.0015)  # 1 ms, plus forkstat's rounding to whole ms
    longer = sum(1 for p in both if plife[p] - flife[p] > 0.0015)
    return {
        "compared": len(both),
        "within_1ms": within,
        "proctop_longer": longer,  # of those beyond: proctop's lifetime the longer one
        "median_diff_ms": 1e3 * statistics.median(diffs) if diffs else None,
        "p99_diff_ms": 1e3 * diffs[min(len(diffs) - 1, int(0.99 * len(diffs)))] if diffs else None,
        "max_diff_ms": 1e3 * diffs[-1] if diffs else None,
    }


# --- 6: failures named under --only nonzero-exit -------------------------------------------


#: Lifetime classes of issue 19: the storm child's sleep, and the class it falls in.
FAIL_LIVES = {"< 1 ms": 0, "1-10 ms": 3000, ">= 10 ms": 20000}


def failing_storm(env: Env, n: int, tag: str, sleep_us: int) -> dict:
    return spawn_storm(env, n, tag, fail=1, rate=300, sleep_us=sleep_us)


def failures_named(w: Watcher, storm: dict, tag: str) -> tuple[int, int]:
    """(failing children named with their own argv at exit, named with another's) from proctop's JSON."""
    pid_of = {f"{tag}-{idx}": pid for pid, st, idx in storm["rows"] if st}
    right = wrong = 0
    for raw in w.lines():
        try:
            d = json.loads(raw)
        except ValueError:
            continue
        cl = d.get("cmdline")
        if d.get("event") != "exit" or not cl or not str(cl[-1]).startswith(tag + "-"):
            continue
        if pid_of.get(cl[-1]) == d.get("tgid"):
            right += 1
        else:
            wrong += 1
    return right, wrong


def section_failnames(env: Env, rounds: int, n: int) -> dict:
    contenders = [
        Watcher(env, "proctop nonzero-exit", "proctop", "nonzero-exit"),
        Watcher(env, "proctop nonzero-exit --names off", "proctop", "nonzero-exit", extra=("--names", "off")),
        Watcher(env, "forkstat -e all", "forkstat"),
    ]
    idle = {w.name: measure_idle(env, w, 2.0) for w in contenders}
    out: dict = {}
    for r in range(rounds):
        for life, sleep_us in FAIL_LIVES.items():
            for w in contenders if r % 2 == 0 else contenders[::-1]:
                tag = env.next_tag()
                w.start()
                try:
                    c0, t0 = suite.cpu_ns(w.pid), time.monotonic()
                    storm = failing_storm(env, n, tag, sleep_us)
                    suite.settle(w.pid)
                    c1, t1 = suite.cpu_ns(w.pid), time.monotonic()
                finally:
                    w.stop()
                failing = sum(1 for _, st, _ in storm["rows"] if st)
                if w.kind == "forkstat":
                    right, wrong = len(tags_captured(w, tag)), 0
                else:
                    right, wrong = failures_named(w, storm, tag)
                cpu = max(0.0, (c1 - c0) - idle[w.name] * (t1 - t0)) / 1e9
                rec = {"named": right / max(failing, 1), "wrong": wrong, "n": failing, "cpu_per_10k": cpu * 1e4 / n}
                out.setdefault(life, {}).setdefault(w.name, []).append(rec)
                log(f"failnames r{r} {life} {w.name}: argv {right}/{failing} wrong {wrong}, {cpu * 1e4 / n:.3f} s/10k")
                w.remove()
    return out


# --- report -------------------------------------------------------------------------------


def spread(xs: list[float]) -> str:
    """Median share, and the range when there was more than one round."""
    mid = statistics.median(xs)
    return f"{mid:.1%}" if len(xs) < 2 else f"{mid:.1%} ({min(xs):.1%}-{max(xs):.1%})"


def report(res: dict) -> str:
    pa, fa = "proctop exec,exit uid 65534", "forkstat -e all root"
    rows = []

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    if "argv" in res:
        a = res["argv"]
        pa = next(name for name in a["storm"] if name.startswith("proctop"))  # as uid 65534 or as root
        who = pa.removeprefix("proctop exec,exit ")
        for program, by in a["burst"].items():
            p, f = med(by[pa]), med(by[fa])
            label = f"argv, 200 `{BURSTS[program].format(tag='T')}` at once ({who} vs root)"
            rows.append((label, spread(by[pa]), spread(by[fa]), ">= forkstat", p >= f))
        p, f = med(a["storm"][pa]), med(a["storm"][fa])
        rows.append(
            (
                "argv, lives >= 1 ms, 1,000 exec/s storm",
                spread(a["storm"][pa]),
                spread(a["storm"][fa]),
                ">= 95%",
                p >= 0.95,
            )
        )
    if "latency" in res:
        lat = res["latency"]
        us = lat["proctop_us"]
        cdf = lat["captured_by_life"]
        fs_cdf = ", ".join(f"{life} us: {v:.0%}" for life, v in cdf.get(fa, {}).items())
        mine = next((v for k, v in cdf.items() if k.startswith("proctop")), {})
        pt_cdf = ", ".join(f"{life} us: {v:.0%}" for life, v in mine.items())
        who = "uid 65534" if lat.get("user", "nobody") == "nobody" else "root"
        c = lat.get("bare_c_reader_us", {})
        rows.append(
            (f"exec -> /proc read p50 ({who})", f"{us[0.5]:.0f} us", "not printed", "<= 100 us", us[0.5] <= 100)
        )
        if c:
            ratio = us[0.5] / max(c[0.5], 1e-9)
            rows.append(
                (
                    "same, against the bare C reader's p50 (recv + cmdline read: the floor)",
                    f"{ratio:.2f}x ({us[0.5]:.0f} vs {c[0.5]:.0f} us)",
                    "",
                    "<= 1.25x",
                    ratio <= 1.25,
                )
            )
        rows.append(
            (f"exec -> /proc read p99 ({who})", f"{us[0.99]:.0f} us", "not printed", "<= 1 ms", us[0.99] <= 1000)
        )
        av = lat.get("proctop_argv_us")
        if av and c:
            ratio = av[0.5] / max(c[0.5], 1e-9)
            rows.append(
                (
                    "exec -> argv in hand p50 (the C reader's first read; the floor reads only argv)",
                    f"{ratio:.2f}x ({av[0.5]:.0f} vs {c[0.5]:.0f} us; p99 {av[0.99]:.0f} us)",
                    "",
                    "<= 1.25x",
                    ratio <= 1.25,
                )
            )
        py = lat.get("proctop_python_reader_us")
        if py:
            rows.append(
                (
                    "same, proctop's Python reader",
                    f"p50 {py[0.5]:.0f} us ({py[0.5] / max(c.get(0.5, 1e-9), 1e-9):.2f}x the floor), "
                    f"p90 {py[0.9]:.0f} us, p99 {py[0.99]:.0f} us",
                    "",
                    "",
                    None,
                )
            )
        b = lat["bare_reader_us"]
        rows.append(
            (
                "same, a bare one-thread Python reader; the bare C reader",
                f"p50 {b[0.5]:.0f} us, p90 {b[0.9]:.0f} us, p99 {b[0.99]:.0f} us; "
                f"C p50 {c.get(0.5, float('nan')):.0f} us, p90 {c.get(0.9, float('nan')):.0f} us, "
                f"p99 {c.get(0.99, float('nan')):.0f} us",
                "",
                "",
                None,
            )
        )
        rows.append(("argv read of a child living L (P(latency < L))", pt_cdf, fs_cdf, "", None))
    if "cpu" in res:
        s = res["cpu"]["summary"]
        for kind in ("fork", "exec"):
            f = s[kind]["forkstat -e all"]
            p = s[kind]["proctop all"]
            rows.append(
                (
                    f"`--only all` CPU, {kind} storm (s/10k)",
                    f"{p:.3f} ({p / f:.2f}x)",
                    f"{f:.3f}",
                    "<= 1x (2x first)",
                    p <= f,
                )
            )
            z = s[kind]["proctop nonzero-exit"]
            rows.append(
                (
                    f"`--only nonzero-exit` CPU (names on), {kind} storm",
                    f"{z:.3f} (1/{f / max(z, 1e-9):.1f})",
                    f"{f:.3f}",
                    "<= 1/3",
                    z <= f / 3,
                )
            )
            pa_py = s[kind].get("proctop all (Python reader)")
            pz_py = s[kind].get("proctop nonzero-exit (Python reader)")
            if pa_py is not None and pz_py is not None:
                rows.append(
                    (
                        f"same two, the Python reader, {kind} storm",
                        f"all {pa_py:.3f} ({pa_py / f:.2f}x); nonzero-exit {pz_py:.3f} (1/{f / max(pz_py, 1e-9):.1f})",
                        f"{f:.3f}",
                        "",
                        None,
                    )
                )
    if "failnames" in res:
        on, off, fs = "proctop nonzero-exit", "proctop nonzero-exit --names off", "forkstat -e all"
        for life, by in res["failnames"].items():
            p = [x["named"] for x in by[on]]
            f = [x["named"] for x in by[fs]]
            wrong = sum(x["wrong"] for x in by[on]) + sum(x["wrong"] for x in by[off])
            goal = ">= forkstat" if life == "< 1 ms" else ">= 95%"
            met = med(p) >= med(f) if life == "< 1 ms" else med(p) >= 0.95
            names_off = spread([x["named"] for x in by[off]])
            label = f"argv of failures living {life}, `--only nonzero-exit` (names off: {names_off}; wrong {wrong})"
            rows.append((label, spread(p), spread(f), goal, met and wrong == 0))
            cpu = {name: med([x["cpu_per_10k"] for x in by[name]]) for name in (on, off, fs)}
            rows.append(
                (
                    f"CPU s/10k failing execs living {life} (names off: {cpu[off]:.3f})",
                    f"{cpu[on]:.3f} ({cpu[on] / max(cpu[fs], 1e-9):.2f}x)",
                    f"{cpu[fs]:.3f}",
                    "",
                    None,
                )
            )
    if "lifetimes" in res:
        lt = res["lifetimes"]
        share = lt["within_1ms"] / max(lt["compared"], 1)
        rows.append(
            (
                "lifetime within 1 ms of forkstat's",
                pct(lt["within_1ms"], lt["compared"]),
                f"diff median {lt['median_diff_ms']:.2f} ms, p99 {lt['p99_diff_ms']:.2f} ms, "
                f"beyond 1 ms: {lt['compared'] - lt['within_1ms']} ({lt['proctop_longer']} longer in proctop)",
                "all",
                share >= 0.99,
            )
        )
    lines = [
        f"{res['date']}; load average (1, 5, 15 min) at the start of each section: "
        + ", ".join(f"{name} {load}" for name, load in res["load"].items())
        + f"; at the end {res['load_end']}",
        "",
        "| target | proctop | forkstat | goal | met |",
        "|---|---|---|---|---|",
    ]
    for name, p, f, goal, met in rows:
        lines.append(f"| {name} | {p} | {f} | {goal} | {'-' if met is None else 'yes' if met else '**no**'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternations per section (default 3)")
    ap.add_argument("--sections", default="argv,latency,cpu,lifetimes,failnames")
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument(
        "--latency-user",
        choices=sorted(LATENCY_USER),
        default="nobody",
        help="who the latency section's readers run as (root where the kernel refuses others)",
    )
    ap.add_argument(
        "--argv-user",
        choices=("nobody", "root"),
        default="nobody",
        help="who proctop runs as in the argv section (root where the kernel refuses others)",
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("naming: run as root (forkstat; proctop is run as uid 65534 where the target says so)", file=sys.stderr)
        return 2
    if not suite.shutil.which("forkstat"):
        print("naming: forkstat is not installed (apt-get install forkstat)", file=sys.stderr)
        return 2
    sections = set(args.sections.split(","))
    env = Env(quick=False)
    res: dict = {"load_start": loadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    plan = {
        "argv": lambda: section_argv(env, args.rounds, 3000, args.argv_user),
        "latency": lambda: section_latency(env, 600, [100, 300, 1000], args.rounds, args.latency_user),
        "cpu": lambda: section_cpu(env, args.rounds, 10000),
        "lifetimes": lambda: section_lifetimes(env, 2000),
        "failnames": lambda: section_failnames(env, args.rounds, 600),
    }
    res["load"] = {}
    try:
        for name, run in plan.items():
            if name in sections:
                res["load"][name] = loadavg()  # a shared machine: say how busy it was
                res[name] = run()
    finally:
        env.cleanup()
    res["load_end"] = loadavg()
    if args.json:
        with contextlib.suppress(OSError):
            Path(args.json).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
