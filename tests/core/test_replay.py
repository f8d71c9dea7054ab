"""Replay captures: whatever a file holds, the answer is events or one ReplayError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctop.sources.replay import ReplayError, ReplaySource, load_capture

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
EVENTISH = st.fixed_dictionaries(
    {"ts": st.floats(0, 2e9) | st.text(max_size=3), "event": st.sampled_from(["exit", "fork", "lost", "boom"])},
    optional={"pid": JSON, "cmdline": JSON, "exit_code": JSON, "signal": JSON, "count": JSON},
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(lines=st.lists(EVENTISH | JSON | st.text(max_size=20), max_size=5))
def test_any_capture_gives_events_or_one_clear_error(tmp_path, lines):
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


def test_binary_file_is_a_clear_error(tmp_path):
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    try:
        load_capture(path)
    except ReplayError as exc:
        assert "not UTF-8" in str(exc)
    else:
        raise AssertionError("no error")


def test_replay_source_shows_by_mask(tmp_path):
    path = tmp_path / "capture.jsonl"
    rows = [
        {"ts": 1, "event": "fork", "pid": 2, "tgid": 2},
        {"ts": 2, "event": "exit", "pid": 2, "tgid": 2, "exit_code": 0},
        {"ts": 3, "event": "exit", "pid": 3, "tgid": 3, "exit_code": 4},
        {"ts": 4, "event": "exit", "pid": 4, "tgid": 4, "signal": "SIGKILL"},
        {"ts": 5, "event": "lost", "count": 2},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    src = ReplaySource(path, 0x20000000)  # nonzero-exit
    src.start()
    got = src.poll(0)
    assert len(got) == len(rows)  # every recorded event is delivered; the mask only decides what is shown
    assert [(e.event, e.pid) for e in got if src.shows(e)] == [("exit", 3), ("exit", 4), ("lost", 0)]
    assert src.finished and src.stats.lost == 2
