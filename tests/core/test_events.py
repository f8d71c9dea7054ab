"""Event model: wait status decoding and the JSON contract."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proctop.model.events import Event, decode_wait_status, encode_line, signal_name


def test_wait_status():
    assert decode_wait_status(0) == (0, None, False)
    assert decode_wait_status(3 << 8) == (3, None, False)
    assert decode_wait_status(255 << 8) == (255, None, False)
    assert decode_wait_status(11) == (None, "SIGSEGV", False)
    assert decode_wait_status(11 | 0x80) == (None, "SIGSEGV", True)
    assert decode_wait_status(9) == (None, "SIGKILL", False)
    assert signal_name(34).startswith("SIGRTMIN")
    assert signal_name(99) == "SIG99"


def test_status_text_and_failed():
    assert Event(ts=0, event="exit", exit_code=3).status_text == "exit 3"
    segv = Event(ts=0, event="exit", signal="SIGSEGV", core_dumped=True)
    assert segv.status_text == "SIGSEGV (core dumped)" and segv.failed
    assert not Event(ts=0, event="exit", exit_code=0).failed
    assert not Event(ts=0, event="fork").failed


def test_json_keys_and_round_trip():
    ev = Event(ts=1.5, event="exit", pid=7, tgid=7, ppid=1, cmdline=["a", "\udcff\x1b[31m"], exit_code=2)
    line = ev.to_json()
    assert line.isascii()  # undecodable argv bytes survive as escapes
    obj = json.loads(line)
    for key in (
        "ts",
        "event",
        "pid",
        "tgid",
        "ppid",
        "comm",
        "cmdline",
        "user",
        "exit_code",
        "signal",
        "core_dumped",
        "lifetime",
    ):
        assert key in obj
    assert Event.from_dict(obj) == ev
    lost = Event(ts=2.0, event="lost", count=3)
    assert json.loads(lost.to_json())["count"] == 3


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "not a JSON object"),
        ({"event": "boom", "ts": 1}, "unknown event"),
        ({"event": "exit"}, "'ts' must be a number"),
        ({"event": "exit", "ts": 1, "pid": "x"}, "'pid' has the wrong type"),
        ({"event": "exit", "ts": 1, "cmdline": [1]}, "list of strings"),
        ({"event": "exit", "ts": True}, "'ts' must be a number"),
        # captures are untrusted: every number finite and in its range (issue 8)
        ({"event": "exit", "ts": float("nan")}, "'ts' must be a number from 0"),
        ({"event": "exit", "ts": float("inf")}, "'ts' must be a number from 0"),
        ({"event": "exit", "ts": 1e300}, "'ts' must be a number from 0"),
        ({"event": "exit", "ts": -1}, "'ts' must be a number from 0"),
        ({"event": "lost", "ts": 1, "count": -3}, "'count' must be from 0"),
        ({"event": "exit", "ts": 1, "pid": 2**31}, "'pid' must be from 0 to 2147483647"),
        ({"event": "exit", "ts": 1, "tgid": -1}, "'tgid' must be from 0"),
        ({"event": "exit", "ts": 1, "ppid": 10**30}, "'ppid' must be from 0"),
        ({"event": "exit", "ts": 1, "exit_code": 256}, "'exit_code' must be from 0 to 255"),
        ({"event": "exit", "ts": 1, "lifetime": float("nan")}, "'lifetime' must be from 0"),
        ({"event": "exit", "ts": 1, "lifetime": -0.5}, "'lifetime' must be from 0"),
        ({"event": "uid", "ts": 1, "euid": 2**32}, "'euid' must be from 0 to 4294967295"),
        ({"event": "exit", "ts": 1, "core_dumped": 1}, "'core_dumped' has the wrong type"),
        ({"event": "exit", "ts": 1, "pid": 1.5}, "'pid' has the wrong type"),
        ({"event": ["x" * 100], "ts": 1}, r"unknown event \['xxx"),
    ],
)
def test_from_dict_rejects(obj, message):
    with pytest.raises(ValueError, match=message) as info:
        Event.from_dict(obj)
    assert len(str(info.value)) < 120  # one short line, whatever the value


def test_to_json_is_strict_rfc8259():
    """A NaN can never be written out as the invalid token ``NaN`` (issue 8)."""
    with pytest.raises(ValueError):
        Event(ts=1.0, event="exit", lifetime=float("nan")).to_json()


_TEXT = st.text(max_size=12)  # any code point, lone surrogates (undecodable argv bytes) included


@given(
    ts=st.floats(min_value=0, max_value=2**32, allow_nan=False),
    comm=st.none() | _TEXT,
    cmdline=st.none() | st.lists(_TEXT, max_size=4),
    lifetime=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
    exit_code=st.none() | st.integers(0, 255),
    unit=st.none() | _TEXT,
)
def test_the_fast_encoder_writes_what_json_dumps_writes(ts, comm, cmdline, lifetime, exit_code, unit):
    """encode_line's line holds what json.dumps (ASCII, strict) would write, and reads back as the event.

    Numbers may be spelled differently (orjson: 0.00005, json: 5e-05), never valued differently."""
    ev = Event(
        ts=ts,
        event="exit",
        pid=7,
        tgid=7,
        comm=comm,
        cmdline=cmdline,
        lifetime=lifetime,
        exit_code=exit_code,
        unit=unit,
        parent_cmdline=cmdline,
    )
    line = ev.to_line()
    reference = json.dumps(ev.to_dict(), separators=(",", ":"), allow_nan=False)
    assert line.isascii() and line.endswith(b"}\n") and line.count(b"\n") == 1
    assert json.loads(line) == json.loads(reference)
    assert list(json.loads(line)) == list(json.loads(reference))  # the same keys, in the same order
    assert Event.from_dict(json.loads(line)) == ev


def test_encode_line_keeps_undecodable_bytes_as_escapes():
    line = encode_line({"cmdline": ["\udcff", "é"]})
    assert line == b'{"cmdline":["\\udcff","\\u00e9"]}\n'


def test_del_is_escaped_in_every_line():
    """Issue 23 item 14: DEL (0x7f) reached --json raw; it is a control character to a terminal."""
    for cmdline in (["a\x7fb"], ["\x7f", "é"], ["\udcff\x7f"]):  # the fast path, non-ASCII and the slow path
        line = Event(ts=1, event="exec", pid=5, tgid=5, cmdline=cmdline).to_line()
        assert b"\x7f" not in line and b"\\u007f" in line, line
        assert Event.from_dict(json.loads(line)).cmdline == cmdline
