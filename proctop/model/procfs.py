"""Fast /proc reads for the reader thread, beside psutil's; what a command line is.

Two readers, each where it fits (issue 9): psutil for lookups off the event
path (a parent, a process alive since before proctop started), this module
where microseconds decide whether anything is read at all. Measured here
(Python 3.11, Linux 6.18): ``psutil.Process(pid)`` + ``name()`` + ``ppid()``
costs 44.6 us a call; reading /proc/PID/stat directly and one ``os.stat`` for
the owner costs 8.5 us. The reader thread must capture a process before its
parent reaps it (a dying process is a zombie for only as long as the parent
takes to call wait), and an exec'd process before it exits, so there the
direct read is used; everything else goes through psutil
(``proctop.model.enrich``). One reader per datum: a process's names (comm,
argv, exe) always come from here, its lineage and owner in a lookup from
psutil. psutil's own ``cmdline()`` splits a line without NULs (a
setproctitle'd ``nginx: worker process``) on its spaces and its ``name()``
lengthens a 15-byte comm, so the same process would have had two names
depending on which reader saw it first.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import psutil

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Seconds per clock tick: the resolution of a start time read from /proc.
TICK = 1 / CLK_TCK
#: Epoch seconds at boot, to the clock's precision: /proc/PID/stat's start
#: time counts ticks of CLOCK_BOOTTIME, while psutil.boot_time() is /proc/stat's
#: btime, whole seconds (a 1 ms process could show a lifetime of 1 s).
BOOT_TIME = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
#: What to add to a psutil create_time() to put it on BOOT_TIME's scale. Both read
#: the same start ticks from /proc/PID/stat; psutil adds /proc/stat's btime, a whole
#: second, and has no public seconds-since-boot (7.x keeps ``create_time(monotonic=)``
#: on its private platform class). Lifetimes subtract a start from a kernel
#: timestamp, so without the shift a process found through psutil could show a
#: lifetime off by up to a second. It stays: reading stat a second time per psutil
#: lookup to avoid one subtraction would be the two readers of one datum issue 9 asks not to have.
PSUTIL_START_SHIFT = BOOT_TIME - psutil.boot_time()


class Snapshot(NamedTuple):
    """What /proc showed of a process at the moment its event was read."""

    comm: str | None
    ppid: int | None
    start: float | None  # epoch seconds (boot time + starttime ticks)
    uid: int | None
    cmdline: list[str] | None
    exe: str | None
    cgroup: str | None = None  # /proc/PID/cgroup as read (see ``proctop.model.units``)


#: Passed on by the reader when it looked at once and the process was already
#: gone: a later look (psutil, in the consumer) cannot find it either.
GONE = Snapshot(None, None, None, None, None, None)


def read_file(path: str) -> bytes:
    """A whole /proc file with bare os.open/os.read: 2.9 us against 5.6 us for
    ``open()`` and its buffered-IO layers (measured here, /proc/PID/stat)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)
        if len(data) == 4096:  # a long argv: read on until the end
            chunks = [data]
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def parse_cmdline(raw: bytes) -> list[str] | None:
    """/proc/PID/cmdline's bytes as argv: split on NUL, nothing else; None when empty.

    A process that rewrote its argv area (setproctitle) leaves one string
    with spaces and no NUL separators: it stays one element (psutil would
    split it on the spaces, and a single argument holding a space with it).
    Bytes that are not UTF-8 are kept as ``\\udcXX`` (surrogateescape).
    """
    if not raw:
        return None
    return [a.decode("utf-8", "surrogateescape") for a in raw.rstrip(b"\0").split(b"\0")]


def read_cmdline(pid: int) -> list[str] | None:
    """argv of a live process (None when gone, a zombie, a kernel thread or unreadable)."""
    try:
        return parse_cmdline(read_file(f"/proc/{pid}/cmdline"))
    except OSError:
        return None


def read_comm(pid: int) -> str | None:
    """The kernel's comm (15 bytes at most, as /proc/PID/stat and the kernel's events carry it).

    Not psutil's ``name()``, which lengthens a 15-byte comm from argv[0]: the
    same process would be ``systemd-journal`` in one reader and
    ``systemd-journald`` in the other.
    """
    try:
        return read_file(f"/proc/{pid}/comm").rstrip(b"\n").decode("utf-8", "surrogateescape")
    except OSError:
        return None


def read_exe(pid: int) -> str | None:
    """The exe link as the kernel shows it (`` (deleted)`` kept: psutil drops it when no file is there)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def snapshot(pid: int, *, argv: bool, cgroup: bool = False) -> Snapshot | None:
    """comm, ppid and owner from /proc/PID/stat (and argv, exe, cgroup if asked); None if gone.

    10.4 us with argv and exe, against 15.6 us through ``open()`` (measured here);
    the cgroup (the unit a process runs in) is read at exec and at a nameless exit only.
    argv and exe are read first: they vanish when the process exits (its memory is
    released), while stat, the owner and the cgroup last until it is reaped. At an
    exec the reader is racing the exit, and a process living 1 ms is gone before
    five reads end under load (bench/, uid 65534, 200 exec/s, load 3 on 2 cores:
    cmdline p50 46 us, exe 27, stat 20, owner 13, cgroup 22 after the wake-up).
    """
    base = f"/proc/{pid}"
    cmdline = exe = None
    if argv:
        try:
            cmdline = parse_cmdline(read_file(base + "/cmdline"))
        except OSError:
            pass
        exe = read_exe(pid)
    try:
        stat = read_file(base + "/stat")
        uid = os.stat(base).st_uid
    except OSError:  # reaped meanwhile: what was read before still names it
        return Snapshot(None, None, None, None, cmdline, exe) if cmdline or exe else None
    parsed = parse_stat(stat)
    if parsed is None:
        return None
    comm, ppid, start = parsed
    return Snapshot(comm, ppid, start, uid, cmdline, exe, read_cgroup(pid) if cgroup else None)


def parse_stat(stat: bytes) -> tuple[str, int, float] | None:
    """comm, ppid and start (epoch seconds) from /proc/PID/stat's bytes; None if they do not parse.

    Shared by ``snapshot`` and the compiled reader (proctop.sources.creader), which reads the same bytes.
    """
    try:
        close = stat.rindex(b")")
        comm = stat[stat.index(b"(") + 1 : close].decode("utf-8", "surrogateescape")  # as argv: bytes kept
        fields = stat[close + 2 :].split(b" ", 20)
        return comm, int(fields[1]), BOOT_TIME + int(fields[19]) / CLK_TCK
    except (ValueError, IndexError):
        return None


def read_cgroup(pid: int) -> str | None:
    """/proc/PID/cgroup as text, or None when gone or unreadable."""
    try:
        return read_file(f"/proc/{pid}/cgroup").decode("utf-8", "surrogateescape")
    except OSError:
        return None
