"""``--record DIR`` and ``--replay DIR``: real segment files, real cuts, a real full disk, real processes."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from helpers import proctop_cmd, run

from proctop.model.events import Event
from proctop.sinks.record import (
    RECORD_DIR_MODE,
    SEGMENT_MODE,
    SEGMENT_RE,
    CaptureLines,
    RecordError,
    SegmentWriter,
    parse_duration,
    parse_size,
    parse_time,
    segment_paths,
    within,
)
from proctop.sources.replay import load_capture

NEUTRAL = "/"


class Clock:
    """A hand-moved clock: flushes, rotation and ages happen when the test says."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def events(n: int, start: int = 0, *, noisy: bool = False) -> list[Event]:
    """``n`` exits; ``noisy`` argv (random text) keeps gzip from shrinking them to nothing."""
    rnd = random.Random(start)
    out = []
    for i in range(start, start + n):
        argv = ["/usr/bin/worker", f"--job={i}"]
        if noisy:
            argv.append("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(120)))
        out.append(
            Event(ts=1_800_000_000.0 + i, event="exit", pid=1000 + i, tgid=1000 + i, cmdline=argv, exit_code=i % 4)
        )
    return out


def replayed(path) -> list[dict]:
    """Every line ``CaptureLines`` gives, parsed (header lines included)."""
    return [json.loads(line) for line in CaptureLines(path)]


def pids(objs) -> list[int]:
    return [o["pid"] for o in objs if "event" in o]


# --- arguments ----------------------------------------------------------------


def test_sizes_durations_and_times():
    assert parse_size("100M") == 100 * 1024**2
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("512KiB") == parse_size("512k") == 512 * 1024
    assert parse_size("65536") == 65536
    for bad in ("", "M", "10Q", "-5M", "1K"):  # 1K: below the 64K minimum
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)
    assert parse_duration("2h") == 7200 and parse_duration("30m") == 1800 and parse_duration("45") == 45
    assert parse_duration("7d") == 7 * 86400
    for bad in ("0", "2x", "h", "-1h"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)
    assert parse_time("2h", now=10_000) == 10_000 - 7200
    assert parse_time("2026-11-27T04:00:00+00:00") == 1795752000.0
    assert parse_time("2026-11-27T04:00:00Z") == 1795752000.0
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("yesterday")


def test_within_keeps_the_window():
    evs = events(10)
    kept = list(within(evs, evs[3].ts, evs[6].ts))
    assert [e.pid for e in kept] == [e.pid for e in evs[3:7]]
    assert list(within(evs, None, None)) == evs
    assert [e.pid for e in within(evs, evs[8].ts, None)] == [e.pid for e in evs[8:]]


# --- writing and reading back -------------------------------------------------------


def test_segments_round_trip_with_a_header(tmp_path):
    clock = Clock()
    w = SegmentWriter(tmp_path / "rec", clock=clock)
    w.start({"proctop": "0.1.0", "ts": 0, "source": "native"})
    evs = events(50)
    for i in range(0, 50, 10):
        w.write(evs[i : i + 10])
        clock.now += 1.5
    w.close()
    (seg,) = segment_paths(tmp_path / "rec")
    objs = [json.loads(line) for line in gzip.decompress(seg.read_bytes()).splitlines()]  # plain gzip reads it too
    assert objs[0]["proctop"] == "0.1.0" and objs[0]["source"] == "native" and objs[0]["ts"] == 1_800_000_000.0
    assert [Event.from_dict(o) for o in objs[1:]] == evs
    header, loaded = load_capture(tmp_path / "rec")
    assert header["source"] == "native" and loaded == evs
    assert w.written == 50 and w.dropped_total == 0


def test_a_segment_cut_anywhere_reads_up_to_its_last_whole_line(tmp_path):
    """A SIGKILL or power loss cuts the file at any byte: every line flushed before the cut is there."""
    clock = Clock()
    w = SegmentWriter(tmp_path, clock=clock)
    w.start({"proctop": "x"})
    evs = events(60, noisy=True)
    synced = []  # (file size after a flush, events in the file by then)
    for i in range(0, 60, 6):
        w.write(evs[i : i + 6])
        clock.now += 1.0
        w.tick()
        synced.append((w.total_size, i + 6))
    (seg,) = segment_paths(tmp_path)
    data = seg.read_bytes()  # the recorder is still "running": no gzip trailer yet
    assert len(data) == synced[-1][0]
    cut_file = tmp_path / "cut.jsonl.gz"
    for cut in range(0, len(data) + 1, 7):
        cut_file.write_bytes(data[:cut])
        got = pids(replayed(cut_file))
        must = max((n for size, n in synced if size <= cut), default=0)
        assert got == [e.pid for e in evs[: len(got)]], cut  # a prefix, in order, no torn line
        assert len(got) >= must, cut
    cut_file.write_bytes(data + b"\0" * 4096)  # blocks the file system allocated but never wrote
    assert pids(replayed(cut_file)) == [e.pid for e in evs]


def test_size_bound_rotation_and_oldest_first(tmp_path):
    clock = Clock()
    max_size = 64 * 1024
    w = SegmentWriter(tmp_path, max_size=max_size, clock=clock)
    w.start({"proctop": "x"})
    evs = events(3000, noisy=True)  # ~10x the bound once compressed
    for i in range(0, 3000, 20):
        w.write(evs[i : i + 20])
        clock.now += 1.0
        w.tick()
        on_disk = sum(p.stat().st_size for p in segment_paths(tmp_path))
        assert on_disk <= max_size
    w.close()
    segs = segment_paths(tmp_path)
    assert len(segs) >= 5  # rotated at a tenth of the bound
    assert sum(p.stat().st_size for p in segs) <= max_size
    got = pids(replayed(tmp_path))
    assert got == [e.pid for e in evs[-len(got) :]]  # the newest events, contiguous: the oldest went first
    assert len(got) > 300
    assert sum(1 for o in replayed(tmp_path) if "proctop" in o) == len(segs)  # each segment has its header


def test_earlier_runs_count_towards_the_bound_and_age_limit(tmp_path):
    clock = Clock()
    old = SegmentWriter(tmp_path, max_size=64 * 1024, clock=clock)
    old.start({"proctop": "old"})
    old.write(events(100, noisy=True))
    old.close()
    (old_seg,) = segment_paths(tmp_path)
    os.utime(old_seg, (clock.now - 40 * 86400, clock.now - 40 * 86400))
    clock.now += 10
    new = SegmentWriter(tmp_path, max_size=64 * 1024, max_age=30 * 86400, clock=clock)
    new.start({"proctop": "new"})
    assert not old_seg.exists()  # 40 days old, limit 30 days
    new.close()
    assert [json.loads(line)["proctop"] for line in CaptureLines(tmp_path)] == ["new"]


def test_segments_from_another_hour_start_anew(tmp_path):
    clock = Clock()
    w = SegmentWriter(tmp_path, clock=clock)
    w.start({"proctop": "x"})
    w.write(events(5))
    clock.now += 3601
    w.tick()
    w.write(events(5, 5))
    w.close()
    assert len(segment_paths(tmp_path)) == 2
    assert pids(replayed(tmp_path)) == list(range(1000, 1010))


def test_unwritable_directory_is_a_record_error(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(RecordError, match="not a directory"):
        SegmentWriter(afile)
    with pytest.raises(RecordError, match="not a directory"):
        SegmentWriter(afile / "sub")


def test_an_empty_directory_is_not_a_record(tmp_path):
    with pytest.raises(RecordError, match="no proctop records"):
        list(CaptureLines(tmp_path))


# --- a real file system that fills up --------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 512 KiB tmpfs (CI runs as root), unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def read_only_fs(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(mnt: Path) -> Path:
    """Take every free byte of ``mnt``."""
    filler = mnt / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\xff" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk_drops_counts_and_records_lost_when_space_returns(small_fs):
    clock = Clock()
    warnings = []
    w = SegmentWriter(small_fs / "rec", clock=clock, warn=warnings.append)
    w.start({"proctop": "x"})
    w.write(events(10))
    clock.now += 1
    w.tick()
    filler = fill(small_fs)
    for i in range(10, 200, 10):  # writes fail: counted, not kept
        w.write(events(10, i, noisy=True))
        clock.now += 1
        w.tick()
    assert w.dropped > 0
    dropped = w.dropped
    assert len(warnings) == 1 and "No space left on device" in warnings[0]
    filler.unlink()
    clock.now += 1
    w.tick()  # the next flush finds space again
    w.write(events(10, 500))
    clock.now += 1
    w.tick()
    w.close()
    objs = [o for o in replayed(small_fs / "rec") if "event" in o]
    lost = [o for o in objs if o["event"] == "lost"]
    assert [o["count"] for o in lost] == [dropped]
    got = [o["pid"] for o in objs if o["event"] != "lost"]
    assert got[:10] == list(range(1000, 1010)) and got[-10:] == list(range(1500, 1510))
    assert len(got) + dropped == 10 + 190 + 10  # nothing both kept and counted lost
    assert len(warnings) == 1


def test_record_into_a_read_only_file_system_is_one_line_exit_2(read_only_fs):
    proc = subprocess.run(
        proctop_cmd("--record", str(read_only_fs / "rec"), "--duration", "1"),
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"proctop: --record: cannot write to {read_only_fs / 'rec'}: Read-only file system\n"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--record", "/tmp", "--record-max-size", "10Q"], "not a size: '10Q'"),
        (["--record", "/tmp", "--record-max-size", "1K"], "below the minimum"),
        (["--record", "/tmp", "--record-max-age", "soon"], "not a duration"),
        (["--record", "/dev/null/rec"], "not a directory"),
        (["--json", "--since", "2h"], "--since and --until need --replay"),
        (["--replay", "/tmp", "--since", "last tuesday"], "not a time"),
        (["--replay", "/proc/self", "--json"], "no proctop records"),
    ],
)
def test_bad_record_input_is_one_line_and_exit_2(args, needle):
    proc = subprocess.run(proctop_cmd(*args), capture_output=True, text=True, cwd=NEUTRAL, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("proctop: ")
    assert needle in proc.stderr


# --- the recorder as users run it ---------------------------------------------------------


def wait_for(predicate, timeout: float = 20.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def draining(proc: subprocess.Popen) -> tuple[threading.Thread, list[str]]:
    """Read ``proc``'s stdout in a thread: a full pipe would stall the recorder (and its flushes)."""
    lines: list[str] = []
    thread = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    thread.start()
    return thread, lines


def recording_exits(rec: Path) -> subprocess.Popen[str]:
    """``proctop --record REC --only exit`` started from a neutral directory, its output piped."""
    return subprocess.Popen(
        proctop_cmd("--record", str(rec), "--only", "exit"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL,
    )


def replay_cli(*args: str) -> list[dict]:
    proc = subprocess.run(proctop_cmd("--json", "--only", "all", *args), capture_output=True, text=True, cwd=NEUTRAL)
    assert proc.returncode == 0, proc.stderr
    head, *lines = proc.stdout.splitlines()
    assert json.loads(head)["source"] == "replay"
    return [json.loads(line) for line in lines]


@pytest.mark.kernel
def test_headless_recorder_writes_nothing_on_stdout(tmp_path):
    rec = tmp_path / "rec"
    proc = recording_exits(rec)
    assert wait_for(lambda: rec.exists() and segment_paths(rec))  # the header is written at once
    pid = run(["sh", "-c", "exit 9"])
    assert wait_for(lambda: pid in pids(replayed(rec)))  # readable while it is being written
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, "", "")
    (mine,) = [o for o in replay_cli("--replay", str(rec)) if o["pid"] == pid]
    assert (mine["event"], mine["exit_code"]) == ("exit", 9)


@pytest.mark.kernel
def test_sigkill_mid_write_loses_no_whole_line(tmp_path):
    """Record a stream of real processes, SIGKILL the recorder during a storm, replay: a clean prefix."""
    rec = tmp_path / "rec"
    proc = subprocess.Popen(
        proctop_cmd("--record", str(rec), "--json", "--only", "all"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL,
    )
    head = json.loads(proc.stdout.readline())
    drain, streamed_lines = draining(proc)
    first = [run(["sh", "-c", f"exit {i % 5}"]) for i in range(30)]
    assert wait_for(lambda: set(first) <= set(pids(replayed(rec)))), "the first storm never reached the disk"
    storm = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
    try:
        wait_for(lambda: len(pids(replayed(rec))) > 2000, timeout=10, step=0.05)  # mid-storm, mid-segment
        proc.kill()
        proc.wait(timeout=10)
    finally:
        storm.kill()
        storm.wait()
    drain.join(timeout=10)
    streamed = [json.loads(line) for line in streamed_lines if line.endswith("}\n")]
    proc.stdout.close()
    proc.stderr.close()
    got = replay_cli("--replay", str(rec))
    n = min(len(got), len(streamed))
    assert n > 2000
    assert got[:n] == streamed[:n]  # what the disk has is what was streamed, in order, nothing torn
    assert set(first) <= set(pids(got))
    assert len(got) >= len(streamed) - 20_000  # at most about a second of a storm was lost with the kill
    (segment,) = segment_paths(rec)
    assert json.loads(gzip.GzipFile(segment).readline())["source"] == head["source"]


@pytest.mark.kernel
def test_record_with_json_keeps_the_same_stream_and_replay_filters_by_time(tmp_path):
    rec = tmp_path / "rec"
    proc = subprocess.Popen(
        proctop_cmd("--record", str(rec), "--json", "--only", "exec,exit"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL,
    )
    proc.stdout.readline()
    drain, out_lines = draining(proc)
    early = run(["sh", "-c", "exit 3"])
    time.sleep(1.2)
    middle = time.time()
    time.sleep(0.2)
    late = run(["sh", "-c", "exit 4"])
    assert wait_for(lambda: late in pids(replayed(rec)))
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0, proc.stderr.read()
    drain.join(timeout=10)
    streamed = [json.loads(line) for line in out_lines]
    everything = replay_cli("--replay", str(rec))
    assert everything == streamed
    since = replay_cli("--replay", str(rec), "--since", datetime.fromtimestamp(middle).isoformat())
    until = replay_cli("--replay", str(rec), "--until", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(middle)))
    assert late in pids(since) and early not in pids(since)
    assert early in pids(until) and late not in pids(until)
    assert all(o["ts"] >= middle for o in since)
    assert pids(replay_cli("--replay", str(rec), "--since", "1h")) == pids(everything)


def test_a_gzipped_capture_replays_like_the_plain_one(tmp_path):
    sample = Path(__file__).resolve().parents[1] / "data" / "sample.jsonl"
    packed = tmp_path / "sample.jsonl.gz"
    packed.write_bytes(gzip.compress(sample.read_bytes()))
    assert replay_cli("--replay", str(packed)) == replay_cli("--replay", str(sample))
    assert load_capture(packed) == load_capture(sample)


def test_segments_begun_in_the_same_microsecond_get_distinct_names_in_order(tmp_path):
    clock = Clock()  # never moves
    w = SegmentWriter(tmp_path, max_size=64 * 1024, clock=clock)
    w.start({"proctop": "x"})
    evs = events(400, noisy=True)
    for i in range(0, 400, 10):
        w.write(evs[i : i + 10])
        w.flush()  # rotation at a tenth of the bound, all at the same instant
    w.close()
    segs = segment_paths(tmp_path)
    assert len(segs) >= 3 and w.dropped_total == 0
    got = pids(replayed(tmp_path))
    assert got == [e.pid for e in evs[-len(got) :]]


@pytest.mark.kernel
def test_the_recorder_survives_a_disk_that_fills_while_it_runs(small_fs):
    rec = small_fs / "rec"
    proc = recording_exits(rec)
    try:
        assert wait_for(lambda: rec.exists() and segment_paths(rec))  # started: the header is on disk
        before = run(["sh", "-c", "exit 5"])
        assert wait_for(lambda: before in pids(replayed(rec)))
        filler = fill(small_fs)
        # Enough events to need a new page: the segment's last page has up to 4 KiB of slack that
        # takes ~340 compressed exits (~11 bytes each) without ENOSPC on a quiet machine.
        during = [run(["sh", "-c", "exit 6"]) for _ in range(800)]
        time.sleep(2.5)  # flushes fail: the events are counted, not kept
        filler.unlink()
        after: list[int] = []  # until the next flush finds the space, events are still counted as lost

        def one_more_is_kept() -> bool:
            after.append(run(["sh", "-c", "exit 7"]))
            return any(p in after for p in pids(replayed(rec)))

        assert wait_for(one_more_is_kept, step=0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out == ""
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    got = replayed(rec)
    lost = [o for o in got if o.get("event") == "lost"]
    assert len(lost) == 1 and lost[0]["count"] >= 1
    kept = set(pids(got))
    assert before in kept and kept & set(after)
    assert sum(p in kept for p in during + after) + lost[0]["count"] >= len(during) + len(after)


def test_gzip_members_back_to_back_replay_once(tmp_path):
    """Issue 23 item 3: ``cat seg1.gz seg2.gz`` replayed 421,001 lines instead of 4,001: at a
    member's end both ``unused_data`` and ``unconsumed_tail`` held the rest, and both were fed."""
    first, second = events(2000, noisy=True), events(2000, start=2000, noisy=True)
    both = tmp_path / "both.jsonl.gz"
    both.write_bytes(
        gzip.compress(b"".join(ev.to_line() for ev in first)) + gzip.compress(b"".join(ev.to_line() for ev in second))
    )
    _header, got = load_capture(both)
    assert [ev.pid for ev in got] == [ev.pid for ev in first + second]
    assert sum(1 for _ in CaptureLines(both)) == 4000
    # and small members, many per read: each line once, in order
    small = tmp_path / "small.jsonl.gz"
    small.write_bytes(b"".join(gzip.compress(ev.to_line()) for ev in first[:300]))
    assert [ev.pid for ev in load_capture(small)[1]] == [ev.pid for ev in first[:300]]


# --- the recorder's directory: one writer, noticed when it goes, never another user's (issue 23) ---


def lost_counts(path) -> list[int]:
    return [o["count"] for o in replayed(path) if o.get("event") == "lost"]


def test_a_second_recorder_on_the_same_directory_is_refused(tmp_path):
    """Item 6: a second ``--record`` deleted the first's live segment; now it gets one line, status 2."""
    first = SegmentWriter(tmp_path / "rec", clock=Clock())
    first.start({"proctop": "first"})
    with pytest.raises(RecordError, match=f"another proctop \\(pid {os.getpid()}\\) is recording to") as info:
        SegmentWriter(tmp_path / "rec", clock=Clock())
    assert info.value.status == 2
    first.write(events(3))
    first.close()
    assert pids(replayed(tmp_path / "rec")) == [1000, 1001, 1002]
    second = SegmentWriter(tmp_path / "rec", clock=Clock())  # the lock went with the first
    second.close()


def test_a_removed_directory_is_one_line_and_a_lost_record(tmp_path):
    """Item 6: a directory removed mid-run gave no line and lost events silently until rotation."""
    import shutil

    clock, warnings = Clock(), []
    rec = tmp_path / "rec"
    w = SegmentWriter(rec, clock=clock, warn=warnings.append)
    w.start({"proctop": "x"})
    w.write(events(5))
    clock.now += 1
    w.flush()
    shutil.rmtree(rec)
    w.write(events(7, 5))
    clock.now += 1
    w.flush()  # notices: the 5 in the removed segment and the 7 after are lost
    assert len(warnings) == 1 and f"{rec}" in warnings[0] and "removed" in warnings[0], warnings
    clock.now += 1
    w.flush()  # the directory is made again, and begins with the count
    w.write(events(2, 20))
    w.close()
    assert lost_counts(rec) == [12]
    assert [o["pid"] for o in replayed(rec) if o.get("event") == "exit"] == [1020, 1021]
    assert w.dropped_total == 12 and len(warnings) == 1


def test_a_removed_segment_is_noticed_and_counted(tmp_path):
    clock, warnings = Clock(), []
    w = SegmentWriter(tmp_path, clock=clock, warn=warnings.append)
    w.start({"proctop": "x"})
    w.write(events(5))
    clock.now += 1
    w.flush()
    (segment,) = segment_paths(tmp_path)
    segment.unlink()
    w.write(events(3, 5))
    clock.now += 1
    w.flush()
    clock.now += 1
    w.flush()
    w.close()
    assert len(warnings) == 1 and "removed" in warnings[0], warnings
    assert lost_counts(tmp_path) == [8]


def test_a_symlink_another_user_planted_is_not_followed(tmp_path):
    """Item 12: root followed ``/tmp/rec -> /etc``-style symlinks another user made."""
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "rec"
    link.symlink_to(target)
    os.lchown(link, 65534, 65534)
    with pytest.raises(RecordError, match="owned by another user"):
        SegmentWriter(link)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(RecordError, match="owned by another user"):
        SegmentWriter(theirs)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RecordError, match="writable by other users"):
        SegmentWriter(shared)
    assert list(target.iterdir()) == [] and list(theirs.iterdir()) == [] and list(shared.iterdir()) == []


def test_a_directory_swapped_for_a_symlink_mid_run_is_not_followed(tmp_path):
    """The directory is held open: renamed away and replaced by a symlink, nothing reaches the target."""
    clock, warnings = Clock(), []
    rec, elsewhere = tmp_path / "rec", tmp_path / "elsewhere"
    elsewhere.mkdir()
    w = SegmentWriter(rec, clock=clock, warn=warnings.append)
    w.start({"proctop": "x"})
    w.write(events(5))
    clock.now += 1
    w.flush()
    rec.rename(tmp_path / "moved")
    rec.symlink_to(elsewhere)
    os.lchown(rec, 65534, 65534)
    for i in range(3):
        w.write(events(4, 10 + 4 * i))
        clock.now += 1
        w.flush()
    w.close()
    assert list(elsewhere.iterdir()) == []
    assert len(warnings) == 2 and "moved or replaced" in warnings[0], warnings
    assert warnings[1] == f"8 events were not recorded in {rec}"  # it never could write again: said at the end
    # finished where it was, with the batch that was waiting when the move was noticed
    assert pids(replayed(tmp_path / "moved")) == [1000, 1001, 1002, 1003, 1004, 1010, 1011, 1012, 1013]


@pytest.mark.parametrize("mask", [0, 0o077])
def test_created_directories_and_segments_have_fixed_modes(tmp_path, mask):
    """Item 12: under ``umask 0`` the directories were 0777 (no sticky bit)."""
    rec = tmp_path / "a" / "rec"
    old = os.umask(mask)
    try:
        w = SegmentWriter(rec, clock=Clock())
        w.start({"proctop": "x"})
        w.close()
    finally:
        os.umask(old)
    for directory in (rec, rec.parent):
        assert directory.stat().st_mode & 0o7777 == RECORD_DIR_MODE
    for segment in segment_paths(rec):
        assert segment.stat().st_mode & 0o7777 == SEGMENT_MODE
    assert [p.name for p in rec.iterdir() if not SEGMENT_RE.match(p.name)] == [".proctop.lock"]


@pytest.mark.kernel
def test_a_second_record_run_is_one_line_and_status_2(tmp_path):
    rec = tmp_path / "rec"
    first = recording_exits(rec)
    try:
        assert wait_for(lambda: rec.exists() and segment_paths(rec))
        second = subprocess.run(
            proctop_cmd("--record", str(rec), "--duration", "1"),
            capture_output=True,
            text=True,
            cwd=NEUTRAL,
            timeout=30,
        )
        assert second.returncode == 2, second.stderr
        assert second.stderr == f"proctop: --record: another proctop (pid {first.pid}) is recording to {rec}\n"
        pid = run(["sh", "-c", "exit 9"])
        assert wait_for(lambda: pid in pids(replayed(rec)))  # the first one's segment is still written
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=10)
    assert (first.returncode, out, err) == (0, "", "")
