"""The proc connector socket: pyroute2's ``ProcEventSocket`` taught the 6.6 filter.

pyroute2 (0.9) knows the connector and the 4-byte LISTEN/IGNORE control but not
``struct proc_input`` nor ``PROC_EVENT_NONZERO_EXIT``; ``FilteredProcSocket``
adds them, its control messages encoded by ``protocol.encode_proc_input`` (the
one encoder of LISTEN/IGNORE, also used by the probe). Its ``control()`` also waits for the LISTEN ack, which the kernel
filters out under any mask but ALL, so ``listen()`` here never waits.

Reading goes through a stdlib socket on a dup of the same descriptor: the
reader thread calls ``recv_into`` on it and decodes with
``proctop.kernel.protocol`` (see there for why not pyroute2's marshal).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar, Unpack

from pyroute2.netlink.connector.cn_proc import ProcEventSocket

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


class SocketArgs(TypedDict, total=False):
    """The keyword arguments of ``FilteredProcSocket`` (what ``open`` passes on)."""

    idx: int
    val: int
    groups: int
    legacy: bool


class FilteredProcSocket(ProcEventSocket):  # type: ignore[misc]  # pyroute2 ships no types: its classes are Any
    """A proc connector socket whose kernel-side mask can change while it is open.

    ``idx``/``val``/``groups`` default to the kernel's own proc connector
    (multicast group CN_IDX_PROC). The kmod backport uses another idx, no
    group, and unicasts to the subscribing port.
    """

    def __init__(
        self,
        idx: int = CN_IDX_PROC,
        val: int = CN_VAL_PROC,
        groups: int = CN_IDX_PROC,
        legacy: bool = False,
    ) -> None:
        super().__init__()
        self.cn_idx = idx
        self.cn_val = val
        self.cn_groups = groups
        self.legacy = legacy
        self.seq = 0
        self._raw: socket.socket | None = None
        self._detached = False  # True once pyroute2's own endpoint is closed (see open())

    @classmethod
    def open(cls, **kwarg: Unpack[SocketArgs]) -> FilteredProcSocket:
        """Create and bind, from any thread (see ``off_event_loop``)."""

        def make() -> FilteredProcSocket:
            sock = cls(**kwarg)
            try:
                sock.bind()
                # pyroute2 keeps its endpoint per thread: take the descriptor here,
                # in the thread that bound it, and let pyroute2 go. The dup keeps
                # the kernel socket (and its group membership) alive; all later I/O
                # goes through it, from any thread.
                sock.raw  # noqa: B018
            finally:
                super(FilteredProcSocket, sock).close()
            sock._detached = True
            return sock

        try:
            return off_event_loop(make)
        except OSError:
            raise
        except Exception as exc:  # pyroute2's own exceptions end here, as an OSError with the real errno
            raise bind_error(kwarg.get("groups", CN_IDX_PROC), exc) from None

    def bind(self, **kwarg: Any) -> None:  # passed on to pyroute2 (untyped)
        # ProcEventSocket.bind() always joins CN_IDX_PROC; the kmod joins none.
        super(ProcEventSocket, self).bind(groups=self.cn_groups, **kwarg)

    @property
    def raw(self) -> socket.socket:
        """A blocking stdlib socket on a dup of this one, for the fast read path."""
        if self._raw is None:
            if self._detached:
                raise OSError(errno.EBADF, "proc connector socket is closed")
            self._raw = socket.socket(fileno=os.dup(super().fileno()))
        return self._raw

    def fileno(self) -> int:
        """The descriptor all I/O goes through (the stdlib dup)."""
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
        """One control message, encoded by ``protocol.encode_proc_input`` (the one encoder).

        Sent on the stdlib dup, not through pyroute2's put(): pyroute2's sync API
        drives its own asyncio loop, which fails when called from a thread already
        running one (the UI's key handlers), and the raw send is safe from any thread.
        """
        self.seq += 1
        message = encode_proc_input(
            op, mask & 0xFFFFFFFF, idx=self.cn_idx, val=self.cn_val, seq=self.seq, legacy=self.legacy, flags=flags
        )
        self.raw.send(message)
        return self.seq

    def close(self, code: int = errno.ECONNRESET) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if not self._detached:
            off_event_loop(lambda: super(FilteredProcSocket, self).close(code))
            self._detached = True
