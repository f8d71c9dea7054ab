"""The stream of batches (proctop/sinks/stream.py): a source teed to its sinks, and the one headless loop."""

from __future__ import annotations

import pytest
from helpers import REPO

from proctop.model.events import Event
from proctop.model.kinds import PROC_EVENT_ALL, parse_mask
from proctop.sinks.stream import Sink, Tee, run_headless
from proctop.sources.replay import ReplaySource

SAMPLE = REPO / "tests/data/sample.jsonl"


class Kept(Sink):
    """A sink that keeps what the contract hands it, in order."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.header: dict[str, object] | None = None
        self.events: list[Event] = []
        self.batches = 0

    def start(self, header: dict[str, object]) -> None:
        self.calls.append("start")
        self.header = header

    def write(self, events: list[Event]) -> None:
        self.batches += 1
        self.events.extend(events)

    def close(self) -> None:
        self.calls.append("close")


class Broken(ReplaySource):
    def close(self) -> None:
        super().close()
        raise OSError("close failed")


def test_a_tee_hands_every_batch_to_its_sinks_and_closes_them_after_the_source():
    calls: list[str] = []
    first, second = Kept(calls), Kept(calls)
    source = Tee(Broken(SAMPLE, parse_mask("exit")), [first, second])
    source.start()
    assert first.header is not None and first.header["mask"] == ["exit"] and first.header["source"] == "replay"
    polled: list[Event] = []
    while not source.finished:
        polled.extend(source.poll(0))
    source.poll(0)  # an empty batch is handed on too: a sink's clock keeps going
    assert first.events == second.events == polled and len(polled) > 10  # every kind: the mask is a view
    assert first.batches >= 2
    with pytest.raises(OSError, match="close failed"):
        source.close()
    assert calls == ["start", "start", "close", "close"]
    with pytest.raises(OSError):  # the source's own close raises again; the sinks are closed once
        source.close()
    assert calls.count("close") == 2


def test_the_headless_loop_gives_the_output_the_shown_events_up_to_count_while_the_tee_sees_all():
    calls: list[str] = []
    recorder, output = Kept(calls), Kept(calls)
    source = Tee(ReplaySource(SAMPLE, parse_mask("exec")), [recorder])
    source.start()
    try:
        assert run_headless(source, output, count=2) == 0
    finally:
        source.close()
    assert [ev.event for ev in output.events] == ["exec", "exec"]
    assert {ev.event for ev in recorder.events} > {"exec"}
    assert calls == ["start", "start", "close", "close"]  # the output is closed by the loop, the recorder by the Tee


def test_a_stop_ends_the_headless_loop_with_the_outputs_finish():
    class Finishing(Kept):
        def finish(self) -> int:
            self.calls.append("finish")
            return 7

    calls: list[str] = []
    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    try:
        assert run_headless(source, Finishing(calls), stop_flag=lambda: True) == 7
    finally:
        source.close()
    assert calls == ["start", "finish", "close"]
