"""The command line as users run it: real processes, real signals, real pipes."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, collect, proctop_cmd, run

from proctop.kernel import probe as probe_mod
from proctop.kernel.probe import ProbeError, probe

NEUTRAL = "/"  # run the installed proctop, not ./proctop from the source tree


def start(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        proctop_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL, **kw
    )


def header_of(proc: subprocess.Popen) -> dict:
    """Wait for the header line: from then on the subscription is live."""
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    head = json.loads(line)
    assert "event" not in head and head["proctop"]
    return head


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--only", "bogus", "--json"], "unknown event 'bogus'"),
        (["--only", "", "--json"], "empty event list"),
        (["--duration", "-1", "--json"], "--duration"),
        (["--duration", "soon", "--json"], "not a number"),
        (["--count", "-3", "--json"], "--count"),
        (["--replay", "/nonexistent/capture.jsonl", "--json"], "replay file not found"),
        (["--history", "0"], "--history"),
        # huge numbers are usage errors, not tracebacks or endless runs (issue 8)
        (["--history", "99999999999999999999999"], "--history: must be a number from 1 to 10000000"),
        (["--history", "9" * 5000], "--history: must be a number from 1"),
        (["--count", "99999999999999999999999", "--json"], "--count: must be a number from 0"),
        (["--count", "1e3", "--json"], "--count: not a whole number"),
        (["--duration", "1e400", "--json"], "--duration: must be a number from 0"),
        (["--duration", "inf", "--json"], "--duration: must be a number from 0"),
        (["--duration", "nan", "--json"], "--duration: must be a number from 0"),
        (["--duration", "99999999999", "--json"], "--duration: must be a number from 0 to 315360000"),
        (["--replay", "/", "--json"], "no proctop records (proctop-*.jsonl.gz) in /"),  # a directory: a --record DIR
        (["--replay", "/dev/zero", "--json"], "/dev/zero:1: not a text file (NUL byte)"),
        (["--frobnicate"], "unrecognized arguments"),
        # a mistyped option gets the closest real one (difflib against the parser's options)
        (["--jsno"], "unrecognized arguments: --jsno (did you mean --json?)"),
        (["--summary", "--duraton=3"], "unrecognized arguments: --duraton=3 (did you mean --duration?)"),
        (["--json", "--hisotry", "5"], "(did you mean --history?)"),
        # one example port everywhere: the README's
        (["--metrics", "nowhere", "--json"], "--metrics: not ADDR:PORT: 'nowhere' (example: 127.0.0.1:9785"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    proc = subprocess.run(proctop_cmd(*args), capture_output=True, text=True, cwd=NEUTRAL, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("proctop: ")
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_replay_line_names_file_and_line(tmp_path):
    capture = tmp_path / "bad.jsonl"
    capture.write_text('{"ts": 1, "event": "exit", "pid": 5, "tgid": 5}\n{"ts": 2, "event": \n')
    proc = subprocess.run(proctop_cmd("--json", "--replay", str(capture)), capture_output=True, text=True, cwd=NEUTRAL)
    assert proc.returncode == 2
    assert proc.stderr == f"proctop: {capture}:2: not valid JSON (Expecting value)\n"
    assert [json.loads(line).get("pid") for line in proc.stdout.splitlines()] == [None, 5]  # streamed up to it


def test_version():
    proc = subprocess.run(proctop_cmd("--version"), capture_output=True, text=True, cwd=NEUTRAL)
    assert proc.returncode == 0 and proc.stdout.startswith("proctop ")


@pytest.mark.kernel
def test_json_only_nonzero_exit_prints_failures_as_they_happen():
    proc = start("--json", "--only", "nonzero-exit")
    head = header_of(proc)
    assert head["source"] == "native" and head["mask"] == ["nonzero-exit"]
    ok_pid = run(["true"])
    pid = run(["sh", "-c", "exit 42"])
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # other processes on the machine may fail too
        seen.append(json.loads(proc.stdout.readline()))
        if seen[-1]["pid"] == pid:
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    mine = seen[-1]
    assert (mine["pid"], mine["event"], mine["exit_code"], mine["ppid"]) == (pid, "exit", 42, os.getpid())
    assert all(ev["event"] == "exit" and (ev["exit_code"] or ev["signal"]) for ev in seen)
    assert ok_pid not in {ev["pid"] for ev in seen}


@pytest.mark.kernel
def test_count_stops_after_n_events():
    proc = start("--json", "--only", "exit", "--count", "3")
    header_of(proc)
    for _ in range(5):
        run(["true"])
    lines = [proc.stdout.readline() for _ in range(3)]  # not communicate(): it skips what readline buffered
    assert proc.wait(timeout=10) == 0, proc.stderr.read()
    assert proc.stdout.read() == ""
    assert all(json.loads(line)["event"] == "exit" for line in lines)


@pytest.mark.kernel
def test_duration_stops_in_time():
    t0 = time.monotonic()
    proc = subprocess.run(
        proctop_cmd("--json", "--duration", "1"), capture_output=True, text=True, cwd=NEUTRAL, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    assert 1.0 <= time.monotonic() - t0 < 10
    assert json.loads(proc.stdout.splitlines()[0])["proctop"]


@pytest.mark.kernel
def test_replay_round_trip(tmp_path):
    capture = tmp_path / "capture.jsonl"
    with capture.open("w") as out:
        proc = subprocess.Popen(
            proctop_cmd("--json", "--only", "fork,exec,exit"), stdout=out, stderr=subprocess.PIPE, cwd=NEUTRAL
        )
        deadline = time.monotonic() + 10
        while capture.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [run(["sh", "-c", f"exit {code}"]) for code in (0, 1, 2)]
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    recorded = capture.read_text().splitlines()[1:]
    assert {json.loads(line)["pid"] for line in recorded} >= set(pids)
    replay = subprocess.run(
        proctop_cmd("--json", "--replay", str(capture), "--only", "all"), capture_output=True, text=True, cwd=NEUTRAL
    )
    assert replay.returncode == 0, replay.stderr
    head, *replayed = replay.stdout.splitlines()
    assert json.loads(head)["source"] == "replay"
    assert [json.loads(line) for line in replayed] == [json.loads(line) for line in recorded]
    # without --only a replay shows everything recorded, clean exits included (they were dropped)
    default = subprocess.run(
        proctop_cmd("--json", "--replay", str(capture)), capture_output=True, text=True, cwd=NEUTRAL, timeout=60
    )
    head, *replayed = default.stdout.splitlines()
    assert default.returncode == 0 and json.loads(head)["mask"] == ["all"]
    assert replayed == recorded
    clean = {ev["pid"] for ev in map(json.loads, replayed) if ev["event"] == "exit" and ev["exit_code"] == 0}
    assert pids[0] in clean
    only_failures = subprocess.run(
        proctop_cmd("--json", "--replay", str(capture), "--only", "nonzero-exit"),
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
    )
    failed = [json.loads(line) for line in only_failures.stdout.splitlines()[1:]]
    assert {ev["pid"] for ev in failed} >= set(pids[1:])
    assert pids[0] not in {ev["pid"] for ev in failed}
    assert all(ev["event"] == "exit" and (ev["exit_code"] or ev["signal"]) for ev in failed)


@pytest.mark.kernel
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signals_end_cleanly(sig):
    proc = start("--json", "--only", "all")
    header_of(proc)
    run(["true"])
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err and err == ""


@pytest.mark.kernel
def test_closed_stdout_ends_cleanly():
    """`proctop --json | head -1`."""
    proc = start("--json", "--only", "all")
    header_of(proc)
    proc.stdout.close()
    for _ in range(20):
        run(["true"])
        if proc.poll() is not None:
            break
    assert proc.wait(timeout=10) == 0
    err = proc.stderr.read()
    assert err == "", err


@pytest.mark.kernel
def test_outside_the_initial_network_namespace_says_so():
    proc = subprocess.run(
        ["unshare", "--net", *proctop_cmd("--json")], capture_output=True, text=True, cwd=NEUTRAL, timeout=30
    )
    assert proc.returncode == 3
    assert "not in the initial network namespace" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_probe_not_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ProbeError, match="needs Linux"):
        probe()


@pytest.mark.kernel
def test_probe_old_kernel(monkeypatch, tmp_path):
    """Before 6.6: userspace as root; as another user the kernel's refusal (injected: the tests run as root)
    is said with the ways forward; forcing what cannot work says why."""
    monkeypatch.setattr(probe_mod.platform, "release", lambda: "6.1.0-26-amd64")
    monkeypatch.setattr(probe_mod, "KMOD_SYSFS", tmp_path / "absent")
    monkeypatch.setattr(probe_mod.os, "geteuid", lambda: 0)
    cap = probe()  # really tried: as root the bind and the 4-byte LISTEN work
    assert (cap.kind, cap.legacy) == ("userspace", True)
    monkeypatch.setattr(probe_mod.os, "geteuid", lambda: 1000)

    def refused(cap):
        return OSError(errno.EPERM, "Operation not permitted")

    only_root = r"kernel 6.1.0-26-amd64 sends process events only to root before 6.6 .*Operation not permitted"
    with pytest.raises(ProbeError, match=only_root + r".*run as root or with CAP_NET_ADMIN"):
        probe(attempt=refused)
    with pytest.raises(ProbeError, match=only_root):
        probe("userspace", attempt=refused)
    with pytest.raises(ProbeError, match=r"kernel 6.1.0-26-amd64 is older than 6.6"):
        probe("native")
    with pytest.raises(ProbeError, match=r"the proctop_cn module is not loaded"):
        probe("kmod")
    params = tmp_path / "proctop_cn" / "parameters"
    params.mkdir(parents=True)
    (params / "cn_idx").write_text("12\n")
    (params / "supported_events").write_text(str(0x80000003) + "\n")
    monkeypatch.setattr(probe_mod, "KMOD_SYSFS", tmp_path / "proctop_cn")
    cap = probe(attempt=lambda cap: None)
    assert (cap.kind, cap.idx, cap.groups, cap.legacy, cap.supported) == ("kmod", 12, 0, False, 0x80000003)
    assert probe_mod.kernel_version("6.6.0-rc1") == (6, 6)
    assert probe_mod.kernel_version("garbage") == (0, 0)


@pytest.mark.nonroot
@pytest.mark.kernel
def test_userspace_source_works_as_nonroot_on_66(nonroot_child):
    """On 6.6+ any user may send the 4-byte LISTEN: `--source userspace` is not refused (it said
    the kernel "lacks filtered non-root process events", on 6.18)."""
    from proctop.kernel.protocol import PROC_EVENT_NONZERO_EXIT
    from proctop.sources.connector import ConnectorSource

    def watch():
        cap = probe("userspace")
        source = ConnectorSource(cap, PROC_EVENT_NONZERO_EXIT)
        source.start()
        try:
            pid = run(["sh", "-c", "exit 5"])
            seen = collect(source, lambda evs: any(ev.pid == pid for ev in evs), timeout=10)
        finally:
            source.close()
        return cap.kind, cap.legacy, [(ev.event, ev.exit_code) for ev in seen if ev.pid == pid]

    assert nonroot_child(watch) == ("userspace", True, [("exit", 5)])


@pytest.mark.nonroot
@pytest.mark.kernel
def test_nonroot_refusals_name_the_real_reason(nonroot_child):
    def refusals():
        out = {}
        for force in ("kmod",):
            try:
                probe(force)
            except ProbeError as exc:
                out[force] = str(exc)
        return probe().kind, out

    kind, out = nonroot_child(refusals)
    assert kind == "native"
    if not probe_mod.KMOD_SYSFS.is_dir():
        assert "module is not loaded" in out["kmod"]


# --- outputs that fail (issue 8) ---------------------------------------------


def _pipe_fill(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    import fcntl
    import termios

    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4), "little")


SAMPLE = str(REPO / "tests" / "data" / "sample.jsonl")
LIVE_AND_REPLAY = [
    pytest.param(["--duration", "5"], id="live", marks=pytest.mark.kernel),
    pytest.param(["--replay", SAMPLE], id="replay"),
]


@pytest.mark.parametrize("args", LIVE_AND_REPLAY)
def test_full_disk_is_one_line_and_exit_1(args):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            proctop_cmd("--json", *args), stdout=full, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL, timeout=30
        )
    assert proc.returncode == 1
    assert proc.stderr == "proctop: cannot write the output: No space left on device\n"


@pytest.mark.parametrize("args", LIVE_AND_REPLAY)
def test_stdout_closed_before_start_is_quiet_exit_0(args):
    """`proctop --json >&-`: nobody to write to, nothing to say (a traceback before)."""
    proc = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *proctop_cmd("--json", *args)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL,
        timeout=30,
    )
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.kernel
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_stalled_reader_never_makes_proctop_deaf(sig):
    """A pipe nobody reads, filled by real failing processes: signals still end proctop, status 0."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            proctop_cmd("--json", "--only", "all"), stdout=w, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL
        )
        os.close(w)
        w = None
        deadline = time.monotonic() + 60
        filled = -1
        while True:  # fail processes until the pipe stops taking their events: the pipe is full
            assert time.monotonic() < deadline and proc.poll() is None
            for _ in range(20):
                run(["sh", "-c", "exit 3"])
            before, filled = filled, _pipe_fill(r)
            if filled == before and filled > 32768:
                break
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=5)  # it waited forever in write() before
        assert (proc.returncode, err) == (0, "")
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


@pytest.mark.kernel
def test_reader_gone_is_noticed_without_events():
    """`proctop --json --only coredump | head -1`: ends though no event ever comes."""
    proc = start("--json", "--only", "coredump")
    header_of(proc)
    proc.stdout.close()  # the reader is gone; nothing dumps core here
    assert proc.wait(timeout=5) == 0
    assert proc.stderr.read() == ""


@pytest.mark.kernel
def test_events_a_stalled_reader_cannot_take_are_counted_lost():
    """Past the output queue, events are dropped and reported as one `lost` once the reader is back."""
    import threading

    from proctop.kernel.protocol import PROC_EVENT_NONZERO_EXIT
    from proctop.sinks.headless import JsonLines
    from proctop.sinks.stream import run_headless
    from proctop.sources.connector import ConnectorSource

    source = ConnectorSource(probe(), PROC_EVENT_NONZERO_EXIT)
    source.start()
    r, w = os.pipe()
    stop = threading.Event()
    result = []
    lines = JsonLines(w, stop_flag=stop.is_set, count_lost=source.count_lost, queue_bytes=4096)
    runner = threading.Thread(
        target=lambda: result.append(run_headless(source, lines, stop_flag=stop.is_set)), daemon=True
    )
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while source.stats.lost == 0:  # fill the pipe (64 KiB) and then the 4 KiB queue
            assert time.monotonic() < deadline and runner.is_alive()
            for _ in range(20):
                run(["sh", "-c", "exit 3"])
        dropped = source.stats.lost
        lines = []
        with os.fdopen(r, "rb") as reader:
            r = None
            marker = None
            while marker is None:  # the reader is back: one `lost` line says how many it missed
                run(["sh", "-c", "exit 3"])
                lines = reader.read1(1 << 20).splitlines()
                lost = [json.loads(line) for line in lines if b'"event":"lost"' in line]
                marker = lost[0] if lost else None
                assert time.monotonic() < deadline
            stop.set()
            runner.join(timeout=10)
    finally:
        source.close()
        os.close(w)
        if r is not None:
            os.close(r)
    assert marker["count"] >= dropped > 0
    assert result == [0]


# --- a signal at any moment of startup (issue 23 item 8) ---------------------------------


def _signal_during_startup(args: tuple[str, ...], delay: float, sig: int) -> str | None:
    """Start proctop, send ``sig`` after ``delay`` seconds: what went wrong, or None.

    A signal before the interpreter reaches proctop's first line is Python's own
    business (its KeyboardInterrupt from site.py); from that line on, proctop
    answers: status 0 and nothing on stderr, never a crash or a hang.
    """
    proc = subprocess.Popen(
        proctop_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL
    )
    time.sleep(delay)
    proc.send_signal(sig)
    try:
        _out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"{delay:.3f}s: still running 20 s after {signal.Signals(sig).name}"
    if proc.returncode in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
        return f"{delay:.3f}s: crashed by {signal.Signals(-proc.returncode).name}: {err[-300:]}"
    if re.search(r'File "[^"]*/proctop/[^"]*"', err):
        return f"{delay:.3f}s: traceback through proctop: {err[-800:]}"
    if proc.returncode == -sig and not err:  # before the interpreter ran a line: killed by it, quietly
        return None
    if ("Traceback" in err or "Fatal Python error: init_import_site" in err) and "KeyboardInterrupt" in err:
        return None  # in the interpreter's startup (site.py), before proctop's first line
    if proc.returncode != 0 or err:
        return f"{delay:.3f}s: status {proc.returncode}, stderr {err!r}"
    return None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_at_any_moment_of_startup_ends_quietly(sig):
    """SIGINT 35-75 ms after start crashed inside the orjson import (29 of 260) or printed a
    KeyboardInterrupt traceback. Every few milliseconds of the first 0.4 s of a replay to --summary."""
    from concurrent.futures import ThreadPoolExecutor

    sample = str(REPO / "tests" / "data" / "sample.jsonl")
    args = ("--summary", "--replay", sample, "--duration", "30")
    delays = [i * 0.008 for i in range(50)]
    with ThreadPoolExecutor(4) as pool:
        problems = [p for p in pool.map(lambda d: _signal_during_startup(args, d, sig), delays) if p]
    assert not problems, "\n".join(problems)


# --- every value and output path through the one-line error path (issue 23 items 10, 11) ----


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--record", "/tmp/x", "--record-max-size", "9" * 400], "--record-max-size: not a size"),
        (["--record", "/tmp/x", "--record-max-size", "1e999M"], "--record-max-size: not a size"),
        (["--record", "/tmp/x", "--record-max-age", "9" * 400], "--record-max-age: not a duration"),
        (["--replay", SAMPLE, "--since", "9" * 400 + "h"], "--since: not a time"),
        (["--json", "--metrics", "127.0.0.1:\u00b2"], "--metrics: not ADDR:PORT"),
        (["--json", "--metrics", "127.0.0.1:" + "9" * 5000], "--metrics: not ADDR:PORT"),
        (["--json", "--metrics", "127.0.0.1:\u0669\u0669"], "--metrics: not ADDR:PORT"),  # Arabic-Indic digits
        (["--json", "--replay", ""], "--replay: must not be empty"),
        (["--record", ""], "--record: must not be empty"),
        (["--json", "--metrics", ""], "--metrics: must not be empty"),
        (["--json", "--config", ""], "--config: must not be empty"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_every_value_is_one_line_and_exit_2(args, needle):
    proc = subprocess.run(proctop_cmd(*args), capture_output=True, text=True, cwd=NEUTRAL, timeout=30)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("proctop: "), proc.stderr[-500:]
    assert needle in proc.stderr


def test_a_deeply_nested_config_is_one_line(tmp_path):
    config = tmp_path / "deep.toml"
    config.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    proc = subprocess.run(
        proctop_cmd("--json", "--replay", SAMPLE, "--config", str(config)),
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stderr == f"proctop: config file {config}: not valid TOML (nested too deeply)\n"


def test_unreadable_replay_directory_and_segment_are_one_line(tmp_path, nonroot_child):
    """As uid 65534: a record directory it cannot list, and a segment in it that it cannot read."""
    import shutil
    import tempfile

    from proctop.sinks.record import SegmentWriter

    root = Path(tempfile.mkdtemp(prefix="proctop-perm-"))  # nobody cannot reach tmp_path
    try:
        root.chmod(0o755)
        closed, readable = root / "closed", root / "readable"
        for directory in (closed, readable):
            writer = SegmentWriter(directory)
            writer.start({"proctop": "x"})
            writer.close()
        closed.chmod(0o700)
        readable.chmod(0o755)
        for segment in readable.glob("proctop-*.jsonl.gz"):
            segment.chmod(0o600)

        def as_nobody():
            from proctop.cli import main as cli

            out = []
            for path in (closed, readable):
                try:
                    source = cli.make_source(cli.parse_options(["--json", "--replay", str(path)]))
                    source.start()
                    while not source.finished:
                        source.poll(0)
                except cli.ProctopError as exc:
                    out.append((exc.status, str(exc)))
            return out

        result = nonroot_child(as_nobody)
    finally:
        shutil.rmtree(root)
    assert [status for status, _ in result] == [2, 2], result
    assert "Permission denied" in result[0][1] and str(closed) in result[0][1]
    assert "Permission denied" in result[1][1] and str(readable) in result[1][1]


@pytest.mark.parametrize(
    "args",
    [
        ["--summary", "--replay", SAMPLE],
        ["--help"],
        ["--version"],
        ["--manpage"],
        ["--completion", "bash"],
    ],
    ids=lambda a: a[0],
)
def test_output_to_a_full_disk_or_a_gone_reader(args):
    """``> /dev/full``: one line, status 1; ``| true``: quiet, status 0. Tracebacks before."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            proctop_cmd(*args), stdout=full, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL, timeout=30
        )
    assert (proc.returncode, proc.stderr) == (1, "proctop: cannot write the output: No space left on device\n")
    r, w = os.pipe()
    os.close(r)  # a reader that is gone before the first write
    try:
        proc = subprocess.run(proctop_cmd(*args), stdout=w, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL, timeout=30)
    finally:
        os.close(w)
    assert (proc.returncode, proc.stderr) == (0, "")
