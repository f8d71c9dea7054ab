"""The two /proc readers (the reader thread's snapshot, psutil's lookups) agree on each datum.

Issue 9: psutil stays the library for lookups off the event path, the fast
reader is used where microseconds decide; a process must not get two argvs
or two start times depending on which of them saw it first.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

import proctop.model.procfs as procfs
from proctop.model.enrich import read_proc
from proctop.model.procfs import parse_cmdline, read_cmdline, snapshot

#: One argument holding spaces, as a setproctitle'd server shows itself.
TITLE = "nginx: worker process"


@pytest.fixture
def titled():
    """A live process whose whole argv is ``[TITLE]`` (bash's ``exec -a``; ``cat`` needs no argument)."""
    proc = subprocess.Popen(["bash", "-c", f'exec -a "{TITLE}" cat'], stdin=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while read_cmdline(proc.pid) != [TITLE] and time.monotonic() < deadline:
        time.sleep(0.01)
    yield proc.pid
    proc.stdin.close()
    proc.wait()


def test_a_titled_process_has_one_argv_whichever_reader_saw_it(titled):
    snap = snapshot(titled, argv=True)
    info = read_proc(titled)
    assert snap is not None and info is not None
    assert snap.cmdline == [TITLE]
    assert info.cmdline == [TITLE]  # psutil's own cmdline() says ['nginx:', 'worker', 'process']


def test_both_readers_put_the_start_time_on_one_scale(titled):
    snap = snapshot(titled, argv=False)
    info = read_proc(titled)
    assert snap is not None and info is not None and snap.start is not None and info.start is not None
    assert abs(snap.start - info.start) < 1e-6  # the same ticks, the same boot time
    assert (snap.comm, snap.ppid, snap.uid) == (info.comm, info.ppid, info.uid)


def test_command_lines_are_split_on_nul_only():
    assert parse_cmdline(b"") is None
    assert parse_cmdline(b"sleep\x0030\x00") == ["sleep", "30"]
    assert parse_cmdline(b"nginx: master process /usr/sbin/nginx") == ["nginx: master process /usr/sbin/nginx"]
    assert parse_cmdline(b"a b\x00") == ["a b"]
    assert parse_cmdline(b"\xff\x00") == ["\udcff"]  # undecodable bytes kept, as everywhere


def test_argv_read_first_survives_a_reap_before_the_rest(monkeypatch):
    """argv goes when the process exits, stat and the owner only when it is reaped: argv is read
    first, and what was read is kept when the process is gone by the next read."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while read_cmdline(proc.pid) != ["sleep", "30"] and time.monotonic() < deadline:
            time.sleep(0.01)
        real = procfs.read_file

        def reaped_after_argv(path: str) -> bytes:
            if path.endswith("/stat"):
                raise FileNotFoundError(path)
            return real(path)

        monkeypatch.setattr(procfs, "read_file", reaped_after_argv)
        snap = snapshot(proc.pid, argv=True)
        assert snap is not None
        assert snap.cmdline == ["sleep", "30"]
        assert snap.exe is not None and snap.exe.endswith("sleep")
        assert (snap.comm, snap.ppid, snap.start) == (None, None, None)
        assert snapshot(proc.pid, argv=False) is None  # nothing read: gone
    finally:
        proc.kill()
        proc.wait()


def test_a_long_program_name_is_the_kernels_comm_in_both_readers(tmp_path):
    """comm is 15 bytes in the kernel; psutil's name() would lengthen it from argv[0]."""
    program = tmp_path / "a-very-long-program-name"
    shutil.copy("/bin/sleep", program)
    proc = subprocess.Popen([str(program), "30"])
    try:
        deadline = time.monotonic() + 5
        while read_cmdline(proc.pid) != [str(program), "30"] and time.monotonic() < deadline:
            time.sleep(0.01)
        snap = snapshot(proc.pid, argv=True)
        info = read_proc(proc.pid)
        assert snap is not None and info is not None
        assert snap.comm == info.comm == "a-very-long-pro"
        assert snap.exe == info.exe == str(program)
    finally:
        proc.kill()
        proc.wait()
