"""Wire format of the proc connector (include/uapi/linux/cn_proc.h, connector.h).

Decoding is the hot path of the whole tool: a fork storm produces tens of
thousands of messages a second. pyroute2's generic Marshal (``ProcEventMarshal``)
parses the same bytes field by field into dict-like objects; measured here it
costs about 2x a ``struct.unpack_from`` decode (0.66-0.77 s vs 0.33-0.36 s CPU
for the 20,000 events of a 10,000-process storm). So the socket is built on
pyroute2 (``proctop.kernel.socket``) while the per-event decode below uses
precompiled ``struct.Struct`` objects. ``bench/`` measures both side by side.

Each event type's layout is one row of ``LAYOUTS`` (struct format and field
order as data) read by one generic decoder and encoder: 0.80 million events/s
against 0.86 million for the if/elif per type it replaced (fork/exec/exit/comm/uid
mix, best of 15, process time, here at load 3), the price of a new kind being one row.
"""

from __future__ import annotations

import functools
import operator
import struct
from typing import NamedTuple

# enum proc_cn_mcast_op
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

NETLINK_CONNECTOR = 11  # the netlink protocol number (include/uapi/linux/netlink.h)
CN_IDX_PROC = 1
CN_VAL_PROC = 1

# enum proc_cn_event: the kernel's numbers. Each kind's layout is in ``LAYOUTS`` below;
# everything else about a kind (its name, mask word, enrichment, text) is its row in
# ``proctop.model.kinds``, which reads this table and refuses to load if the two disagree.
PROC_EVENT_NONE = 0x00000000
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_UID = 0x00000004
PROC_EVENT_GID = 0x00000040
PROC_EVENT_SID = 0x00000080
PROC_EVENT_PTRACE = 0x00000100
PROC_EVENT_COMM = 0x00000200
PROC_EVENT_NONZERO_EXIT = 0x20000000  # a mask bit only: such exits arrive as PROC_EVENT_EXIT
PROC_EVENT_COREDUMP = 0x40000000
PROC_EVENT_EXIT = 0x80000000


class RawEvent(NamedTuple):
    """One decoded proc_event, before enrichment. Fields not used by a type are 0.

    ``pid``/``tgid`` are the subject (the child for fork); ``ppid``/``ptgid`` the
    parent for fork, exit and a core dump, the tracer for ptrace; ``a``/``b`` carry
    ruid/euid, rgid/egid, or exit_code/exit_signal (each kind's ``Layout`` says which).
    """

    what: int
    cpu: int
    ts_ns: int
    pid: int
    tgid: int
    ppid: int = 0
    ptgid: int = 0
    a: int = 0
    b: int = 0
    comm: bytes = b""
    seq: int = 0
    argv: bytes = b""  # kmod names extension: NUL-separated argv of an EXEC


#: The ``RawEvent`` fields a layout can fill, in ``RawEvent``'s order (after what, cpu, ts_ns).
FILLED = ("pid", "tgid", "ppid", "ptgid", "a", "b", "comm")
_COMM_SIZE = 16  # TASK_COMM_LEN
_UNION_SIZE = 24  # the event_data union: exit and comm, its largest members


class Layout:
    """One member of the kernel's ``event_data`` union: ``RawEvent`` fields in wire order.

    Every field is a ``__u32`` but ``comm`` (``char comm[16]``). ``names`` are
    the parts of the kmod's names extension (``comm``, ``argv``) the kind keeps
    when the module appends it. The decoder and the encoder read nothing else
    about a kind: a new kind is one row of ``LAYOUTS``.
    """

    __slots__ = ("fields", "names", "offsets", "pick", "size", "struct", "unpack")

    def __init__(self, fields: str, *, names: str = "") -> None:
        self.fields = tuple(fields.split())
        self.names = tuple(names.split())
        unknown = [f for f in self.fields if f not in FILLED] + [n for n in self.names if n not in ("comm", "argv")]
        if unknown or len(set(self.fields)) != len(self.fields) or not {"pid", "tgid"} <= set(self.fields):
            raise ValueError(f"layout {fields!r}/{names!r}: needs pid and tgid, once each; unknown: {unknown}")
        self.struct = struct.Struct("=" + "".join(f"{_COMM_SIZE}s" if f == "comm" else "I" for f in self.fields))
        self.size = self.struct.size  # bytes of event_data an event of this kind must have
        #: Each field's byte offset in event_data (the compiled reader decodes by these: creader.wire_table).
        sizes = [_COMM_SIZE if f == "comm" else 4 for f in self.fields]
        self.offsets = {f: sum(sizes[:i]) for i, f in enumerate(self.fields)}
        self.unpack = self.struct.unpack_from
        # The unpacked values, then a 0 and a b"" for the fields this kind leaves out:
        # one C-level itemgetter puts them in RawEvent's order.
        n = len(self.fields)
        self.pick = operator.itemgetter(
            *(self.fields.index(f) if f in self.fields else n + (f == "comm") for f in FILLED)
        )

    def __repr__(self) -> str:
        return f"Layout({' '.join(self.fields)!r}, names={' '.join(self.names)!r})"


#: Each event type's ``event_data`` member (struct proc_event, include/uapi/linux/cn_proc.h), by ``what``.
LAYOUTS: dict[int, Layout] = {
    PROC_EVENT_FORK: Layout("ppid ptgid pid tgid"),  # fork_proc_event: parent, then child
    PROC_EVENT_EXEC: Layout("pid tgid", names="comm argv"),
    PROC_EVENT_UID: Layout("pid tgid a b"),  # id_proc_event: ruid, euid
    PROC_EVENT_GID: Layout("pid tgid a b"),  # id_proc_event: rgid, egid
    PROC_EVENT_SID: Layout("pid tgid"),
    PROC_EVENT_PTRACE: Layout("pid tgid ppid ptgid"),  # tracer_pid, tracer_tgid
    PROC_EVENT_COMM: Layout("pid tgid comm"),
    PROC_EVENT_COREDUMP: Layout("pid tgid ppid ptgid"),  # parent_pid, parent_tgid
    PROC_EVENT_EXIT: Layout("pid tgid a b ppid ptgid", names="comm"),  # exit_code, exit_signal, parent
}

#: Every mask bit: each event type and the mask-only NONZERO_EXIT (the kernel's PROC_EVENT_ALL).
PROC_EVENT_ALL: int = functools.reduce(operator.or_, LAYOUTS, PROC_EVENT_NONZERO_EXIT)


def mask_accepts(mask: int, what: int, exit_code: int) -> bool:
    """The kernel's cn_filter() (drivers/connector/cn_proc.c, 6.6+), in user space.

    Used where the kernel cannot filter (before 6.6, as root) so that every
    source delivers the same events for the same mask. Mask 0 means all, as in
    the kernel; acks (``PROC_EVENT_NONE``) pass only under the full mask.
    """
    if mask == 0 or mask == PROC_EVENT_ALL:
        return True
    if mask & PROC_EVENT_NONZERO_EXIT and what == PROC_EVENT_EXIT and exit_code:
        return True
    return bool(mask & what)


# --- encoding ---------------------------------------------------------------

NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
CN_MSG_HDR = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
NLMSG_DONE = 3
NLMSG_ERROR = 2
NLMSG_OVERRUN = 4


def encode_proc_input(
    op: int,
    mask: int,
    *,
    idx: int = CN_IDX_PROC,
    val: int = CN_VAL_PROC,
    seq: int = 0,
    port: int = 0,
    legacy: bool = False,
    flags: int | None = None,
) -> bytes:
    """A complete netlink message carrying ``struct proc_input`` (or the 4-byte op).

    ``legacy`` sends only ``enum proc_cn_mcast_op`` as kernels before 6.6 expect;
    they silently ignore the 8-byte form. ``flags`` (the kmod only, see
    ``KMOD_WANT_NAMES``) sends the module's 12-byte ``{op, mask, flags}``.
    """
    if legacy:
        payload = struct.pack("=I", op)
    elif flags is not None:
        payload = struct.pack("=III", op, mask, flags)
    else:
        payload = struct.pack("=II", op, mask)
    cn = CN_MSG_HDR.pack(idx, val, seq, 0, len(payload), 0) + payload
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(cn), NLMSG_DONE, 0, seq, port) + cn


# --- decoding ---------------------------------------------------------------

#: kmod extension (kmod/README.md): a 12-byte LISTEN with this flag makes the
#: module append ``struct ptc_names`` {magic, argv_len, flags, comm[16], argv}
#: to EXEC and EXIT events, after the unchanged 40-byte proc_event.
KMOD_WANT_NAMES = 0x1
_NAMES = struct.Struct("=IHH16s")
_NAMES_MAGIC = 0x4E435450  # "PTCN"

_HEAD = struct.Struct("=IHHIIIIIIHHIIQ")  # nlmsghdr + cn_msg + what, cpu, timestamp_ns
HEAD_SIZE = _HEAD.size  # 52
_PAD = (0, b"")  # what Layout.pick takes for the fields a kind leaves out
_new_tuple = tuple.__new__


class DecodeStats:
    """Counters the decoder keeps instead of raising on bad input."""

    __slots__ = ("acks", "errors", "malformed", "other")

    def __init__(self) -> None:
        self.malformed = 0
        self.acks = 0
        self.errors = 0
        self.other = 0


def decode_buffer(
    buf: bytes | bytearray | memoryview,
    nbytes: int,
    stats: DecodeStats,
    idx: int = CN_IDX_PROC,
) -> list[RawEvent]:
    """Decode every proc_event in one datagram. Never raises: bad parts are counted.

    A datagram normally holds one message, but the loop walks NLMSG_ALIGN'd
    messages so batched or foreign input is handled the same way.
    """
    out: list[RawEvent] = []
    off = 0
    while off + 16 <= nbytes:
        nl_len, nl_type = struct.unpack_from("=IH", buf, off)
        if nl_len < 16 or off + nl_len > nbytes:
            stats.malformed += 1
            break
        end = off + nl_len
        if nl_type == NLMSG_ERROR:
            stats.errors += 1
        elif nl_len < HEAD_SIZE:
            stats.malformed += 1
        else:
            ev = _decode_one(buf, off, end, stats, idx)
            if ev is not None:
                out.append(ev)
        off += (nl_len + 3) & ~3
    return out


def ack_error(buf: bytes | bytearray | memoryview, nbytes: int, idx: int, seq: int) -> int | None:
    """The ``err`` of the ack answering request ``seq`` in one datagram, or None if there is none.

    The kmod acks every LISTEN under any mask (kmod/README.md, Protocol 3):
    ``cn_msg.ack = seq + 1``, ``what = PROC_EVENT_NONE``, then the errno (0 = accepted).
    """
    off = 0
    while off + HEAD_SIZE + 4 <= nbytes:
        nl_len = struct.unpack_from("=I", buf, off)[0]
        if nl_len < 16 or off + nl_len > nbytes:
            return None
        if nl_len >= HEAD_SIZE + 4:
            head = _HEAD.unpack_from(buf, off)
            if head[5] == idx and head[8] == seq + 1 and head[11] == PROC_EVENT_NONE:
                return int(struct.unpack_from("=I", buf, off + HEAD_SIZE)[0])
        off += (nl_len + 3) & ~3
    return None


def _decode_one(
    buf: bytes | bytearray | memoryview, off: int, end: int, stats: DecodeStats, idx: int
) -> RawEvent | None:
    """One message, by its kind's ``Layout``; a ``what`` without one (a newer kernel's) is malformed here,
    as in the compiled reader."""
    (_, _, _, _, _, cn_idx, _cn_val, cn_seq, _ack, cn_len, _fl, what, cpu, ts) = _HEAD.unpack_from(buf, off)
    if cn_idx != idx:
        stats.other += 1
        return None
    if what == PROC_EVENT_NONE:
        stats.acks += 1
        return None
    body = off + HEAD_SIZE
    room = min(end, off + 36 + cn_len) - body  # bytes of event_data present
    layout = LAYOUTS.get(what)
    if layout is None or room < layout.size:
        stats.malformed += 1
        return None
    values: tuple[int, int, int, int, int, int, bytes] = layout.pick(layout.unpack(buf, body) + _PAD)
    if (layout.names and room > _UNION_SIZE) or values[6]:
        pid, tgid, ppid, ptgid, a, b, comm = values
        if not layout.names or room <= _UNION_SIZE:  # comm in event_data (PROC_EVENT_COMM)
            return RawEvent(what, cpu, ts, pid, tgid, ppid, ptgid, a, b, comm.split(b"\0", 1)[0], cn_seq)
        comm, argv = _names(buf, body, room)
        if "argv" not in layout.names:
            argv = b""
        return RawEvent(what, cpu, ts, pid, tgid, ppid, ptgid, a, b, comm, cn_seq, argv)
    # tuple.__new__ skips NamedTuple's Python-level __new__: 0.16 us an event (timeit, here at load 3)
    return _new_tuple(RawEvent, (what, cpu, ts, *values, cn_seq, b""))


def _names(buf: bytes | bytearray | memoryview, body: int, room: int) -> tuple[bytes, bytes]:
    """comm and argv of the kmod names extension after the 24-byte event_data."""
    if room < 24 + _NAMES.size:
        return b"", b""
    magic, argv_len, _flags, comm = _NAMES.unpack_from(buf, body + 24)
    if magic != _NAMES_MAGIC:
        return b"", b""
    start = body + 24 + _NAMES.size
    argv = bytes(buf[start : start + min(argv_len, room - 24 - _NAMES.size)])
    return comm.split(b"\0", 1)[0], argv


def encode_event(ev: RawEvent, idx: int = CN_IDX_PROC, val: int = CN_VAL_PROC) -> bytes:
    """The kernel's wire form of ``ev`` by its kind's ``Layout``: tests feed it to the readers
    (tests/core/test_source_contract.py). A ``what`` without a layout sends only pid and tgid."""
    layout = LAYOUTS.get(ev.what, _BARE)
    values = [ev.comm[: _COMM_SIZE - 1] if f == "comm" else getattr(ev, f) for f in layout.fields]
    data = layout.struct.pack(*values).ljust(_UNION_SIZE, b"\0")
    body = struct.pack("=IIQ", ev.what, ev.cpu, ev.ts_ns) + data
    cn = CN_MSG_HDR.pack(idx, val, ev.seq, 0, len(body), 0) + body
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


_BARE = Layout("pid tgid")  # an ack, or a type no kind has: what encode_event sends for it
