"""Which way of getting filtered process events this machine offers.

Order (first that works wins):

1. Linux 6.6+: the kernel filters (``struct proc_input``), any user may listen.
2. The ``proctop_cn`` backport module (``kmod/``) is loaded: it speaks the same
   protocol on its own connector id (``/sys/module/proctop_cn/parameters/cn_idx``)
   and unicasts to each subscriber, so non-root works there too.
3. An older kernel, as root: 4-byte LISTEN, everything is sent, the same mask
   semantics are applied in user space (``--source userspace`` forces it; on
   6.6+ any user may, as the kernel accepts a non-root 4-byte LISTEN there).
4. Otherwise a ``ProbeError`` with one line that says what is missing.

Every failure is one line and exit status 3 (``ProbeError.status``).
"""

from __future__ import annotations

import errno
import os
import platform
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from proctop.errors import ProctopError
from proctop.kernel.protocol import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    PROC_CN_MCAST_IGNORE,
    PROC_EVENT_ALL,
    encode_proc_input,
)

NETLINK_CONNECTOR = 11
KMOD_NAME = "proctop_cn"
KMOD_SYSFS = Path("/sys/module") / KMOD_NAME
#: Fixed inode numbers of the initial pid and user namespaces (include/linux/proc_ns.h).
PROC_PID_INIT_INO = 0xEFFFFFFC
PROC_USER_INIT_INO = 0xEFFFFFFD
SOURCE_KINDS = ("native", "kmod", "userspace")
SOURCE_LABELS = {
    "native": "kernel 6.6+ native filter",
    "kmod": "proctop_cn module",
    "userspace": "userspace-filtered (kernel sends all)",
    "replay": "replay",
}


class ProbeError(ProctopError):
    """This machine cannot deliver process events to us; the message says why."""

    status = 3


@dataclass(frozen=True)
class Capability:
    """How to open the event socket, as decided by ``probe``."""

    kind: str  # one of SOURCE_KINDS
    idx: int = CN_IDX_PROC
    val: int = CN_VAL_PROC
    groups: int = CN_IDX_PROC
    legacy: bool = False  # 4-byte LISTEN, filter in user space
    supported: int = PROC_EVENT_ALL  # mask bits this source can deliver
    kernel: str = field(default_factory=platform.release)

    @property
    def kernel_filters(self) -> bool:
        return not self.legacy

    @property
    def label(self) -> str:
        return SOURCE_LABELS[self.kind]


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """``(6, 6)`` from ``"6.6.0-generic"``; ``(0, 0)`` when it cannot be read."""
    release = release or platform.release()
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _read_int(path: Path, default: int) -> int:
    try:
        text = path.read_text().strip()
        return int(text, 0)
    except (OSError, ValueError):
        return default


def _ns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/proc/self/ns/{name}").st_ino
    except OSError:
        return None


def _check_connector_reachable() -> None:
    """Send a harmless IGNORE to the connector: refused means no connector here.

    The connector's kernel socket exists only in the initial network namespace,
    so inside a container's own network namespace the send fails with
    ECONNREFUSED. IGNORE on a socket that never listened changes nothing.
    """
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as exc:
        if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
            raise ProbeError(
                "this kernel has no proc connector (needs CONFIG_CONNECTOR and CONFIG_PROC_EVENTS)"
            ) from None
        raise ProbeError(f"cannot open a netlink connector socket: {exc.strerror}") from None
    with sock:
        try:
            sock.bind((0, 0))
            sock.send(encode_proc_input(PROC_CN_MCAST_IGNORE, 0, legacy=True))
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                raise ProbeError(
                    "not in the initial network namespace (a container?): the proc connector "
                    "exists only there; run proctop on the host or with --network host"
                ) from None
            raise ProbeError(f"cannot talk to the proc connector: {exc.strerror}") from None


def probe(force: str | None = None) -> Capability:
    """Decide the event source, or raise ``ProbeError`` with a one-line reason.

    ``force`` (``--source``) skips the choice but not the checks that make the
    chosen source impossible.
    """
    if not sys.platform.startswith("linux"):
        raise ProbeError(f"proctop needs Linux: the proc connector is a Linux interface (this is {sys.platform})")
    _check_connector_reachable()
    pid_ns, user_ns = _ns_inode("pid"), _ns_inode("user")
    if (pid_ns not in (None, PROC_PID_INIT_INO)) or (user_ns not in (None, PROC_USER_INIT_INO)):
        raise ProbeError(
            "not in the initial pid/user namespace (a container?): the kernel ignores proc "
            "connector requests from there; run proctop on the host"
        )
    native = kernel_version() >= (6, 6)
    kmod = KMOD_SYSFS.is_dir()
    root = os.geteuid() == 0
    kind = force or ("native" if native else "kmod" if kmod else "userspace")
    if kind == "native" and not native:
        raise ProbeError(f"kernel {platform.release()} is older than 6.6 and cannot filter events itself")
    if kind == "kmod":
        if not kmod:
            raise ProbeError(f"the {KMOD_NAME} module is not loaded (make -C kmod && sudo insmod kmod/{KMOD_NAME}.ko)")
        params = KMOD_SYSFS / "parameters"
        return Capability(
            kind="kmod",
            idx=_read_int(params / "cn_idx", 11),
            val=_read_int(params / "cn_val", 1),
            groups=0,
            supported=_read_int(params / "supported_events", PROC_EVENT_ALL),
        )
    if kind == "userspace" and not root and not native:
        # Before 6.6 the kernel answers a non-root LISTEN with EPERM and sends it nothing.
        # From 6.6 any user may LISTEN, the 4-byte form included (then the kernel sends
        # everything and proctop filters): measured on 6.18 as uid 65534, so not refused.
        if force == "userspace":
            raise ProbeError(
                f"--source userspace needs root on kernel {platform.release()}: before 6.6 the kernel sends "
                f"process events only to root (as non-root, load the {KMOD_NAME} module: "
                f"make -C kmod && sudo insmod kmod/{KMOD_NAME}.ko)"
            )
        raise ProbeError(
            f"kernel {platform.release()} lacks filtered non-root process events (added in 6.6): "
            f"run as root, or build and load the {KMOD_NAME} backport module from kmod/ "
            f"(make -C kmod && sudo insmod kmod/{KMOD_NAME}.ko)"
        )
    if kind == "userspace":
        return Capability(kind="userspace", legacy=True)
    return Capability(kind="native")
