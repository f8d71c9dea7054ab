"""Replay captures: whatever a file holds, the answer is events or one ReplayError (issue 8)."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import time

import pytest
from helpers import proctop_cmd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctop.kernel.protocol import PROC_EVENT_ALL, PROC_EVENT_EXIT, PROC_EVENT_NONZERO_EXIT
from proctop.model.events import Event
from proctop.model.kinds import event_passes
from proctop.sources.replay import (
    MAX_LINE,
    CaptureParser,
    ReplayError,
    ReplaySource,
    _nesting,
    load_capture,
    read_capture,
)

NEUTRAL = "/"

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
EVENTISH = st.fixed_dictionaries(
    {"ts": st.floats(0, 2e9) | st.text(max_size=3), "event": st.sampled_from(["exit", "fork", "lost", "boom"])},
    optional={"pid": JSON, "cmdline": JSON, "exit_code": JSON, "signal": JSON, "count": JSON},
)
#: Pieces of hostile lines: tokens json.loads accepts by default, separators
#: str.splitlines would split on, nesting, long numbers, bytes that are not text.
HOSTILE = st.sampled_from(
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b"9" * 30,
        b"-" + b"9" * 5000,
        b"[" * 40 + b"]" * 40,
        b"{" * 5,
        "\u2028".encode(),
        "\u2029".encode(),
        "\x85".encode(),
        b"\r",
        b"\x0b",
        b"\x0c",
        b"\xff",
        b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
        b"\x00",
        b'"',
        b"\\",
        b"\n",
        b'{"ts":1,"event":"exit","pid":',
        b'{"proctop":"0.1.0","source":',
    ]
)
LINE = (
    EVENTISH.map(lambda d: json.dumps(d).encode())
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.lists(HOSTILE | st.binary(max_size=6), max_size=6).map(b"".join)
)


def _outcome(records) -> tuple[list, str | None]:
    """Every record an iterator gives, as JSON text or header dict, and the error that ended it."""
    out: list = []
    try:
        for record in records:
            out.append(record.to_json() if isinstance(record, Event) else record)
    except ReplayError as exc:
        return out, str(exc)
    return out, None


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300, deadline=None)
@given(lines=st.lists(LINE, max_size=6), cuts=st.lists(st.integers(0, 400), max_size=5))
def test_any_bytes_give_events_or_one_clear_error(lines, cuts):
    """Any bytes: records, or one ReplayError line naming the file; however the reads are cut."""
    data = b"\n".join(lines)
    records, error = whole = _outcome(read_capture(io.BytesIO(data), "capture.jsonl"))
    if error is not None:
        assert "\n" not in error and error.startswith("capture.jsonl:")
        assert len(error) < 200
    for record in records:
        assert isinstance(record, (str, dict))
        if isinstance(record, str):  # an event: written back as strict JSON
            json.loads(record, parse_constant=lambda name: pytest.fail(f"{name} written"))

    def in_pieces():
        parser = CaptureParser("capture.jsonl")
        start = 0
        for cut in [*sorted(cuts), len(data)]:
            try:
                yield from parser.feed(data[start:cut])
            except ReplayError as exc:
                yield from exc.records
                raise
            start = max(start, cut)
        yield from parser.finish()

    assert _outcome(in_pieces()) == whole  # the same records and error however the reads are cut


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=100, deadline=None)
@given(lines=st.lists(EVENTISH | JSON | st.text(max_size=20), max_size=5))
def test_any_capture_file_gives_events_or_one_clear_error(tmp_path, lines):
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    try:
        _, events = load_capture(path)
    except ReplayError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message
        return
    for ev in events:
        assert ev.to_json()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"ts":1,"event":"exit","pid":2}\n' + b"[" * 100_000 + b"\n", ":2: nested deeper than 32 levels"),
        (b'{"ts":1,"event":"exit","x":' + b"[" * 3000 + b"]" * 3000 + b"}", ":1: nested deeper than 32 levels"),
        (b'{"ts":1,"event":"exit","pid":' + b"9" * 5000 + b"}", ":1: not valid JSON (integer with 5000 digits"),
        (b'{"ts":1e400,"event":"exit"}', ":1: 'ts' must be a number from 0 to 4294967296"),
        (b'{"ts":1e12,"event":"exit"}', ":1: 'ts' must be a number from 0 to 4294967296"),
        (b'{"ts":NaN,"event":"exit"}', ":1: not valid JSON (NaN is not a JSON number"),
        (b'{"ts":1,"event":"exit","lifetime":Infinity}', ":1: not valid JSON (Infinity is not a JSON number"),
        (b'{"ts":1,"event":"exit","lifetime":-Infinity}', ":1: not valid JSON (-Infinity is not a JSON number"),
        (b'{"ts":1,"event":"lost","count":-3}', ":1: 'count' must be from 0"),
        (b'{"ts":1,"event":"exec","comm":"\xffsh"}', ":1: not UTF-8 text"),
        (b'{"ts":1,"event":"exec"}\n\x00\x00', ":2: not a text file (NUL byte)"),
        (b"a" * (MAX_LINE + 1), ":1: line longer than 1 MiB"),
        (b'{"ts":1,"event":"exec","cmdline":["a\xe2\x80\xa8b"]}\n{"ts":', ":2: not valid JSON"),
    ],
    ids=[
        "deep",
        "deep-key",
        "5000-digits",
        "huge-ts",
        "future-ts",
        "nan",
        "infinity",
        "minus-infinity",
        "negative-count",
        "not-utf8",
        "nul",
        "long-line",
        "u2028-is-text",
    ],
)
def test_hostile_capture_is_one_clear_line(tmp_path, content, needle):
    path = tmp_path / "capture.jsonl"
    path.write_bytes(content)
    with pytest.raises(ReplayError) as info:
        load_capture(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and needle in message and "\n" not in message


def test_u2028_inside_a_string_is_text(tmp_path):
    """Lines split on \\n only: U+2028/U+2029/U+0085 inside a JSON string stay in the argument."""
    path = tmp_path / "capture.jsonl"
    argv = ["sh", "a\u2028b", "c\u2029d", "e\x85f", "g\rh"]
    row = {"ts": 1, "event": "exec", "pid": 5, "tgid": 5, "cmdline": argv}
    path.write_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode())
    _, events = load_capture(path)
    assert [ev.cmdline for ev in events] == [argv]


def test_brackets_inside_strings_are_not_nesting(tmp_path):
    path = tmp_path / "capture.jsonl"
    argv = ["sh", "-c", "[" * 100 + '\\"{' * 50, "]" * 40]
    path.write_text(json.dumps({"ts": 1, "event": "exec", "pid": 5, "tgid": 5, "cmdline": argv}) + "\n")
    _, events = load_capture(path)
    assert [ev.cmdline for ev in events] == [argv]


@pytest.mark.parametrize(
    "line, depth",
    [
        (b"[" * 33 + b'"' + b'\\"' * 300_000, 33),  # issue 23 item 2: quadratic, ~45 min at 1 MiB
        (b'[{"a":"\\\\"}]', 2),  # an escaped backslash ends before the quote: the string closes
        (b'["\\"]]]"]', 1),  # an escaped quote keeps the string open over the brackets
        (b"[" * 40 + b"]" * 40, 40),
        (b'"' * 200_000 + b"[" * 40, 40),  # quotes that open and close strings, then real depth
        (b"[" * 50 + b'"' + b"[" * 500_000, 50),  # an unterminated string: brackets in it do not count
    ],
    ids=["escaped-quotes", "escaped-backslash", "escaped-quote", "plain", "many-strings", "unterminated"],
)
def test_nesting_is_linear_and_skips_strings(line, depth):
    """The capture's nesting check scans each byte once, whatever the quotes and escapes."""
    started = time.process_time()
    assert _nesting(line) == depth
    assert time.process_time() - started < 2.0  # linear: milliseconds; the regex took minutes


def test_a_line_of_escaped_quotes_is_refused_quickly(tmp_path):
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"[" * 33 + b'"' + b'\\"' * 300_000 + b"\n")
    started = time.process_time()
    with pytest.raises(ReplayError, match="nested deeper than 32 levels"):
        load_capture(path)
    assert time.process_time() - started < 2.0


def test_replay_streams_a_regular_file_lazily(tmp_path):
    """Nothing but the first chunk is read before poll() asks: a huge capture is never held whole."""
    path = tmp_path / "capture.jsonl"
    line = json.dumps({"ts": 1, "event": "exit", "pid": 5, "tgid": 5, "exit_code": 1}) + "\n"
    path.write_text(line * 20_000)
    source = ReplaySource(path, PROC_EVENT_ALL, batch=100)
    source.start()
    assert len(source._pending) < 2_000  # one 64 KiB read
    got = source.poll(0)
    assert len(got) == 100 and len(source._pending) < 2_000
    total = len(got)
    while not source.finished:
        total += len(source.poll(0))
    assert total == 20_000
    source.close()


def _wait_rusage(proc: subprocess.Popen, timeout: float):
    """Wait for ``proc`` within ``timeout`` (killing it after): its status and peak RSS in KiB.

    The peak is the child's own VmHWM, sampled while it runs. Not ``wait4``'s
    ru_maxrss: Linux saves the forking parent's high-water mark into the
    child's at exec, so a long pytest run (hundreds of MiB) would be measured.
    """
    deadline = time.monotonic() + timeout
    peak = 0
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            assert peak, "no VmHWM sample: the child ended before the first look"
            return proc.returncode, peak
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise AssertionError(f"proctop still running after {timeout} s")


@pytest.mark.parametrize(
    ("feed", "needle"),
    [
        ("cat /dev/zero", "/dev/zero"),  # replaced by the real file below
        ("tr '\\0' a < /dev/zero", "line longer than 1 MiB"),
        ("tr '\\0' '[' < /dev/zero", "line longer than 1 MiB"),
    ],
    ids=["dev-zero", "endless-line", "endless-brackets"],
)
def test_endless_input_ends_with_one_line_in_bounded_memory(tmp_path, feed, needle):
    """`--replay /dev/zero` grew 1 GB in 3 s and ignored signals; now one line, exit 2."""
    if feed == "cat /dev/zero":
        cmd = proctop_cmd("--json", "--replay", "/dev/zero")
    else:
        cmd = ["bash", "-c", f'exec "$@" --replay <({feed})', "bash", *proctop_cmd("--json")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=NEUTRAL)
    status, peak_kib = _wait_rusage(proc, timeout=60)
    err = proc.stderr.read().decode()
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("proctop: ") and needle in err
    assert peak_kib < 150 * 1024  # the interpreter and proctop's modules are ~20 MiB


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
@pytest.mark.parametrize("phase", ["no-writer", "waiting-for-data"])
def test_fifo_replay_ends_on_signal(tmp_path, sig, phase):
    """A FIFO nobody writes to (or a writer that goes quiet): signals end proctop, status 0."""
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        proctop_cmd("--json", "--replay", str(fifo)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=NEUTRAL
    )
    writer = None
    try:
        if phase == "no-writer":
            # The header comes once the FIFO is open (proctop blocked in open() here before)
            # and the signal handlers are in place; from then on it waits for a writer.
            assert select.select([proc.stdout], [], [], 30)[0], "proctop hangs opening the FIFO"
            assert json.loads(proc.stdout.readline())["source"] == "replay"
        else:
            deadline = time.monotonic() + 30
            while writer is None:  # a non-blocking open succeeds once proctop holds the read end
                try:
                    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.05)
            os.write(writer, b'{"ts":1,"event":"exit","pid":7,"tgid":7,"exit_code":3}\n')
            assert json.loads(proc.stdout.readline())["source"] == "replay"
            assert json.loads(proc.stdout.readline())["pid"] == 7  # now waiting for more
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=10)
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and err == b""


def test_fifo_replay_reads_what_a_late_writer_sends(tmp_path):
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        proctop_cmd("--json", "--replay", str(fifo)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=NEUTRAL
    )
    time.sleep(0.5)  # no writer yet: proctop must wait, not take the FIFO for an empty file
    with open(fifo, "w") as w:
        w.write('{"ts":1,"event":"exit","pid":7,"tgid":7,"exit_code":0}\n')
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [json.loads(line).get("pid") for line in out.splitlines()] == [None, 7]


ROWS = [
    {"ts": 1, "event": "fork", "pid": 2, "tgid": 2},
    {"ts": 2, "event": "exit", "pid": 2, "tgid": 2, "exit_code": 0},
    {"ts": 3, "event": "exit", "pid": 3, "tgid": 3, "exit_code": 4},
    {"ts": 4, "event": "exit", "pid": 4, "tgid": 4, "signal": "SIGKILL"},
    {"ts": 5, "event": "lost", "count": 2},
]


def test_replay_delivers_every_event_and_the_mask_only_hides(tmp_path):
    """A replay shows what was recorded: the mask hides, never discards, and says how many."""
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS))
    src = ReplaySource(path, PROC_EVENT_NONZERO_EXIT)
    src.start()
    got = src.poll(0)
    assert [(e.event, e.pid) for e in got] == [(r["event"], r.get("pid", 0)) for r in ROWS]
    assert src.finished and src.stats.lost == 2
    assert [(e.event, e.pid) for e in got if src.shows(e)] == [("exit", 3), ("exit", 4), ("lost", 0)]
    src.set_mask(PROC_EVENT_EXIT)  # a key that widens the mask brings them back
    assert [e.pid for e in got if not src.shows(e)] == [2]  # only the fork stays hidden
    src.set_mask(PROC_EVENT_ALL)
    assert all(src.shows(e) for e in got)
    src.set_mask(0)  # everything off: only "lost" still shows
    assert [e.event for e in got if src.shows(e)] == ["lost"]
    assert all(src.shows(e) == event_passes(0, e) for e in got)
    src.close()


def test_json_replay_with_only_skips_hidden_events(tmp_path):
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS))
    everything = subprocess.run(
        proctop_cmd("--json", "--replay", str(path)), capture_output=True, text=True, cwd=NEUTRAL, timeout=30
    )
    head, *lines = everything.stdout.splitlines()
    assert everything.returncode == 0 and json.loads(head)["mask"] == ["all"]
    assert [json.loads(line)["ts"] for line in lines] == [r["ts"] for r in ROWS]
    failures = subprocess.run(
        proctop_cmd("--json", "--replay", str(path), "--only", "nonzero-exit"),
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
        timeout=30,
    )
    assert [json.loads(line)["ts"] for line in failures.stdout.splitlines()[1:]] == [3, 4, 5]
