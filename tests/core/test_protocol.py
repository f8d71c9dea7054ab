"""The wire format: encode/decode round trips, the kernel's filter, hostile input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink.connector.cn_proc import ProcEventMarshal

from proctop.kernel.protocol import (
    CN_IDX_PROC,
    LAYOUTS,
    PROC_EVENT_ALL,
    PROC_EVENT_COMM,
    PROC_EVENT_COREDUMP,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_GID,
    PROC_EVENT_NONZERO_EXIT,
    PROC_EVENT_PTRACE,
    PROC_EVENT_SID,
    PROC_EVENT_UID,
    DecodeStats,
    Layout,
    RawEvent,
    decode_buffer,
    encode_event,
    encode_proc_input,
    mask_accepts,
)

SAMPLES = [
    RawEvent(PROC_EVENT_FORK, 1, 123, pid=20, tgid=20, ppid=10, ptgid=10, seq=7),
    RawEvent(PROC_EVENT_EXEC, 0, 124, pid=20, tgid=20),
    RawEvent(PROC_EVENT_UID, 0, 125, pid=20, tgid=20, a=1000, b=0),
    RawEvent(PROC_EVENT_GID, 1, 125, pid=20, tgid=20, a=100, b=27),
    RawEvent(PROC_EVENT_SID, 0, 125, pid=20, tgid=20),
    RawEvent(PROC_EVENT_PTRACE, 0, 126, pid=20, tgid=20, ppid=30, ptgid=30),
    RawEvent(PROC_EVENT_COMM, 1, 127, pid=21, tgid=20, comm=b"worker"),
    RawEvent(PROC_EVENT_COREDUMP, 1, 127, pid=20, tgid=20, ppid=10, ptgid=10),
    RawEvent(PROC_EVENT_EXIT, 1, 128, pid=20, tgid=20, ppid=10, ptgid=10, a=3 << 8, b=17),
]


def test_the_samples_cover_every_layout():
    assert {ev.what for ev in SAMPLES} == set(LAYOUTS)


@pytest.mark.parametrize("ev", SAMPLES, ids=lambda e: hex(e.what))
def test_round_trip(ev):
    data = encode_event(ev)
    stats = DecodeStats()
    assert decode_buffer(data, len(data), stats) == [ev]
    assert stats.malformed == 0


@pytest.mark.parametrize("ev", SAMPLES, ids=lambda e: hex(e.what))
def test_fast_decoder_agrees_with_pyroute2(ev):
    """pyroute2's generic marshal stays the reference for the hand-written decoder."""
    data = encode_event(ev)
    (msg,) = ProcEventMarshal().parse(data)
    assert msg["what"] == ev.what and msg["timestamp_ns"] == ev.ts_ns
    if ev.what == PROC_EVENT_EXIT:
        assert (msg["process_pid"], msg["exit_code"], msg["parent_tgid"]) == (ev.pid, ev.a, ev.ptgid)
    if ev.what == PROC_EVENT_FORK:
        assert (msg["child_pid"], msg["parent_tgid"]) == (ev.pid, ev.ptgid)
    if ev.what == PROC_EVENT_COMM:
        assert msg["comm"] == ev.comm.decode()
    if ev.what == PROC_EVENT_UID:
        assert (msg["process_tgid"], msg["ruid"], msg["euid"]) == (ev.tgid, ev.a, ev.b)
    if ev.what == PROC_EVENT_GID:
        assert (msg["process_tgid"], msg["rgid"], msg["egid"]) == (ev.tgid, ev.a, ev.b)
    if ev.what == PROC_EVENT_SID:
        assert (msg["process_pid"], msg["process_tgid"]) == (ev.pid, ev.tgid)
    if ev.what == PROC_EVENT_PTRACE:
        assert (msg["process_pid"], msg["tracer_pid"], msg["tracer_tgid"]) == (ev.pid, ev.ppid, ev.ptgid)
    if ev.what == PROC_EVENT_COREDUMP:
        assert (msg["process_pid"], msg["parent_pid"], msg["parent_tgid"]) == (ev.pid, ev.ppid, ev.ptgid)


def test_a_datagram_with_several_messages():
    data = b"".join(encode_event(ev) for ev in SAMPLES)
    assert decode_buffer(data, len(data), DecodeStats()) == SAMPLES


def test_truncated_and_unknown_messages_are_counted_not_raised():
    stats = DecodeStats()
    full = encode_event(SAMPLES[-1])
    assert decode_buffer(full[:40], 40, stats) == []  # nlmsg_len claims more than we have
    cut = bytearray(full[:60])
    struct.pack_into("=I", cut, 0, 60)  # consistent header, event data cut short
    assert decode_buffer(cut, 60, stats) == []
    unknown = bytearray(full)
    struct.pack_into("=I", unknown, 36, 0x1234)
    assert decode_buffer(unknown, len(unknown), stats) == []
    assert stats.malformed == 3
    other = bytearray(full)
    struct.pack_into("=I", other, 16, CN_IDX_PROC + 10)  # another connector's message
    assert decode_buffer(other, len(other), stats) == []
    assert stats.other == 1


@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data):
    stats = DecodeStats()
    events = decode_buffer(data, len(data), stats)
    assert all(isinstance(e, RawEvent) for e in events)


@given(st.sampled_from(SAMPLES), st.integers(0, 200), st.binary(max_size=64))
def test_mangled_messages_never_raise(ev, cut, tail):
    data = encode_event(ev)[:cut] + tail
    decode_buffer(data, len(data), DecodeStats())


def test_proc_input_encoding_matches_the_uapi_layout():
    msg = encode_proc_input(1, PROC_EVENT_NONZERO_EXIT, seq=5)
    assert len(msg) == 16 + 20 + 8
    assert struct.unpack_from("=IIIIHH", msg, 16) == (1, 1, 5, 0, 8, 0)
    assert struct.unpack_from("=II", msg, 36) == (1, 0x20000000)
    legacy = encode_proc_input(1, 0, legacy=True)
    assert len(legacy) == 16 + 20 + 4


def test_user_space_filter_is_the_kernels():
    nz = PROC_EVENT_NONZERO_EXIT
    assert mask_accepts(nz, PROC_EVENT_EXIT, 256)
    assert not mask_accepts(nz, PROC_EVENT_EXIT, 0)
    assert not mask_accepts(nz, PROC_EVENT_FORK, 0)
    assert mask_accepts(PROC_EVENT_EXIT, PROC_EVENT_EXIT, 0)
    assert mask_accepts(nz | PROC_EVENT_EXIT, PROC_EVENT_EXIT, 0)
    assert mask_accepts(0, PROC_EVENT_FORK, 0)  # 0 means all, as in the kernel
    assert not mask_accepts(PROC_EVENT_FORK, 0, 0)  # acks only under ALL
    assert mask_accepts(PROC_EVENT_ALL, 0, 0)


def _with_names(ev: RawEvent, comm: bytes, argv: bytes, magic: int = 0x4E435450) -> bytes:
    """``ev`` as proctop_cn sends it to a names subscriber (kmod/README.md, Protocol 5)."""
    ext = struct.pack("=IHH16s", magic, len(argv), 0, comm) + argv
    ext += b"\0" * (-len(ext) % 8)
    msg = bytearray(encode_event(ev, idx=11) + ext)
    struct.pack_into("=I", msg, 0, len(msg))  # nlmsg_len
    struct.pack_into("=H", msg, 32, 40 + len(ext))  # cn_msg.len
    return bytes(msg)


def test_kmod_names_extension_is_decoded_and_optional():
    exe = RawEvent(PROC_EVENT_EXEC, 0, 124, pid=20, tgid=20)
    ext = RawEvent(PROC_EVENT_EXIT, 1, 128, pid=20, tgid=20, ppid=10, ptgid=10, a=3 << 8, b=17)
    buf = _with_names(exe, b"ptc-named", b"ptc-named\0child\x007\0") + _with_names(ext, b"ptc-named", b"")
    got = decode_buffer(buf, len(buf), stats := DecodeStats(), 11)
    assert [(e.what, e.comm, e.argv) for e in got] == [
        (PROC_EVENT_EXEC, b"ptc-named", b"ptc-named\0child\x007\0"),
        (PROC_EVENT_EXIT, b"ptc-named", b""),
    ]
    assert got[1].a == 3 << 8 and stats.malformed == 0
    # a foreign tail (no magic) is ignored, the event itself still decoded
    bad = _with_names(exe, b"x", b"y", magic=0)
    assert decode_buffer(bad, len(bad), DecodeStats(), 11) == [exe._replace(seq=0)]
    # an argv_len beyond the message yields what is there, never more, never raises
    lying = bytearray(_with_names(exe, b"sh", b"sh\0-c\0"))
    struct.pack_into("=H", lying, 76 + 4, 200)  # argv_len of the extension
    assert decode_buffer(lying, len(lying), DecodeStats(), 11)[0].argv == b"sh\0-c\0\0\0"  # + padding


def test_names_request_is_the_kmods_12_byte_form():
    msg = encode_proc_input(1, PROC_EVENT_EXEC, idx=11, val=1, seq=5, flags=1)
    assert struct.unpack_from("=IIIIHH", msg, 16)[4] == 12
    assert struct.unpack_from("=III", msg, 36) == (1, PROC_EVENT_EXEC, 1)


def test_a_layout_is_the_whole_wire_format_of_a_kind(monkeypatch):
    """A made-up type decodes and encodes by its one row in ``LAYOUTS``; without the row it is
    counted as malformed, never raised; a layout naming a field RawEvent lacks is refused."""
    made_up = RawEvent(0x400, 1, 99, pid=7, tgid=6, a=5, comm=b"named")
    unknown = encode_event(made_up)  # no row yet: only pid and tgid are sent
    stats = DecodeStats()
    assert decode_buffer(unknown, len(unknown), stats) == [] and stats.malformed == 1
    monkeypatch.setitem(LAYOUTS, 0x400, Layout("tgid pid comm a"))
    data = encode_event(made_up)
    assert struct.unpack_from("=II16sI", data, 52) == (6, 7, b"named" + b"\0" * 11, 5)
    assert decode_buffer(data, len(data), stats := DecodeStats()) == [made_up] and stats.malformed == 0
    assert decode_buffer(data[:-20], len(data) - 20, stats) == [] and stats.malformed == 1  # cut: too short
    for bad in ("pid tgid uid", "pid pid tgid", "pid a"):
        with pytest.raises(ValueError, match="layout"):
            Layout(bad)
    with pytest.raises(ValueError, match="layout"):
        Layout("pid tgid", names="exe")
