"""The ``Source`` contract, held by every source, without root or a 6.6 kernel.

The connector runs here on real encoded kernel messages fed through a
socketpair (``FedSocket``), so its reader thread, the enricher, the bounded
queue and the lost accounting are exercised in every run; the kernel tests
(test_kernel_events.py) do the same against the real connector as root.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import REPO

from proctop.kernel.probe import Capability
from proctop.kernel.protocol import (
    PROC_EVENT_ALL,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONZERO_EXIT,
    RawEvent,
    encode_event,
)
from proctop.model.enrich import Enricher
from proctop.model.events import Event
from proctop.sources.base import Source
from proctop.sources.connector import ConnectorSource
from proctop.sources.replay import ReplaySource

#: Every test here runs over both socket readers, which must give the same events (issue 20).
pytestmark = pytest.mark.usefixtures("reader_kind")

SAMPLE = REPO / "tests" / "data" / "sample.jsonl"
#: Pids far above pid_max: /proc never has them, so enrichment takes its "gone" paths.
CHILD, PARENT = 4_100_000, 4_099_999
OTHER = 4_099_000  # a parent no event introduced (nor is it alive)


class _Raw:
    """What the reader uses of a socket, on one end of a socketpair; every datagram is "from the kernel"."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recvfrom_into(self, buf: bytearray) -> tuple[int, tuple[int, int]]:
        return self.sock.recv_into(buf), (0, 0)

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def getsockname(self) -> tuple[int, int]:
        return (1234, 0)


class FedSocket:
    """A stand-in for ``FilteredProcSocket``: control messages are recorded, events are fed by the test."""

    legacy = False
    cn_idx, cn_val = 1, 1

    def __init__(self) -> None:
        self.reader, self.feeder = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.raw = _Raw(self.reader)
        self.seq = 0
        self.masks: list[int] = []

    def set_rcvbuf(self, size: int) -> int:
        return size

    def listen(self, mask: int = PROC_EVENT_ALL, flags: int | None = None) -> int:
        self.masks.append(mask)
        return 0

    def ignore(self) -> None:
        self.masks.append(0)

    def feed(self, ev: RawEvent) -> None:
        self.feeder.send(encode_event(ev))

    def close(self) -> None:
        self.reader.close()
        self.feeder.close()


def fed_connector(mask: int = PROC_EVENT_ALL) -> tuple[ConnectorSource, FedSocket]:
    fed = FedSocket()
    source = ConnectorSource(Capability(kind="native"), mask, enricher=Enricher(), open_socket=lambda cap: fed)
    return source, fed


def _life_of_a_failure(fed: FedSocket) -> None:
    now = time.monotonic_ns()
    fed.feed(RawEvent(PROC_EVENT_FORK, 0, now, CHILD, CHILD, PARENT, PARENT))
    fed.feed(RawEvent(PROC_EVENT_EXEC, 0, now + 1_000, CHILD, CHILD))
    fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now + 2_500_000, CHILD, CHILD, PARENT, PARENT, 3 << 8, 17))


@pytest.fixture(params=["replay", "connector"])
def any_source(request) -> Iterator[Source]:
    """Every kind of source, started, with events to deliver."""
    if request.param == "replay":
        source: Source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
        source.start()
    else:
        source, fed = fed_connector()
        source.start()
        _life_of_a_failure(fed)
    yield source
    source.close()


def drain(source: Source, want: int, timeout: float = 5.0) -> list[Event]:
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline and not (source.finished and not seen[-1:]):
        seen.extend(source.poll(0.1))
    return seen


def test_every_source_delivers_events_and_counts_them(any_source):
    events = drain(any_source, 3)
    assert len(events) >= 3 and all(isinstance(ev, Event) for ev in events)
    assert any_source.stats.delivered >= len(events)
    assert sum(any_source.stats.by_type.values()) >= 3


def test_every_source_describes_itself_and_keeps_the_contract_attributes(any_source):
    described = any_source.describe()
    assert described["source"] == any_source.kind and described["label"] == any_source.label
    assert any_source.error is None
    assert isinstance(any_source.supported, int) and any_source.supported & PROC_EVENT_EXIT
    assert any_source.command_status is None
    events = drain(any_source, 3)
    assert all(isinstance(any_source.shows(ev), bool) for ev in events)
    for ev in events:  # called on this thread, the consumer's, as the contract says
        chain = any_source.ancestry(ev)
        assert isinstance(chain, list) and all(isinstance(p, int) and isinstance(c, str) for p, c in chain)


def test_every_source_takes_a_mask_change_and_closes_twice(any_source):
    any_source.set_mask(PROC_EVENT_NONZERO_EXIT)
    assert any_source.mask == PROC_EVENT_NONZERO_EXIT
    any_source.close()
    any_source.close()  # idempotent


def test_the_fed_connector_enriches_a_whole_life():
    """Fork, exec and a failed exit of a process /proc never saw: the enricher's gone-paths."""
    source, fed = fed_connector()
    source.start()
    try:
        _life_of_a_failure(fed)
        events = drain(source, 3)
        assert [ev.event for ev in events] == ["fork", "exec", "exit"]
        fork, _, exit_ = events
        assert fork.ppid == PARENT and exit_.ppid == PARENT
        assert (exit_.exit_code, exit_.signal, exit_.failed) == (3, None, True)
        assert exit_.lifetime is not None and abs(exit_.lifetime - 0.0025) < 1e-6  # kernel timestamps
        assert exit_.lifetime_resolution is None
        assert fed.masks == [PROC_EVENT_ALL]
        source.set_mask(0)
        assert fed.masks[-1] == 0  # mask 0 is IGNORE: the kernel reads LISTEN 0 as "everything"
    finally:
        source.close()


def test_the_fed_connector_bounds_its_queue_and_counts_what_it_drops(monkeypatch):
    import proctop.sources.reader as reader

    monkeypatch.setattr(reader, "QUEUE_MAX", 10)
    source, fed = fed_connector(PROC_EVENT_EXIT)
    source.start()
    try:
        now = time.monotonic_ns()
        for i in range(40):  # nobody polls meanwhile
            fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now + i, CHILD + i, CHILD + i, PARENT, PARENT, 1 << 8, 17))
        deadline = time.monotonic() + 5
        while source.stats.received < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        events = drain(source, 11)
        exits = [ev for ev in events if ev.event == "exit"]
        lost = [ev for ev in events if ev.event == "lost"]
        assert len(exits) == 10
        assert sum(ev.count or 0 for ev in lost) == source.stats.lost == 30
    finally:
        source.close()


def test_the_fed_connector_drops_threads_and_what_the_mask_refuses():
    source, fed = fed_connector(PROC_EVENT_NONZERO_EXIT)
    source.start()
    try:
        now = time.monotonic_ns()
        fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now, CHILD, CHILD, PARENT, PARENT, 0, 17))  # a clean exit
        fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now, CHILD + 1, CHILD, PARENT, PARENT, 1 << 8, 17))  # a thread
        fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now, CHILD + 2, CHILD + 2, PARENT, PARENT, 9, 17))  # SIGKILL
        events = drain(source, 1, timeout=2)
        assert [(ev.pid, ev.signal) for ev in events] == [(CHILD + 2, "SIGKILL")]
        assert source.stats.filtered == 2
    finally:
        source.close()


def _reads_through(monkeypatch: pytest.MonkeyPatch, read: Callable[..., object]) -> None:
    """Make both readers see /proc as ``read`` says: the Python one instead of reading, the
    compiled one instead of parsing what its thread read (``EventTaker._read``)."""
    from proctop.sources.creader import CReader
    from proctop.sources.reader import SocketReader

    monkeypatch.setattr(SocketReader, "_read", read)
    monkeypatch.setattr(CReader, "_read", read)


def test_the_reader_reads_proc_at_an_exit_only_for_processes_it_did_not_see_start(monkeypatch):
    """A storm's exits are not read in vain: a process whose named exec the reader saw, or whose
    fork from such a process, is named by the consumer's table; one that started unseen, whose
    exec found it gone, or forked by a process known only from /proc, is read while it may
    still be a zombie."""
    from proctop.model.procfs import Snapshot

    reads: list[tuple[int, bool]] = []
    live = os.getpid()  # the one alive (a shell that exec'd, says the patched read): the compiled
    # reader's thread reads the real /proc and keeps its own record of who is announced

    def recording(self: object, ev: RawEvent, argv: bool, pre: object) -> Snapshot | None:
        reads.append((ev.tgid, argv))
        if ev.tgid == live:
            return Snapshot("sh", 1, None, 0, ["sh", "-c", "..."], "/bin/sh")
        return None  # as /proc answers for these pids: gone

    _reads_through(monkeypatch, recording)
    source, fed = fed_connector(PROC_EVENT_ALL)
    source.start()
    try:
        now = time.monotonic_ns()
        seen, unseen, gone_at_exec, orphan = CHILD, CHILD + 1, CHILD + 2, CHILD + 3
        fed.feed(RawEvent(PROC_EVENT_EXEC, 0, now, live, live))
        fed.feed(RawEvent(PROC_EVENT_FORK, 0, now + 1, seen, seen, live, live))
        fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now + 2, seen, seen, live, live, 0, 17))
        fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now + 3, unseen, unseen, PARENT, PARENT, 0, 17))
        fed.feed(RawEvent(PROC_EVENT_FORK, 0, now + 4, gone_at_exec, gone_at_exec, PARENT, PARENT))
        fed.feed(RawEvent(PROC_EVENT_EXEC, 0, now + 5, gone_at_exec, gone_at_exec))
        fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now + 6, gone_at_exec, gone_at_exec, PARENT, PARENT, 0, 17))
        fed.feed(RawEvent(PROC_EVENT_FORK, 0, now + 7, orphan, orphan, OTHER, OTHER))
        fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now + 8, orphan, orphan, OTHER, OTHER, 0, 17))
        events = drain(source, 9)
        assert [ev.event for ev in events] == ["exec", "fork", "exit", "exit", "fork", "exec", "exit", "fork", "exit"]
        assert reads == [(live, True), (unseen, False), (gone_at_exec, True), (gone_at_exec, False), (orphan, False)]
        assert events[2].cmdline == ["sh", "-c", "..."]  # the fork of a named shell: named after it
    finally:
        source.close()


def test_names_only_events_never_reach_the_consumer_and_the_failure_is_named(monkeypatch):
    """Under nonzero-exit the reader keeps the names of the forks and execs it took for names alone;
    the consumer enriches the failure only, named from the exec its parent made (issue 20)."""
    from proctop.model.procfs import read_cmdline

    enriched: list[int] = []
    real = Enricher.enrich

    def spied(self, raw, snap=None):
        enriched.append(raw.what)
        return real(self, raw, snap)

    monkeypatch.setattr(Enricher, "enrich", spied)
    me = os.getpid()  # "exec'd" here: both readers read the real /proc of this test
    source, fed = fed_connector(PROC_EVENT_NONZERO_EXIT)
    source.start()
    try:
        now = time.monotonic_ns()
        fed.feed(RawEvent(PROC_EVENT_EXEC, 0, now, me, me))
        fed.feed(RawEvent(PROC_EVENT_FORK, 0, now + 1_000, CHILD, CHILD, me, me))
        fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now + 3_000_000, CHILD, CHILD, me, me, 3 << 8, 17))
        (ev,) = drain(source, 1)
        assert (ev.event, ev.pid, ev.exit_code) == ("exit", CHILD, 3)
        assert ev.cmdline == read_cmdline(me) and ev.lifetime == pytest.approx(0.003, abs=1e-5)
        assert ev.parent_cmdline == read_cmdline(me)
        assert enriched == [PROC_EVENT_EXIT] and source.stats.names_only == 2
    finally:
        source.close()


def test_a_read_unsaid_by_a_reuse_unnames_the_children_that_inherited_it():
    """An exec read, a child forked, then a fork of the read's pid stamped before the read ended (the pid
    may have been reused before it was read): the child's failure is nameless, never named after the read."""
    me = os.getpid()
    source, fed = fed_connector(PROC_EVENT_NONZERO_EXIT)
    now = time.monotonic_ns()  # fed before the reader starts: one batch, every read pending in it
    fed.feed(RawEvent(PROC_EVENT_EXEC, 0, now, me, me))
    fed.feed(RawEvent(PROC_EVENT_FORK, 0, now + 1_000, CHILD, CHILD, me, me))
    fed.feed(RawEvent(PROC_EVENT_FORK, 0, now + 2_000, me, me, OTHER, OTHER))
    fed.feed(RawEvent(PROC_EVENT_EXIT, 0, now + 3_000, CHILD, CHILD, me, me, 3 << 8, 17))
    source.start()
    try:
        (ev,) = drain(source, 1)
        assert (ev.event, ev.pid, ev.exit_code) == ("exit", CHILD, 3)
        assert (ev.cmdline, ev.comm, ev.parent_cmdline) == (None, None, None)
    finally:
        source.close()


def test_an_exec_reaped_after_its_argv_was_read_keeps_argv_and_its_lineage(monkeypatch):
    """procfs.snapshot keeps the argv it read when stat is gone by the next read; the rest
    (parent, owner) comes from the fork the enricher saw."""
    from proctop.model.procfs import Snapshot

    argv = ["cc1", "-quiet", "broken.c"]
    _reads_through(monkeypatch, lambda self, ev, argv_, pre: Snapshot(None, None, None, None, argv, None))
    source, fed = fed_connector(PROC_EVENT_ALL)
    source.start()
    try:
        _life_of_a_failure(fed)
        _, exec_, exit_ = drain(source, 3)
        assert (exec_.event, exec_.cmdline, exec_.ppid) == ("exec", argv, PARENT)
        assert (exit_.event, exit_.cmdline, exit_.exit_code) == ("exit", argv, 3)
    finally:
        source.close()


def test_the_process_table_belongs_to_the_consumer_thread_alone(monkeypatch):
    """Threads by construction, without root: the socket reader never touches the table, the
    consumer (here a thread of its own) owns it, and a use from any other thread raises."""
    from proctop.model.proctable import ProcessTable, TableOwnerError

    users: set[int] = set()
    mine = ProcessTable._mine

    def spied(table):
        users.add(threading.get_ident())
        return mine(table)

    monkeypatch.setattr(ProcessTable, "_mine", spied)
    source, fed = fed_connector(PROC_EVENT_ALL)
    source.start()
    got: dict = {}

    def consume() -> None:
        got["events"] = drain(source, 3)
        got["ancestry"] = source.ancestry(got["events"][-1])  # the details panel's question, asked here
        got["ident"] = threading.get_ident()

    try:
        _life_of_a_failure(fed)
        consumer = threading.Thread(target=consume)
        consumer.start()
        consumer.join(10)
        assert [ev.event for ev in got["events"]] == ["fork", "exec", "exit"]
        assert got["ancestry"] and got["ancestry"][0][0] == PARENT
        assert users == {got["ident"]}  # not the reader's thread, not this one
        table = source.enricher.table
        assert table.owner == got["ident"]
        with pytest.raises(TableOwnerError):
            source.ancestry(got["events"][-1])  # from the wrong thread: a bug, said at once
    finally:
        source.close()


def test_the_connector_runs_the_reader_the_environment_names(reader_kind):
    """PROCTOP_READER picks the twin; the "c" runs of this module exercise the compiled thread."""
    from proctop.sources.creader import CReader
    from proctop.sources.reader import SocketReader

    source, fed = fed_connector()
    source.start()
    try:
        assert type(source._reader) is (CReader if reader_kind == "c" else SocketReader)
        _life_of_a_failure(fed)
        assert [ev.event for ev in drain(source, 3)] == ["fork", "exec", "exit"]
    finally:
        source.close()


def _every_kind_of_datagram() -> list[bytes]:
    """Valid events of every type (with the kmod's names after EXEC and EXIT), then the same cut,
    lengthened, bit-flipped and with lying length fields: untrusted input for both decoders."""
    import random
    import struct

    from proctop.model.kinds import MASK_BITS

    now = time.monotonic_ns()
    valid = [
        encode_event(RawEvent(what, 1, now + i, CHILD + i % 3, CHILD + i % 2, PARENT, PARENT, i % 5 << 8, 17, b"c"))
        for i, what in enumerate([*MASK_BITS.values(), PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_EXIT] * 3)
        if what != PROC_EVENT_NONZERO_EXIT
    ]
    names = struct.pack("=IHH16s", 0x4E435450, 40, 0, b"kcomm") + b"argv\0one\0" * 2
    for ev in (RawEvent(PROC_EVENT_EXEC, 0, now, CHILD, CHILD), RawEvent(PROC_EVENT_EXIT, 0, now, CHILD, CHILD)):
        msg = bytearray(encode_event(ev) + names)
        struct.pack_into("=I", msg, 0, len(msg))
        struct.pack_into("=H", msg, 32, len(msg) - 36)
        valid.append(bytes(msg))
    rng = random.Random(20)
    out = list(valid)
    for _ in range(150):
        msg = bytearray(rng.choice(valid))
        how = rng.randrange(5)
        if how == 0:
            msg = msg[: rng.randrange(len(msg))]
        elif how == 1:
            msg += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        elif how == 2:
            for _ in range(rng.randrange(1, 6)):
                msg[rng.randrange(len(msg))] ^= 1 << rng.randrange(8)
        elif how == 3:
            struct.pack_into("=I", msg, 0, rng.choice([0, 15, 16, 51, 52, len(msg) + 1, 0xFFFFFFFF]))
        else:
            struct.pack_into("=H", msg, 32, rng.choice([0, 7, 8, 23, 24, 48, 0xFFFF]))
        out.append(bytes(msg))
    out.append(valid[0] * 3)  # several messages in one datagram
    return out


def test_both_readers_take_the_same_events_from_the_same_datagrams():
    """The twin contract at the decoder: the compiled reader (bounds checks in C) and the Python
    one give the same events, verdicts and counts for valid, cut and lying datagrams alike."""
    from proctop.sources.choice import compiled
    from proctop.sources.creader import CReader
    from proctop.sources.reader import Intro, SocketReader

    if not compiled():
        pytest.skip("the compiled reader is not built")
    datagrams = _every_kind_of_datagram()
    taken = {}
    for cls in (SocketReader, CReader):
        fed = FedSocket()
        fed.reader.setblocking(False)
        reader = cls(fed, idx=1, mask=PROC_EVENT_FORK | PROC_EVENT_EXIT, names_bits=PROC_EVENT_EXEC, threads=False,
                     renew=lambda: None)  # fmt: skip
        reader.start()
        try:
            items: list = []
            for d in datagrams:
                fed.feeder.send(d)
                time.sleep(0.0005)
            idle = time.monotonic()
            while time.monotonic() - idle < 0.5:
                got = reader.take(0.05, 100_000)
                if got:
                    items += got
                    idle = time.monotonic()
        finally:
            reader.stop()
            fed.close()
        s = reader.stats
        events = [it if isinstance(it, Intro) else (it[0], it[2]) if isinstance(it, tuple) else it for it in items]
        taken[cls.__name__] = (events, s.received, s.filtered, s.names_only, s.malformed, s.lost)
    assert taken["CReader"] == taken["SocketReader"]
    events, _received, filtered, names_only, malformed, _lost = taken["SocketReader"]
    intros = [e for e in events if isinstance(e, Intro)]
    # every path was taken; names-only events stay in the reader, which introduces their processes
    assert len(events) - len(intros) > 10 and intros and filtered and names_only and malformed > 20


@pytest.mark.parametrize("known", [False, True], ids=["without-its-layout", "with-its-layout"])
def test_a_new_kind_is_decoded_by_both_readers_from_its_layout(monkeypatch, known: bool):
    """The compiled reader has no kind of its own: it decodes by ``protocol.LAYOUTS`` (creader.wire_table),
    so a made-up kind with a row there comes out of both readers alike, and without one both count it
    malformed."""
    from proctop.kernel.protocol import LAYOUTS, Layout, RawEvent, encode_event
    from proctop.sources.choice import compiled
    from proctop.sources.creader import CReader
    from proctop.sources.reader import SocketReader

    if not compiled():
        pytest.skip("the compiled reader is not built")
    made_up = RawEvent(0x400, 1, 99, pid=7, tgid=7, a=5, comm=b"named")
    if known:
        monkeypatch.setitem(LAYOUTS, 0x400, Layout("tgid pid comm a"))
    datagram = encode_event(made_up)
    taken = {}
    for cls in (SocketReader, CReader):
        fed = FedSocket()
        fed.reader.setblocking(False)
        reader = cls(fed, idx=1, mask=0x400, names_bits=0, threads=False, renew=lambda: None)
        reader.start()
        try:
            fed.feeder.send(datagram)
            deadline = time.monotonic() + 2
            items: list = []
            while time.monotonic() < deadline and not items and reader.stats.malformed == 0:
                items += reader.take(0.05, 100)
        finally:
            reader.stop()
            fed.close()
        taken[cls.__name__] = ([item[0] for item in items], reader.stats.malformed)
    expected = ([made_up], 0) if known else ([], 1)
    assert taken == {"SocketReader": expected, "CReader": expected}
