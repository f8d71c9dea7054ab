"""The proc connector socket, taught the 6.6 filter: a stdlib socket, with pyroute2's beside it.

``FilteredProcSocket`` sends ``struct proc_input`` (and the 4-byte op of older
kernels), encoded by ``protocol.encode_proc_input`` (the one encoder of
LISTEN/IGNORE, also used by the probe). ``listen()`` never waits for the
LISTEN ack, which the kernel filters out under any mask but ALL.

How it is bound: a stdlib ``socket`` bound to the connector's group, the fast
path beside pyroute2's ``ProcEventSocket`` (``open_with_pyroute2``, its twin).
Importing pyroute2 costs 140-190 ms of proctop's ~0.5 s start (``python -X
importtime``, load 2.4) and 150-420 ms on a busy host, where the first failure
with 100,000 live processes must be reported within 0.5 s (bench/scale.py:
0.48-0.95 s with it); and pyroute2 0.9.7 hides the bind's errno (a KeyError
after trying ports 20-199), which is the whole answer when a kernel refuses a
non-root subscriber. pyroute2 stays where it fits: the twin open below, held
to the same subscription by tests/core/test_kernel_events.py, and the decoder
cross-check in tests/core/test_protocol.py.

Reading goes through the same stdlib socket: the reader thread calls
``recvfrom_into`` on it and decodes with ``proctop.kernel.protocol`` (see
there for why not pyroute2's marshal).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from proctop.kernel.protocol import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    NETLINK_CONNECTOR,
    PROC_CN_MCAST_IGNORE,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_ALL,
    encode_proc_input,
)

SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33  # not exported by the socket module
#: Receive buffer asked for. Root gets it through SO_RCVBUFFORCE; others are
#: capped by net.core.rmem_max (often 208 KiB).
DEFAULT_RCVBUF = 32 * 1024 * 1024


T = TypeVar("T")


def bind_error(groups: int, cause: BaseException) -> OSError:
    """The ``OSError`` behind a failed pyroute2 bind, found by binding the same way once more.

    pyroute2 (0.9.7, ``_sync_bind``) tries ports 20-199, logs each ``OSError``
    at debug level and raises ``KeyError('no free address available')``: the
    errno (EPERM where the kernel refuses a non-root subscriber) is lost. One
    plain bind to the same groups brings it back. Should that bind succeed,
    the failure was pyroute2's alone: EIO, with its message.
    """
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR) as probe:
            probe.bind((0, groups))
    except OSError as exc:
        return OSError(exc.errno, exc.strerror)
    return OSError(errno.EIO, f"pyroute2 could not bind the connector socket ({type(cause).__name__}: {cause})")


def off_event_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` where pyroute2's synchronous API can run its own asyncio loop.

    pyroute2 0.9 drives a private event loop with ``run_until_complete``, which
    raises inside a thread that already runs one (Textual's). There, ``fn`` runs
    in a short-lived thread instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    result: list[T] = []
    error: list[BaseException] = []

    def call() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    worker = threading.Thread(target=call, name="proctop-pyroute2", daemon=True)
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]


class FilteredProcSocket:
    """A proc connector socket whose kernel-side mask can change while it is open.

    ``idx``/``val``/``groups`` default to the kernel's own proc connector
    (multicast group CN_IDX_PROC). The kmod backport uses another idx, no
    group, and unicasts to the subscribing port.
    """

    def __init__(
        self, raw: socket.socket, *, idx: int = CN_IDX_PROC, val: int = CN_VAL_PROC, legacy: bool = False
    ) -> None:
        self._raw: socket.socket | None = raw
        self.cn_idx = idx
        self.cn_val = val
        self.legacy = legacy
        self.seq = 0

    @classmethod
    def open(
        cls, *, idx: int = CN_IDX_PROC, val: int = CN_VAL_PROC, groups: int = CN_IDX_PROC, legacy: bool = False
    ) -> FilteredProcSocket:
        """Create and bind (from any thread); a refusal is the kernel's own ``OSError``."""
        raw = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            raw.bind((0, groups))
        except OSError:
            raw.close()
            raise
        return cls(raw, idx=idx, val=val, legacy=legacy)

    @classmethod
    def open_with_pyroute2(
        cls, *, idx: int = CN_IDX_PROC, val: int = CN_VAL_PROC, groups: int = CN_IDX_PROC, legacy: bool = False
    ) -> FilteredProcSocket:
        """``open`` through pyroute2's ``ProcEventSocket`` (the twin; see the module docstring).

        pyroute2 keeps its endpoint per thread: the descriptor is taken (a dup)
        in the thread that bound it, and pyroute2's endpoint closed; the dup keeps
        the kernel socket and its group membership. Nothing from pyroute2 leaves
        here but an ``OSError`` with the bind's real errno.
        """
        from pyroute2.netlink.connector.cn_proc import ProcEventSocket
        from pyroute2.netlink.nlsocket import NetlinkSocket

        def make() -> socket.socket:
            sock: Any = ProcEventSocket()
            try:
                # ProcEventSocket.bind() always joins CN_IDX_PROC; the kmod joins none: its base's bind.
                NetlinkSocket.bind(sock, groups=groups)
                return socket.socket(fileno=os.dup(sock.fileno()))
            finally:
                sock.close()

        try:
            raw = off_event_loop(make)
        except OSError:
            raise
        except Exception as exc:  # pyroute2's own exceptions end here, as an OSError with the real errno
            raise bind_error(groups, exc) from None
        return cls(raw, idx=idx, val=val, legacy=legacy)

    @property
    def raw(self) -> socket.socket:
        """The stdlib socket all I/O goes through, from any thread."""
        if self._raw is None:
            raise OSError(errno.EBADF, "proc connector socket is closed")
        return self._raw

    def fileno(self) -> int:
        return self.raw.fileno()

    def set_rcvbuf(self, size: int = DEFAULT_RCVBUF) -> int:
        """Grow the receive buffer as far as allowed; returns the size in effect."""
        raw = self.raw
        try:
            raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:
            try:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            except OSError:
                pass
        return raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def listen(self, mask: int = PROC_EVENT_ALL, flags: int | None = None) -> int:
        """Send LISTEN with ``mask`` (on a live socket too: no reconnect, no gap).

        Does not wait for the ack: the kernel filters it out under any mask but
        ALL. Returns the sequence number used, so a caller that does expect an
        ack (the kmod always sends one) can match it. ``flags``: the kmod's
        12-byte form (``KMOD_WANT_NAMES``).
        """
        return self._send_op(PROC_CN_MCAST_LISTEN, mask, flags)

    def ignore(self) -> None:
        """Tell the kernel to stop sending (decrements its listener count)."""
        self._send_op(PROC_CN_MCAST_IGNORE, 0)

    def _send_op(self, op: int, mask: int, flags: int | None = None) -> int:
        """One control message, encoded by ``protocol.encode_proc_input`` (the one encoder); safe from any thread."""
        self.seq += 1
        message = encode_proc_input(
            op, mask & 0xFFFFFFFF, idx=self.cn_idx, val=self.cn_val, seq=self.seq, legacy=self.legacy, flags=flags
        )
        self.raw.send(message)
        return self.seq

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
