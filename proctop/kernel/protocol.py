"""Wire format of the proc connector (include/uapi/linux/cn_proc.h, connector.h).

Decoding is the hot path of the whole tool: a fork storm produces tens of
thousands of messages a second. pyroute2's generic Marshal (``ProcEventMarshal``)
parses the same bytes field by field into dict-like objects; measured here it
costs about 2x a ``struct.unpack_from`` decode (0.66-0.77 s vs 0.33-0.36 s CPU
for the 20,000 events of a 10,000-process storm). So the socket is built on
pyroute2 (``proctop.kernel.socket``) while the per-event decode below uses
precompiled ``struct.Struct`` objects. ``bench/`` measures both side by side.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from proctop.errors import ProctopError

# enum proc_cn_mcast_op
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

NETLINK_CONNECTOR = 11  # the netlink protocol number (include/uapi/linux/netlink.h)
CN_IDX_PROC = 1
CN_VAL_PROC = 1

# enum proc_cn_event
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
PROC_EVENT_ALL = (
    PROC_EVENT_FORK
    | PROC_EVENT_EXEC
    | PROC_EVENT_UID
    | PROC_EVENT_GID
    | PROC_EVENT_SID
    | PROC_EVENT_PTRACE
    | PROC_EVENT_COMM
    | PROC_EVENT_NONZERO_EXIT
    | PROC_EVENT_COREDUMP
    | PROC_EVENT_EXIT
)

#: CLI names of the mask bits, in the order of ``--help``. The kernel layer cannot import the
#: model, so these pairs are written here too; tests/core/test_kinds.py holds them equal to
#: ``proctop.model.kinds.KINDS``, from which every other list of event names derives.
MASK_BITS: dict[str, int] = {
    "fork": PROC_EVENT_FORK,
    "exec": PROC_EVENT_EXEC,
    "uid": PROC_EVENT_UID,
    "gid": PROC_EVENT_GID,
    "sid": PROC_EVENT_SID,
    "ptrace": PROC_EVENT_PTRACE,
    "comm": PROC_EVENT_COMM,
    "coredump": PROC_EVENT_COREDUMP,
    "exit": PROC_EVENT_EXIT,
    "nonzero-exit": PROC_EVENT_NONZERO_EXIT,
}
MASK_NAMES = (*MASK_BITS, "all")
DEFAULT_MASK = PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_NONZERO_EXIT


class MaskError(ProctopError, ValueError):
    """An unknown event name in a mask specification (bad input: status 2)."""

    status = 2


def parse_mask(spec: str) -> int:
    """Turn ``"fork,exec,nonzero-exit"`` into the kernel mask; ``all`` is every bit."""
    mask = 0
    names = [part.strip().lower() for part in spec.split(",")]
    if not any(names):
        raise MaskError("empty event list (choose from: " + ", ".join(MASK_NAMES) + ")")
    for name in names:
        if name == "all":
            mask |= PROC_EVENT_ALL
        elif name in MASK_BITS:
            mask |= MASK_BITS[name]
        else:
            raise MaskError(f"unknown event {name!r} (choose from: {', '.join(MASK_NAMES)})")
    return mask


def mask_names(mask: int) -> list[str]:
    """The names of the bits set in ``mask`` (``["all"]`` for the full mask)."""
    if mask & PROC_EVENT_ALL == PROC_EVENT_ALL:
        return ["all"]
    return [name for name, bit in MASK_BITS.items() if mask & bit]


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
_U32x4 = struct.Struct("=IIII")
_U32x6 = struct.Struct("=IIIIII")
_U32x2 = struct.Struct("=II")
_U32x2_16s = struct.Struct("=II16s")


class RawEvent(NamedTuple):
    """One decoded proc_event, before enrichment. Fields not used by a type are 0.

    ``pid``/``tgid`` are the subject (the child for fork); ``ppid``/``ptgid`` the
    parent for fork and exit, the tracer for ptrace; ``a``/``b`` carry
    ruid/euid, rgid/egid, or exit_code/exit_signal.
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
    (_, _, _, _, _, cn_idx, _cn_val, cn_seq, _ack, cn_len, _fl, what, cpu, ts) = _HEAD.unpack_from(buf, off)
    if cn_idx != idx:
        stats.other += 1
        return None
    body = off + HEAD_SIZE
    room = min(end, off + 36 + cn_len) - body  # bytes of event_data present
    if what == PROC_EVENT_NONE:
        stats.acks += 1
        return None
    if what == PROC_EVENT_EXIT:
        if room < 24:
            stats.malformed += 1
            return None
        pid, tgid, code, sig, ppid, ptgid = _U32x6.unpack_from(buf, body)
        if room > 24:
            comm, _ = _names(buf, body, room)
            return RawEvent(what, cpu, ts, pid, tgid, ppid, ptgid, code, sig, comm, cn_seq)
        return RawEvent(what, cpu, ts, pid, tgid, ppid, ptgid, code, sig, b"", cn_seq)
    if what == PROC_EVENT_FORK:
        if room < 16:
            stats.malformed += 1
            return None
        ppid, ptgid, pid, tgid = _U32x4.unpack_from(buf, body)
        return RawEvent(what, cpu, ts, pid, tgid, ppid, ptgid, 0, 0, b"", cn_seq)
    if what in (PROC_EVENT_EXEC, PROC_EVENT_SID):
        if room < 8:
            stats.malformed += 1
            return None
        pid, tgid = _U32x2.unpack_from(buf, body)
        if room > 24 and what == PROC_EVENT_EXEC:
            comm, argv = _names(buf, body, room)
            return RawEvent(what, cpu, ts, pid, tgid, 0, 0, 0, 0, comm, cn_seq, argv)
        return RawEvent(what, cpu, ts, pid, tgid, 0, 0, 0, 0, b"", cn_seq)
    if what in (PROC_EVENT_UID, PROC_EVENT_GID, PROC_EVENT_PTRACE, PROC_EVENT_COREDUMP):
        if room < 16:
            stats.malformed += 1
            return None
        pid, tgid, x, y = _U32x4.unpack_from(buf, body)
        if what in (PROC_EVENT_PTRACE, PROC_EVENT_COREDUMP):
            return RawEvent(what, cpu, ts, pid, tgid, x, y, 0, 0, b"", cn_seq)
        return RawEvent(what, cpu, ts, pid, tgid, 0, 0, x, y, b"", cn_seq)
    if what == PROC_EVENT_COMM:
        if room < 24:
            stats.malformed += 1
            return None
        pid, tgid, comm = _U32x2_16s.unpack_from(buf, body)
        return RawEvent(what, cpu, ts, pid, tgid, 0, 0, 0, 0, comm.split(b"\0", 1)[0], cn_seq)
    stats.malformed += 1
    return None


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
    """The kernel's wire form of ``ev``: tests feed it to the reader (tests/core/test_source_contract.py)."""
    what = ev.what
    if what == PROC_EVENT_EXIT:
        data = _U32x6.pack(ev.pid, ev.tgid, ev.a, ev.b, ev.ppid, ev.ptgid)
    elif what == PROC_EVENT_FORK:
        data = _U32x4.pack(ev.ppid, ev.ptgid, ev.pid, ev.tgid)
    elif what in (PROC_EVENT_PTRACE, PROC_EVENT_COREDUMP):
        data = _U32x4.pack(ev.pid, ev.tgid, ev.ppid, ev.ptgid)
    elif what in (PROC_EVENT_UID, PROC_EVENT_GID):
        data = _U32x4.pack(ev.pid, ev.tgid, ev.a, ev.b)
    elif what == PROC_EVENT_COMM:
        data = _U32x2_16s.pack(ev.pid, ev.tgid, ev.comm[:15])
    else:
        data = _U32x2.pack(ev.pid, ev.tgid)
    data = data.ljust(24, b"\0")  # the union is 24 bytes (exit/comm are the largest)
    body = struct.pack("=IIQ", what, ev.cpu, ev.ts_ns) + data
    cn = CN_MSG_HDR.pack(idx, val, ev.seq, 0, len(body), 0) + body
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn
