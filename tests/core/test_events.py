"""Event model: wait status decoding and the JSON contract."""

from __future__ import annotations

import json

import pytest

from proctop.model.events import Event, decode_wait_status, signal_name


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
    ],
)
def test_from_dict_rejects(obj, message):
    with pytest.raises(ValueError, match=message):
        Event.from_dict(obj)
