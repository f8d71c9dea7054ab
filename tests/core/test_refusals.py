"""When the kernel says no (issue 18): one line, status 3, in every mode, and the probe tries instead of guessing.

The failures are injected where the socket would raise them (tests/refusing_kernel.py)
under the real command line; the real refusal of this host's kernel (uid 65534's bind:
EPERM on Linux 6.18.44) is asserted where the kernel gives it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from helpers import REPO, run_in_pty

import proctop.kernel.probe as probe_mod
from proctop.kernel.probe import Capability, ProbeError, probe, try_subscribe
from proctop.kernel.socket import FilteredProcSocket

NEUTRAL = "/"
TESTS = str(REPO / "tests")
KINDS = ["eperm-at-bind", "eperm-at-listen", "enobufs-at-listen", "econnrefused-at-listen", "pyroute2-keyerror"]
#: What each injected failure must say (the errno's text, and for EPERM the way forward).
REFUSED = "refuses process events to non-root users (joining the proc connector: Operation not permitted)"
CANNOT = "cannot subscribe to the proc connector (kernel 6.6+ native filter): "
SAYS = {
    "eperm-at-bind": REFUSED,
    "eperm-at-listen": REFUSED,
    "enobufs-at-listen": CANNOT + "No buffer space available",
    "econnrefused-at-listen": CANNOT + "Connection refused",
    "pyroute2-keyerror": REFUSED,
}


def refusing(kind: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "refusing_kernel", kind, "--", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": TESTS}


def assert_one_line(stderr: str, kind: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("proctop: ") and SAYS[kind] in lines[0], lines[0]
    assert "--replay FILE" in lines[0]  # the way forward that works anywhere


@pytest.mark.kernel
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", [["--json"], ["--summary", "--duration", "5"], ["--record", "REC"]])
def test_an_injected_refusal_is_one_line_and_status_3(kind, mode, tmp_path):
    mode = [str(tmp_path / "rec") if a == "REC" else a for a in mode]
    proc = subprocess.run(
        refusing(kind, *mode, "--only", "nonzero-exit"),
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""  # not even the --json header: nothing was subscribed
    assert_one_line(proc.stderr, kind)


@pytest.mark.kernel
@pytest.mark.parametrize("kind", KINDS)
def test_an_injected_refusal_in_the_ui_is_one_line_before_the_screen_opens(kind):
    status, screen, stderr = run_in_pty(refusing(kind, "--only", "nonzero-exit"), env=_env(), cwd=NEUTRAL)
    assert status == 3, stderr
    assert "\x1b[?1049h" not in screen  # the alternate screen was never entered
    assert_one_line(stderr, kind)


def test_pyroute2_errors_leave_the_socket_layer_as_oserror_with_the_real_errno(monkeypatch):
    """No pyroute2 exception escapes the twin open: its KeyError becomes the bind's errno, found
    again by one plain bind, or EIO with pyroute2's words when that bind works (as here)."""
    from pyroute2.netlink.nlsocket import NetlinkSocket

    def bind(self, **kwarg):
        raise KeyError("no free address available")

    monkeypatch.setattr(NetlinkSocket, "bind", bind)
    with pytest.raises(OSError) as caught:
        FilteredProcSocket.open_with_pyroute2(groups=0)  # a plain bind to no group works for anyone
    assert caught.value.errno == errno.EIO
    assert "KeyError" in str(caught.value) and "no free address available" in str(caught.value)


@pytest.mark.kernel
def test_the_stdlib_open_and_its_pyroute2_twin_subscribe_alike():
    """The fast path binds as pyroute2 does: both sockets, given the same LISTEN, see the same failure."""
    from helpers import run

    from proctop.kernel.protocol import PROC_EVENT_NONZERO_EXIT, DecodeStats, decode_buffer

    socks = [FilteredProcSocket.open(), FilteredProcSocket.open_with_pyroute2()]
    try:
        for sock in socks:
            sock.raw.settimeout(5)
            sock.listen(PROC_EVENT_NONZERO_EXIT)
        pid = run(["sh", "-c", "exit 7"])
        seen = []
        for sock in socks:
            buf = bytearray(65536)
            found = None
            while found is None:
                n = sock.raw.recv_into(buf)
                found = next((ev for ev in decode_buffer(buf, n, DecodeStats()) if ev.pid == pid), None)
            seen.append((found.what, found.a))
        assert seen[0] == seen[1] == (0x80000000, 7 << 8)
    finally:
        for sock in socks:
            try:
                sock.ignore()
            finally:
                sock.close()


# --- the probe tries ----------------------------------------------------------


def _refuse(code: int):
    return lambda cap: OSError(code, os.strerror(code))


@pytest.mark.kernel
def test_the_probe_takes_the_kernels_word_not_its_version(monkeypatch, tmp_path):
    """6.6+ by version is not "non-root works": a refused bind makes auto fall back to the module,
    and without one, one line that names the cause and the ways forward."""
    monkeypatch.setattr(probe_mod.platform, "release", lambda: "6.18.44-test")
    monkeypatch.setattr(probe_mod.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(probe_mod, "KMOD_SYSFS", tmp_path / "absent")
    with pytest.raises(ProbeError) as caught:
        probe(attempt=_refuse(errno.EPERM))
    line = str(caught.value)
    assert "kernel 6.18.44-test refuses process events to non-root users" in line
    assert "run as root or with CAP_NET_ADMIN" in line and "--ambient-caps=+net_admin" in line
    assert "--replay FILE" in line
    assert "\n" not in line
    # a loaded module serves where the kernel refuses
    params = tmp_path / "proctop_cn" / "parameters"
    params.mkdir(parents=True)
    (params / "cn_idx").write_text("12\n")
    monkeypatch.setattr(probe_mod, "KMOD_SYSFS", tmp_path / "proctop_cn")
    tried: list[str] = []

    def native_refused(cap: Capability) -> OSError | None:
        tried.append(cap.kind)
        return OSError(errno.EPERM, "Operation not permitted") if cap.kind == "native" else None

    cap = probe(attempt=native_refused)
    assert (cap.kind, cap.idx, tried) == ("kmod", 12, ["native", "kmod"])
    # the module's own refusal (its per-uid limit) is said as the module's
    with pytest.raises(ProbeError, match=r"the proctop_cn module refused the subscription: Disk quota exceeded"):
        probe("kmod", attempt=_refuse(errno.EDQUOT))


def test_module_advice_only_where_a_module_can_load(monkeypatch, tmp_path):
    monkeypatch.setattr(probe_mod, "Path", _PathWithout("/proc/modules"))
    assert probe_mod.module_advice() is None
    monkeypatch.undo()
    if os.path.exists("/proc/modules"):
        advice = probe_mod.module_advice()
        assert advice is not None and advice.endswith("module install")  # tests/core/test_module_install.py


class _PathWithout:
    """``pathlib.Path`` for which one path does not exist."""

    def __init__(self, missing: str) -> None:
        self.missing = missing

    def __call__(self, *parts: str):
        from pathlib import Path

        path = Path(*parts)
        if str(path) == self.missing:
            return Path("/nonexistent-for-test") / "x"
        return path


@pytest.mark.kernel
def test_try_subscribe_answers_as_the_kernel_does_for_root():
    assert try_subscribe(Capability(kind="native")) is None


@pytest.mark.kernel
def test_try_subscribe_answers_as_the_kernel_does_for_nobody(nonroot_child, nonroot_subscribe):
    """As uid 65534 the probe's answer is the kernel's own: refused exactly where a bind is refused."""
    answer = nonroot_child(lambda: (lambda e: e and e.errno)(try_subscribe(Capability(kind="native"))))
    assert answer == (None if nonroot_subscribe.allowed else nonroot_subscribe.errno)
