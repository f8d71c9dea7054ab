"""Which way of getting filtered process events this machine offers, found by trying it.

Order (first that works wins):

1. Linux 6.6+: the kernel filters (``struct proc_input``), and upstream lets
   any user listen. A kernel may still refuse a non-root subscriber (a build
   without the connector's non-root receive flag, a hardened configuration:
   Linux 6.18.44 here answers uid 65534's ``bind()`` to the group with EPERM),
   so the version alone never decides: the bind and the LISTEN are tried.
2. The ``proctop_cn`` backport module (``kmod/``) is loaded: it speaks the same
   protocol on its own connector id (``/sys/module/proctop_cn/parameters/cn_idx``)
   and unicasts to each subscriber (no group to join), so non-root works there too.
3. An older kernel, as root (or with CAP_NET_ADMIN): 4-byte LISTEN, everything
   is sent, the same mask semantics are applied in user space
   (``--source userspace`` forces it).
4. Otherwise a ``ProbeError``: one line with the kernel's answer and every way
   forward that applies on this machine (``refusal``).

Every failure is one line and exit status 3 (``ProbeError.status``).
"""

from __future__ import annotations

import errno
import os
import platform
import select
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from proctop.errors import ProctopError
from proctop.kernel.protocol import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    NETLINK_CONNECTOR,
    PROC_CN_MCAST_IGNORE,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_ALL,
    PROC_EVENT_NONZERO_EXIT,
    ack_error,
    encode_proc_input,
)

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


#: How long the probe waits for the kmod's ack to its LISTEN (the module acks at once;
#: a kernel connector never acks a filtered LISTEN, so only the kmod is waited for).
KMOD_ACK_TIMEOUT = 1.0


def _capability(kind: str) -> Capability:
    """How ``kind`` is opened on this machine (the kmod's ids are read from sysfs)."""
    if kind == "kmod":
        params = KMOD_SYSFS / "parameters"
        return Capability(
            kind="kmod",
            idx=_read_int(params / "cn_idx", 11),
            val=_read_int(params / "cn_val", 1),
            groups=0,
            supported=_read_int(params / "supported_events", PROC_EVENT_ALL),
        )
    if kind == "userspace":
        return Capability(kind="userspace", legacy=True)
    return Capability(kind="native")


def try_subscribe(cap: Capability) -> OSError | None:
    """Subscribe as the source will (bind, LISTEN), on a socket of its own; the kernel's refusal, or None.

    A plain socket, not pyroute2's: pyroute2 hides the bind's errno (see
    ``proctop.kernel.socket.bind_error``), and the errno is the answer sought.
    The LISTEN asks for non-zero exits only (the fewest events) and is
    followed by IGNORE, so the connector's listener count is as it was.
    """
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR) as sock:
            sock.bind((0, cap.groups))
            sock.send(
                encode_proc_input(
                    PROC_CN_MCAST_LISTEN, PROC_EVENT_NONZERO_EXIT, idx=cap.idx, val=cap.val, seq=1, legacy=cap.legacy
                )
            )
            refused = _kmod_ack(sock, cap) if cap.kind == "kmod" else 0
            sock.send(encode_proc_input(PROC_CN_MCAST_IGNORE, 0, idx=cap.idx, val=cap.val, seq=2, legacy=cap.legacy))
    except OSError as exc:
        return OSError(exc.errno, exc.strerror)
    return OSError(refused, os.strerror(refused)) if refused else None


def _kmod_ack(sock: socket.socket, cap: Capability) -> int:
    """The errno in the module's ack to LISTEN seq 1 (0: accepted, or no ack in time)."""
    buf = bytearray(8192)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    deadline = KMOD_ACK_TIMEOUT * 1000
    while poller.poll(deadline):
        n = sock.recv_into(buf)
        err = ack_error(buf, n, cap.idx, 1)
        if err is not None:
            return err
        deadline = 100  # events may come first; the ack follows at once
    return 0


def probe(force: str | None = None, *, attempt: Callable[[Capability], OSError | None] | None = None) -> Capability:
    """Decide the event source by trying it, or raise ``ProbeError`` with a one-line reason.

    ``force`` (``--source``) skips the choice but not the checks that make the
    chosen source impossible. ``attempt`` (``try_subscribe``; tests pass their
    own) performs the subscription each candidate needs.
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
    if force == "native" and not native:
        raise ProbeError(f"kernel {platform.release()} is older than 6.6 and cannot filter events itself")
    if force == "kmod" and not kmod:
        advice = module_advice()
        raise ProbeError(
            f"the {KMOD_NAME} module is not loaded ({advice})"
            if advice
            else f"the {KMOD_NAME} module is not loaded, and kernel {platform.release()} cannot load modules"
        )
    # On 6.6+ the userspace source joins the same group as native: a refusal of one is of both.
    candidates = (("native", native), ("kmod", kmod), ("userspace", not native))
    kinds = [force] if force else [kind for kind, possible in candidates if possible]
    attempt = attempt or try_subscribe
    refused: list[tuple[Capability, OSError]] = []
    for kind in kinds:
        cap = _capability(kind)
        error = attempt(cap)
        if error is None:
            return cap
        refused.append((cap, error))
    raise ProbeError(refusal(*refused[0]))


def refusal(cap: Capability, error: OSError) -> str:
    """One line: what the kernel (or module) answered to subscribing, and every way forward here.

    Shared by the probe and ``ConnectorSource.start`` (whose socket may still be
    refused after a probe that passed), so the user reads the same advice.
    """
    release = platform.release()
    reason = error.strerror or os.strerror(error.errno or 0)
    denied = error.errno in (errno.EPERM, errno.EACCES)
    if cap.kind == "kmod":
        what = f"the {KMOD_NAME} module refused the subscription: {reason}"
    elif denied and kernel_version() >= (6, 6):
        what = f"kernel {release} refuses process events to non-root users (joining the proc connector: {reason})"
    elif denied:
        what = f"kernel {release} sends process events only to root before 6.6 (joining the proc connector: {reason})"
    else:
        what = f"cannot subscribe to the proc connector ({cap.label}): {reason}"
    ways = []
    if denied and os.geteuid() != 0:
        ways.append(
            "run as root or with CAP_NET_ADMIN (sudo setpriv --reuid=$(id -u) --regid=$(id -g) --init-groups "
            f"--inh-caps=+net_admin --ambient-caps=+net_admin {_this_program()})"
        )
    if denied and cap.kind != "kmod":
        advice = module_advice()
        if advice:
            ways.append(f"load the {KMOD_NAME} module, which serves any user ({advice})")
    ways.append("--replay FILE reads a capture on any machine")
    return f"{what}; " + "; or ".join(ways)


def _this_program() -> str:
    """The path of the running proctop, as a user would type it after sudo (whose PATH differs)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0.endswith("proctop") and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    return "proctop"


def kmod_source() -> Path | None:
    """Where the module's source is: installed beside the package (share/proctop/kmod), or this checkout's."""
    for path in (Path(sys.prefix) / "share" / "proctop" / "kmod", Path(__file__).resolve().parents[2] / "kmod"):
        if (path / "proctop_cn.c").is_file():
            return path
    return None


def module_advice() -> str | None:
    """The one command that builds and loads the module here, or None where no module can load.

    A kernel without module support (no /proc/modules: CONFIG_MODULES=n, as on
    the build machines) cannot take it, so the advice is not given there.
    ``proctop module install`` (``proctop.kernel.module_install``) builds the
    shipped source with DKMS and loads it; what it needs and lacks here (dkms,
    the running kernel's headers) is named first, as Debian's packages.
    """
    if not Path("/proc/modules").exists():
        return None
    release = platform.release()
    missing = [] if shutil.which("dkms") else ["dkms"]
    if not Path(f"/lib/modules/{release}/build").exists():
        missing.append(f"linux-headers-{release}")
    advice = f"sudo {_this_program()} module install"
    return f"sudo apt install {' '.join(missing)} && {advice}" if missing else advice
