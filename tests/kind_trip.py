"""Follow one event of a kind from the wire to the screen, checking each step.

Used by tests/core/test_kinds.py for every kind of the table, and run as a
script (``python tests/kind_trip.py WHAT DIR``) against a copy of the tree to which
a test added a made-up kind: the proof that a kind's row and its own data are
all a new kind needs. Imports only ``proctop`` and the standard library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from proctop.kernel.protocol import LAYOUTS, PROC_EVENT_ALL, DecodeStats, RawEvent, decode_buffer, encode_event
from proctop.model.enrich import Enricher
from proctop.model.events import Event
from proctop.model.kinds import BY_WHAT, EVENT_KINDS, event_passes, mask_names, parse_mask
from proctop.model.procfs import GONE
from proctop.sinks.text.rows import Row, detail_of
from proctop.sources.replay import ReplaySource

#: Above any pid_max (2**22): no /proc entry can answer for these, so enrichment works from the event alone.
PID = 4_200_000
#: A value for each field a layout can carry, distinct so a swapped field shows.
VALUES = {"pid": PID, "tgid": PID, "ppid": PID + 1, "ptgid": PID + 1, "a": 3 << 8, "b": 17, "comm": b"kind-trip"}


def sample(what: int) -> RawEvent:
    """An event of type ``what`` with every field its layout carries set."""
    return RawEvent(what, 1, 5_000_000_000, **{f: VALUES[f] for f in LAYOUTS[what].fields}, seq=9)


def _decoded(value: object) -> object:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def round_trip(what: int, tmp: Path) -> Event:
    """encode -> decode -> enrich -> JSON -> replay -> the same event; returns it."""
    kind = BY_WHAT[what]
    raw = sample(what)
    data = encode_event(raw)
    stats = DecodeStats()
    assert decode_buffer(data, len(data), stats) == [raw], kind.name
    assert stats.malformed == 0

    enricher = Enricher(clock_offset=0.0)
    try:
        ev = enricher.enrich(raw, GONE)  # GONE: the reader found no /proc entry; none is read
        entry = enricher.table.live.get(PID) or enricher.table.exited.get(PID)
    finally:
        enricher.close()
    assert ev.event == kind.name and ev.pid == PID and ev.ts == 5.0
    for field, wire in kind.copies:
        assert getattr(ev, field) == _decoded(getattr(raw, wire)), (kind.name, field)
    for field, source in kind.learns:
        assert entry is not None and getattr(entry, field) == getattr(ev, source), (kind.name, field)

    line = ev.to_line()
    assert Event.from_dict(json.loads(line)) == ev, kind.name
    path = tmp / f"{kind.name}.jsonl"
    path.write_bytes(line)
    source = ReplaySource(path, PROC_EVENT_ALL)
    source.start()
    got: list[Event] = []
    try:
        while not source.finished:
            got.extend(source.poll(0.1))
        assert got == [ev], kind.name
        assert source.shows(ev)
        learnt = source.table.live.get(PID) or source.table.exited.get(PID)
        assert learnt is not None
        for field, field_source in kind.learns:
            assert getattr(learnt, field) == getattr(ev, field_source), (kind.name, field)
    finally:
        source.close()

    assert kind.name in EVENT_KINDS
    assert parse_mask(kind.name) == kind.bit and mask_names(kind.bit) == [kind.name]
    assert event_passes(kind.bit, ev)
    assert detail_of(ev) == detail_of(got[0])
    if kind.detail:
        assert detail_of(ev), kind.name
    assert Row(ev).label == kind.row
    return ev


if __name__ == "__main__":
    event = round_trip(int(sys.argv[1], 0), Path(sys.argv[2]))
    print(event.to_json())
    print(detail_of(event))
