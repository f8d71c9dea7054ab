"""The failures board, reasons and units: grouping rules, and each reason from a real process."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import collect, remove_cgroup, unit_cgroup

from proctop.kernel.probe import probe
from proctop.kernel.protocol import PROC_EVENT_EXEC, PROC_EVENT_FORK, PROC_EVENT_NONZERO_EXIT
from proctop.model.events import Event
from proctop.model.failures import OTHER, FailureBoard, command_key
from proctop.model.reasons import core_location, exit_reason
from proctop.model.units import unit_of
from proctop.sources.connector import ConnectorSource


def failed(ts: float, cmd: str = "/usr/bin/make", code: int = 2, **kw) -> Event:
    return Event(ts=ts, event="exit", pid=100, tgid=100, exit_code=code, cmdline=[cmd, "-k"], **kw)


# --- the board, on constructed events -------------------------------------------------


def test_board_groups_by_command_and_counts_statuses():
    board = FailureBoard()
    for i in range(12):
        board.add(failed(1000 + i * 30, code=1))
    board.add(failed(1500, signal="SIGSEGV", code=None))
    board.add(Event(ts=1501, event="exit", pid=5, tgid=5, exit_code=0, cmdline=["make"]))  # not a failure
    board.add(failed(1502, cmd="./crashme", code=None, signal="SIGABRT", core_dumped=True))
    (make, crash) = sorted(board.rows(), key=lambda g: g.key)[::-1]
    assert (make.key, make.count) == ("make", 13)
    assert make.statuses_text() == "exit 1 \u00d712, SIGSEGV \u00d71"
    assert (crash.key, crash.statuses_text()) == ("crashme", "SIGABRT (core dumped) \u00d71")
    assert board.total == 14


def test_command_key_prefers_argv0_then_the_executable_then_comm_then_the_parent():
    ev = Event(ts=0, event="exit", exe="/usr/bin/busybox", cmdline=["/sbin/ifup", "eth0"])
    assert command_key(ev) == "ifup"
    assert command_key(Event(ts=0, event="exit", exe="/usr/bin/python3.11")) == "python3.11"
    assert command_key(Event(ts=0, event="exit", comm="kworker")) == "kworker"
    assert command_key(Event(ts=0, event="exit", parent_cmdline=["/usr/bin/make", "-k"])) == "child of make"
    assert command_key(Event(ts=0, event="exit", parent_comm="cron")) == "child of cron"
    assert command_key(Event(ts=0, event="exit")) == "?"


def test_a_crash_loop_is_five_failures_within_sixty_seconds_and_sorts_first():
    board = FailureBoard()
    for i in range(20):
        board.add(failed(100 + i * 100, cmd="steady"))  # many, but one every 100 s
    for i in range(5):
        board.add(failed(2000 + i * 10, cmd="looper"))  # 5 within 40 s
    rows = board.rows()
    assert [g.key for g in rows] == ["looper", "steady"]
    assert board.is_loop(rows[0]) and not board.is_loop(rows[1])
    board.add(failed(2200, cmd="steady"))  # time moves on: the loop is over
    assert not board.is_loop(board.groups["looper"])
    assert board.rows()[0].key == "steady"


def test_loop_thresholds_are_configurable():
    board = FailureBoard(loop_burst=3, loop_interval=10)
    for ts in (0, 4, 8):
        board.add(failed(ts, cmd="x"))
    assert board.is_loop(board.groups["x"])
    board = FailureBoard(loop_burst=3, loop_interval=5)
    for ts in (0, 4, 8):
        board.add(failed(ts, cmd="x"))
    assert not board.is_loop(board.groups["x"])


def test_sorting_by_rate_and_recency():
    board = FailureBoard()
    for i in range(30):
        board.add(failed(i, cmd="old-and-many"))
    for i in range(3):
        board.add(failed(500 + i, cmd="recent-few"))
    assert [g.key for g in board.rows("count")] == ["old-and-many", "recent-few"]
    assert [g.key for g in board.rows("recent")] == ["recent-few", "old-and-many"]
    assert [g.key for g in board.rows("rate")] == ["recent-few", "old-and-many"]
    assert board.rate(board.groups["recent-few"]) == 3


def test_sparkline_counts_the_last_ten_minutes():
    board = FailureBoard()
    for minute in (0, 0, 3, 9):
        board.add(failed(6000 + minute * 60 + 1, cmd="x"))
    assert board.groups["x"].sparkline(board.now) == [2, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    board.add(failed(6000 + 15 * 60, cmd="x"))
    assert board.groups["x"].sparkline(board.now) == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1]  # minutes 106..115
    assert len(board.groups["x"].minutes) <= 10


def test_a_storm_of_unique_names_stays_bounded_in_one_other_row():
    board = FailureBoard(max_groups=50)
    for i in range(10_000):
        board.add(failed(i / 100, cmd=f"/tmp/unique-{i}"))
    assert len(board.groups) == 50
    rows = board.rows()
    assert rows[-1].key == OTHER and rows[-1].count == 10_000 - 50
    assert sum(g.count for g in rows) == 10_000
    assert all(len(g.minutes) <= 10 for g in rows)


def test_grouping_by_unit():
    board = FailureBoard(by="unit")
    board.add(failed(1, cmd="a", unit="nginx.service"))
    board.add(failed(2, cmd="b", unit="nginx.service"))
    board.add(failed(3, cmd="c"))
    assert sorted((g.key, g.count) for g in board.rows()) == [("-", 1), ("nginx.service", 2)]


# --- reasons and units, pure -----------------------------------------------------------


def test_reasons_in_words():
    def reason(**kw) -> str | None:
        return exit_reason(Event(ts=0, event="exit", **kw))

    assert reason(exit_code=126) == "not executable or permission denied (126)"
    assert reason(exit_code=127) == "command not found (127)"
    assert reason(exit_code=139) == "a child died of SIGSEGV (shell status 128+11)"
    assert reason(exit_code=1) is None
    assert reason(exit_code=0) is None
    assert reason(signal="SIGTERM") == "killed by SIGTERM (terminated)"
    assert reason(signal="SIGKILL") == "killed by SIGKILL (killed)"
    assert exit_reason(Event(ts=0, event="exit", signal="SIGKILL"), oom=True) == "killed by the OOM killer"
    assert exit_reason(Event(ts=0, event="exit", signal="SIGTERM"), oom=True) == "killed by SIGTERM (terminated)"
    assert (
        exit_reason(Event(ts=0, event="exit", signal="SIGSEGV", core_dumped=True), core="coredumpctl info 7")
        == "killed by SIGSEGV (segmentation fault), core dumped: coredumpctl info 7"
    )


def test_where_a_core_goes():
    assert core_location("|/usr/lib/systemd/systemd-coredump %P %u %g", 42, "x") == "coredumpctl info 42"
    assert core_location("|/usr/share/apport/apport -p%p", 42, "x") == "apport, /var/crash"
    assert core_location("/var/cores/core.%e.%p", 42, "crashme") == "/var/cores/core.crashme.42"
    assert core_location("core", 42, "x") == "core in its working directory"
    assert core_location("core", 42, "x", uses_pid=True) == "core.42 in its working directory"


def test_units_from_cgroup_files():
    assert unit_of("0::/system.slice/nginx.service\n") == "nginx.service"
    assert unit_of("0::/user.slice/user-1000.slice/session-3.scope\n") == "session-3.scope"
    assert unit_of("0::/system.slice/docker-" + "ab" * 32 + ".scope\n") == "docker:" + "ab" * 6
    assert unit_of("0::/machine.slice/libpod-" + "cd" * 32 + ".scope/container\n") == "podman:" + "cd" * 6
    assert unit_of("0::/\n") is None
    assert unit_of("12:memory:/x\n1:name=systemd:/system.slice/cron.service\n0::/\n") == "cron.service"
    assert unit_of(None) is None and unit_of("garbage") is None


# --- each reason from a real process ---------------------------------------------------


@pytest.fixture
def failures():
    """A live source for failed exits (and execs, for names); yields a function that runs a command."""
    src = ConnectorSource(probe(), PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_NONZERO_EXIT)
    src.start()

    def run_and_get(argv: list[str], **kw) -> Event:
        proc = subprocess.Popen(argv, **kw)
        proc.wait()
        events = collect(src, lambda evs: [e for e in evs if e.event == "exit" and e.tgid == proc.pid])
        (ev,) = [e for e in events if e.event == "exit" and e.tgid == proc.pid]
        return ev

    yield run_and_get
    src.close()


@pytest.mark.kernel
def test_real_126_127_and_shell_signal_statuses(failures, tmp_path):
    script = tmp_path / "notexec.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    assert failures(["sh", "-c", str(script)]).reason == "not executable or permission denied (126)"
    assert failures(["sh", "-c", "no-such-command-proctop"]).reason == "command not found (127)"
    inner = "sh -c 'kill -SEGV $$'; exit $?"
    assert failures(["sh", "-c", inner]).reason == "a child died of SIGSEGV (shell status 128+11)"


@pytest.mark.kernel
def test_real_core_dump_says_where_the_core_went(failures, tmp_path):
    def core_limit():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    code = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    ev = failures([sys.executable, "-c", code], preexec_fn=core_limit, cwd=tmp_path)
    pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    uses_pid = Path("/proc/sys/kernel/core_uses_pid").read_text().strip() == "1"
    where = core_location(pattern, ev.pid, ev.comm, uses_pid)
    if ev.core_dumped:
        assert ev.reason == f"killed by SIGSEGV (segmentation fault), core dumped: {where}"
    else:  # a core_pattern pipe that declined: still the signal in words
        assert ev.reason == "killed by SIGSEGV (segmentation fault)"
    assert ev.core_dumped is any(p.name.startswith("core") for p in tmp_path.iterdir()) or pattern.startswith("|")


def _memory_cgroup(name: str) -> tuple[Path, Path]:
    """A cgroup limited to 32 MiB: (its directory, its cgroup.procs), v1 memory controller or v2."""
    v1 = Path("/sys/fs/cgroup/memory")
    if v1.is_dir():
        path = v1 / name
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(32 << 20))
    else:
        path = Path("/sys/fs/cgroup") / name
        path.mkdir()
        (path / "memory.max").write_text(str(32 << 20))
        (path / "memory.swap.max").write_text("0")
    return path, path / "cgroup.procs"


@pytest.mark.kernel
def test_real_oom_kill_is_named_only_with_evidence(failures):
    path, procs = _memory_cgroup(f"proctop-oom-{os.getpid()}")
    try:
        hog = "import time; time.sleep(0.3); x = bytearray(512 << 20); x[::4096] = b'x' * len(x[::4096])"
        ev = failures([sys.executable, "-c", hog], preexec_fn=lambda: procs.write_text(str(os.getpid())))
        assert ev.signal == "SIGKILL"
        assert ev.reason == "killed by the OOM killer"
        # the same cgroup, a SIGKILL that is not the OOM killer's: no evidence, no claim
        plain = failures(["sh", "-c", "kill -KILL $$"], preexec_fn=lambda: procs.write_text(str(os.getpid())))
        assert (plain.signal, plain.reason) == ("SIGKILL", "killed by SIGKILL (killed)")
    finally:
        remove_cgroup(path)


@pytest.mark.kernel
def test_a_plain_sigkill_is_not_called_oom(failures):
    ev = failures(["sh", "-c", "kill -KILL $$"])
    assert (ev.signal, ev.reason) == ("SIGKILL", "killed by SIGKILL (killed)")


@pytest.mark.kernel
def test_real_unit_at_exec_and_for_a_process_gone_unannounced(failures):
    unit = f"proctop-test-{os.getpid()}.service"
    with unit_cgroup(unit) as enter:
        ev = failures(["sh", "-c", "sleep 0.1; exit 3"], preexec_fn=enter)
        assert ev.unit == unit
        # under --only nonzero-exit only: nothing announced it, it was reaped at once: its parent's unit
        src = ConnectorSource(probe(), PROC_EVENT_NONZERO_EXIT)
        src.start()
        try:
            shell = ["sh", "-c", "sh -c 'exit 4'; sleep 0.5"]
            proc = subprocess.Popen(shell, preexec_fn=enter)
            events = collect(src, lambda evs: [e for e in evs if e.event == "exit" and e.ppid == proc.pid])
            proc.wait()
            (child,) = [e for e in events if e.event == "exit" and e.ppid == proc.pid]
            assert child.unit == unit
        finally:
            src.close()
