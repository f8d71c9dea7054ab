"""A proctop whose proc connector socket fails in a chosen way: ``python -m refusing_kernel KIND -- ARGS``.

The failure is injected where the kernel (or pyroute2) would raise it, through the
socket opener ``ConnectorSource`` uses, and the real command line runs on top, so
a test sees exactly what a user on such a machine sees: in ``--json``,
``--summary`` and the UI (in a pty). The probe itself passes (the tests run as
root); what fails is the subscription proctop then makes.
"""

from __future__ import annotations

import errno
import os
import sys
import types
from collections.abc import Callable

from proctop.kernel.probe import Capability


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class _Raw:
    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return -1


class _RefusingSocket:
    """Opens fine; its LISTEN raises ``error`` (what send() on a netlink socket can answer)."""

    legacy = False

    def __init__(self, error: OSError) -> None:
        self.error = error
        self.raw = _Raw()
        self.closed = False

    def set_rcvbuf(self, size: int) -> int:
        return size

    def listen(self, mask: int = 0, flags: int | None = None) -> int:
        raise self.error

    def ignore(self) -> None:
        raise self.error

    def close(self) -> None:
        self.closed = True


def _refuse_at_bind(code: int) -> Callable[[Capability], object]:
    def opener(cap: Capability) -> object:
        raise _oserror(code)

    return opener


def _refuse_at_listen(code: int) -> Callable[[Capability], object]:
    def opener(cap: Capability) -> object:
        return _RefusingSocket(_oserror(code))

    return opener


def _pyroute2_keyerror(cap: Capability) -> object:
    """The pyroute2 twin (``FilteredProcSocket.open_with_pyroute2``) as a refusing kernel leaves it:
    pyroute2 0.9's bind tries ports 20-199 and raises KeyError, its errno logged away; the plain bind
    that proctop.kernel.socket makes to recover the errno is refused with EPERM here."""
    from pyroute2.netlink.nlsocket import NetlinkSocket

    import proctop.kernel.socket as sock_mod

    def bind(self: object, **kwarg: object) -> None:
        raise KeyError("no free address available")

    class _RefusingStdlibSocket:
        def __init__(self, *args: object) -> None:
            pass

        def __enter__(self) -> _RefusingStdlibSocket:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def bind(self, address: object) -> None:
            raise _oserror(errno.EPERM)

    NetlinkSocket.bind = bind  # type: ignore[method-assign]
    sock_mod.socket = types.SimpleNamespace(  # type: ignore[assignment]
        socket=_RefusingStdlibSocket, AF_NETLINK=16, SOCK_DGRAM=2
    )
    return sock_mod.FilteredProcSocket.open_with_pyroute2(
        idx=cap.idx, val=cap.val, groups=cap.groups, legacy=cap.legacy
    )


FAILURES: dict[str, Callable[[Capability], object]] = {
    "eperm-at-bind": _refuse_at_bind(errno.EPERM),
    "eperm-at-listen": _refuse_at_listen(errno.EPERM),
    "enobufs-at-listen": _refuse_at_listen(errno.ENOBUFS),
    "econnrefused-at-listen": _refuse_at_listen(errno.ECONNREFUSED),
    "pyroute2-keyerror": _pyroute2_keyerror,
}


def install(kind: str) -> None:
    import proctop.sources.connector as connector

    connector._open_proc_socket = FAILURES[kind]  # type: ignore[assignment]


def main() -> int:
    kind, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: python -m refusing_kernel KIND -- ARGS"
    install(kind)
    from proctop.cli.main import main as proctop_main

    return proctop_main(args)


if __name__ == "__main__":
    sys.exit(main())
