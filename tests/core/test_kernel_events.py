"""What each mask delivers from the real kernel, checked against processes we spawn."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import pytest
from helpers import collect, run

from proctop.kernel.probe import probe
from proctop.kernel.protocol import (
    PROC_EVENT_ALL,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONZERO_EXIT,
)
from proctop.model.kinds import parse_mask
from proctop.sources.connector import ConnectorSource

#: Every test here runs over both socket readers, which must give the same events (issue 20).
pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("reader_kind")]


@pytest.fixture
def open_source():
    opened = []

    def make(mask: int, **kw) -> ConnectorSource:
        src = ConnectorSource(probe(kw.pop("force", None)), mask, **kw)
        src.start()
        opened.append(src)
        return src

    yield make
    for src in opened:
        src.close()


def exits_of(events, pid):
    return [e for e in events if e.event == "exit" and e.tgid == pid]


def test_nonzero_exit_mask_delivers_failures_and_no_zero_exits(open_source, tmp_path):
    src = open_source(PROC_EVENT_NONZERO_EXIT)
    ok_pid = run(["true"])
    fail_pid = run(["sh", "-c", "exit 3"])

    def core_limit():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    segv_pid = run(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"],
        preexec_fn=core_limit,
        cwd=tmp_path,
    )
    events = collect(src, lambda evs: exits_of(evs, fail_pid) and exits_of(evs, segv_pid))
    assert [e.event for e in events if e.event != "exit"] == []
    assert all(e.failed for e in events), [e for e in events if not e.failed]
    assert exits_of(events, ok_pid) == []
    (fail,) = exits_of(events, fail_pid)
    assert (fail.exit_code, fail.signal, fail.core_dumped) == (3, None, False)
    assert fail.ppid == os.getpid()
    assert fail.parent_cmdline and "pytest" in " ".join(fail.parent_cmdline)
    (segv,) = exits_of(events, segv_pid)
    assert (segv.exit_code, segv.signal) == (None, "SIGSEGV")
    core_written = any(p.name.startswith("core") for p in tmp_path.iterdir())
    assert segv.core_dumped is core_written
    assert segv.status_text.startswith("SIGSEGV")


def test_exit_mask_delivers_zero_exits_too(open_source):
    src = open_source(PROC_EVENT_EXIT)
    ok_pid = run(["true"])
    events = collect(src, lambda evs: exits_of(evs, ok_pid))
    (ok,) = exits_of(events, ok_pid)
    assert ok.exit_code == 0 and not ok.failed
    assert {e.event for e in events} == {"exit"}


def test_default_mask_names_fork_exec_and_failure(open_source):
    src = open_source(parse_mask("fork,exec,nonzero-exit"))
    argv = ["sh", "-c", "sleep 0.1; exit 5"]  # lives long enough to be read at exec
    pid = run(argv)
    events = collect(src, lambda evs: exits_of(evs, pid))
    mine = [e for e in events if e.tgid == pid]
    assert [e.event for e in mine] == ["fork", "exec", "exit"]
    fork, exec_, exit_ = mine
    assert fork.ppid == os.getpid()
    assert exec_.cmdline == argv
    assert exec_.exe and exec_.exe.endswith(("sh", "dash", "bash"))
    assert exit_.exit_code == 5
    assert exit_.cmdline == argv  # remembered from exec
    assert exit_.lifetime is not None and 0.1 <= exit_.lifetime < 5
    assert exit_.user == "root" if os.geteuid() == 0 else exit_.user


def test_threads_are_dropped_unless_asked(open_source):
    code = (
        "import threading, time, os\n"
        "ts=[threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "os._exit(4)\n"
    )
    proc_level = open_source(PROC_EVENT_ALL)
    thread_level = open_source(PROC_EVENT_ALL, threads=True)
    pid = run([sys.executable, "-c", code])
    proc_events = collect(proc_level, lambda evs: exits_of(evs, pid))
    thread_events = collect(
        thread_level, lambda evs: [e for e in evs if e.tgid == pid and e.pid == pid and e.event == "exit"]
    )
    assert all(e.pid == e.tgid for e in proc_events)
    assert len(exits_of(proc_events, pid)) == 1
    assert exits_of(proc_events, pid)[0].exit_code == 4
    thread_exits = [e for e in thread_events if e.event == "exit" and e.tgid == pid and e.pid != pid]
    thread_forks = [e for e in thread_events if e.event == "fork" and e.tgid == pid and e.pid != pid]
    assert len(thread_exits) == 4
    assert len(thread_forks) == 4


def test_live_mask_change_on_the_same_socket(open_source):
    src = open_source(PROC_EVENT_NONZERO_EXIT)
    fd_before = src._sock.fileno()
    first = run(["true"])
    events = collect(src, lambda evs: False, timeout=0.5)
    assert not [e for e in events if e.tgid == first]
    src.set_mask(PROC_EVENT_FORK)
    assert src._sock.fileno() == fd_before
    child = run(["true"])
    events = collect(src, lambda evs: [e for e in evs if e.event == "fork" and e.pid == child])
    assert [e.event for e in events if e.pid == child] == ["fork"]
    assert all(e.event == "fork" for e in events)
    src.set_mask(PROC_EVENT_EXEC | PROC_EVENT_NONZERO_EXIT)
    child = run(["sh", "-c", "exit 2"])
    events = collect(src, lambda evs: exits_of(evs, child))
    assert [e.event for e in events if e.tgid == child] == ["exec", "exit"]


def test_mask_zero_stops_everything(open_source):
    src = open_source(PROC_EVENT_ALL)
    src.set_mask(0)
    collect(src, lambda evs: False, timeout=0.3)  # drain what was queued before
    pid = run(["sh", "-c", "exit 1"])
    events = collect(src, lambda evs: False, timeout=0.5)
    assert [e for e in events if e.tgid == pid] == []


def test_overrun_is_reported_and_the_stream_goes_on(open_source):
    # the kernel rounds this up to its minimum; names off: the nonzero-exit mask alone keeps up below
    src = open_source(PROC_EVENT_ALL, rcvbuf=1, names=False)
    assert src.rcvbuf < 8192
    pids = []
    for _ in range(400):  # a burst the tiny buffer cannot hold while we hog the GIL
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    events = collect(src, lambda evs: any(e.event == "lost" for e in evs), timeout=3)
    lost = [e for e in events if e.event == "lost"]
    assert lost and all(e.count >= 1 for e in lost)
    assert src.stats.lost >= 1
    # The stream goes on: with the kernel filtering, even the tiny buffer keeps up.
    src.set_mask(PROC_EVENT_NONZERO_EXIT)
    collect(src, lambda evs: False, timeout=0.5)
    after = run(["sh", "-c", "exit 9"])
    events = collect(src, lambda evs: exits_of(evs, after))
    assert exits_of(events, after)[0].exit_code == 9


def test_userspace_filtering_matches_the_kernel(open_source):
    """The pre-6.6 path (4-byte LISTEN, mask applied by us) delivers the same events."""
    src = open_source(PROC_EVENT_NONZERO_EXIT, force="userspace")
    assert src.capability.legacy
    ok_pid = run(["true"])
    fail_pid = run(["sh", "-c", "exit 6"])
    events = collect(src, lambda evs: exits_of(evs, fail_pid))
    assert exits_of(events, ok_pid) == []
    assert exits_of(events, fail_pid)[0].exit_code == 6
    assert all(e.failed for e in events)
    assert src.stats.filtered > 0  # the kernel sent everything; we dropped it


def _nonroot_watch():
    """In the uid-65534 child: subscribe, fail a process, report what arrived."""
    src = ConnectorSource(probe(), PROC_EVENT_NONZERO_EXIT)
    src.start()
    try:
        ok_pid = run(["true"])
        fail_pid = run(["sh", "-c", "exit 3"])
        events = collect(src, lambda evs: exits_of(evs, fail_pid))
        return {
            "uid": os.getuid(),
            "kind": src.kind,
            "fail": [(e.exit_code, e.ppid) for e in exits_of(events, fail_pid)],
            "ok": len(exits_of(events, ok_pid)),
            "all_failed": all(e.failed for e in events),
            "me": os.getpid(),
        }
    finally:
        src.close()


@pytest.mark.nonroot
def test_nonroot_subscriber_sees_failures(nonroot_child):
    result = nonroot_child(_nonroot_watch)
    assert result["uid"] == 65534
    assert result["kind"] == "native"
    assert result["fail"] == [(3, result["me"])]
    assert result["ok"] == 0
    assert result["all_failed"]


def test_signal_names_for_a_killed_process(open_source):
    src = open_source(PROC_EVENT_NONZERO_EXIT)
    proc = subprocess.Popen(["sleep", "30"])
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    events = collect(src, lambda evs: exits_of(evs, proc.pid))
    (ev,) = exits_of(events, proc.pid)
    assert (ev.exit_code, ev.signal, ev.core_dumped) == (None, "SIGTERM", False)
    assert ev.comm == "sleep" or ev.comm is None  # reaped already: the name may be gone


async def test_source_lifecycle_inside_a_running_event_loop():
    """Textual runs an asyncio loop; pyroute2's sync API must not trip over it, nor leak."""
    fds_before = len(os.listdir("/proc/self/fd"))
    src = ConnectorSource(probe(), PROC_EVENT_NONZERO_EXIT)
    src.start()
    try:
        src.set_mask(PROC_EVENT_EXIT)
        pid = run(["true"])
        events = collect(src, lambda evs: exits_of(evs, pid))
        assert exits_of(events, pid)[0].exit_code == 0
    finally:
        src.close()
    assert src._sock is None
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_kmod_source_never_asks_for_what_the_module_cannot_send():
    """Mask bits outside ``supported_events`` are not requested; none left means IGNORE.

    Played against the kernel's own connector dressed as a module that only
    knows fork (LISTEN with 0 would mean "everything" to the module).
    """
    from proctop.kernel.probe import Capability

    cap = Capability(kind="kmod", supported=PROC_EVENT_FORK)
    src = ConnectorSource(cap, PROC_EVENT_EXIT)
    src.start()
    try:
        pid = run(["true"])
        assert [e for e in collect(src, lambda evs: False, timeout=0.5) if e.tgid == pid] == []
        src.set_mask(PROC_EVENT_EXIT | PROC_EVENT_FORK)
        pid = run(["true"])
        events = collect(src, lambda evs: [e for e in evs if e.pid == pid])
        assert [e.event for e in events if e.tgid == pid] == ["fork"]
        assert {e.event for e in events} == {"fork"}
    finally:
        src.close()


def test_a_consumer_far_behind_loses_counted_events_not_memory(open_source, monkeypatch):
    import proctop.sources.reader as reader

    monkeypatch.setattr(reader, "QUEUE_MAX", 50)
    src = open_source(PROC_EVENT_FORK | PROC_EVENT_EXIT)
    for _ in range(100):  # 200+ events while nobody polls
        run(["true"])
    deadline = time.monotonic() + 5
    while src.stats.lost == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(src._reader.queue) <= 51  # the events, plus one marker for the run of drops
    events = collect(src, lambda evs: False, timeout=0.5)
    lost = [e for e in events if e.event == "lost"]
    assert sum(e.count for e in lost) == src.stats.lost >= 100
    after = run(["sh", "-c", "exit 8"])
    events = collect(src, lambda evs: exits_of(evs, after))
    assert exits_of(events, after)[0].exit_code == 8


def test_long_argv_is_read_whole(open_source):
    src = open_source(PROC_EVENT_EXEC)
    argv = ["sh", "-c", "sleep 0.2", *[f"arg{i}-" + "x" * 100 for i in range(100)]]  # ~10 KB
    pid = run(argv)
    events = collect(src, lambda evs: [e for e in evs if e.tgid == pid])
    (ev,) = [e for e in events if e.tgid == pid]
    assert ev.cmdline == argv


def _spoof_failure_to(port: int, pid: int) -> None:
    """Unicast a well-formed forged exit (status 3 << 8) to ``port``.

    The connector has no NL_CFG_F_NONROOT_SEND, so this takes CAP_NET_ADMIN
    (uid 65534 gets EPERM); a process holding it must still not be believed.
    """
    import socket

    from proctop.kernel.protocol import RawEvent, encode_event

    forged = encode_event(RawEvent(PROC_EVENT_EXIT, 0, time.monotonic_ns(), pid, pid, 1, 1, 3 << 8, 17))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11) as sock:
        sock.bind((0, 0))
        sock.sendto(forged, (port, 0))


def test_datagrams_not_from_the_kernel_are_counted_never_shown(open_source):
    """A process may unicast to our netlink port; only port 0 (the kernel) is believed."""
    src = open_source(PROC_EVENT_NONZERO_EXIT)
    port = src._sock.raw.getsockname()[0]
    forged_pid = 4_000_000  # above pid_max: no real process has it
    _spoof_failure_to(port, forged_pid)
    real = run(["sh", "-c", "exit 5"])
    events = collect(src, lambda evs: exits_of(evs, real))
    assert exits_of(events, real)[0].exit_code == 5
    assert [e for e in events if e.tgid == forged_pid] == []
    assert src.stats.malformed >= 1


def test_a_comm_that_is_not_utf8_keeps_its_bytes_as_argv_does(open_source):
    """prctl(PR_SET_NAME) takes any bytes; they come through as \\udcXX escapes (JSON and UI), never as U+FFFD."""
    from proctop.kernel.protocol import PROC_EVENT_COMM

    src = open_source(PROC_EVENT_COMM | PROC_EVENT_NONZERO_EXIT)
    code = (
        "import ctypes, os, time; ctypes.CDLL(None).prctl(15, b'bad\\xffname', 0, 0, 0); time.sleep(0.3); os._exit(3)"
    )
    pid = run([sys.executable, "-c", code])
    events = collect(src, lambda evs: exits_of(evs, pid))
    comms = [e.comm for e in events if e.event == "comm" and e.tgid == pid]
    assert comms == ["bad\udcffname"]
    assert exits_of(events, pid)[0].comm == "bad\udcffname"


def test_an_exit_still_queued_behind_a_slow_consumer_keeps_its_name(open_source, monkeypatch):
    """A named exec, then its exit still queued long after the process left /proc: the exit keeps the name.

    The consumer is held behind (one event per poll), so the process is gone
    (reaped) before its exec is even enriched; nothing but its exit retires it.
    """
    import proctop.sources.connector as connector

    monkeypatch.setattr(connector, "_POLL_MAX", 1)
    src = open_source(PROC_EVENT_EXEC | PROC_EVENT_NONZERO_EXIT)
    pid = run(["sh", "-c", "sleep 0.3; exit 4"])  # gone (reaped) before the first poll
    events = collect(src, lambda evs: exits_of(evs, pid))
    execs = [e for e in events if e.event == "exec" and e.tgid == pid]
    assert execs and execs[0].cmdline == ["sh", "-c", "sleep 0.3; exit 4"]
    (ev,) = exits_of(events, pid)
    assert ev.cmdline == ["sh", "-c", "sleep 0.3; exit 4"]
    assert ev.lifetime_resolution is None and 0.3 <= ev.lifetime < 0.5  # from the exec's kernel timestamp


def test_lifetimes_say_their_precision(open_source):
    """From kernel timestamps when fork was seen; from /proc's clock ticks otherwise, marked as such."""
    from proctop.model.procfs import TICK

    src = open_source(PROC_EVENT_FORK | PROC_EVENT_NONZERO_EXIT, names=False)  # names would add fork
    pid = run(["sh", "-c", "exit 3"])
    (ev,) = exits_of(collect(src, lambda evs: exits_of(evs, pid)), pid)
    assert ev.lifetime_resolution is None and 0 < ev.lifetime < 0.2
    src.set_mask(PROC_EVENT_NONZERO_EXIT)
    # Unannounced (no fork, no exec in the mask): its zombie, reaped a second late, is read at its exit.
    proc = subprocess.Popen(["sh", "-c", "(sleep 1.5; exit 3) & exec sleep 2.5"])
    events = collect(src, lambda evs: [e for e in evs if e.event == "exit" and e.ppid == proc.pid])
    proc.wait()
    (ev,) = [e for e in events if e.event == "exit" and e.ppid == proc.pid]
    assert ev.lifetime_resolution == TICK
    assert 1.5 - TICK <= ev.lifetime < 1.8


def test_a_titled_parent_is_named_alike_by_either_reader(open_source):
    """A failure's parent found through psutil (unannounced under nonzero-exit) has the argv
    the reader's snapshot would give it: one element, not the title split on its spaces."""
    title = "nginx: worker process"
    src = open_source(PROC_EVENT_NONZERO_EXIT)
    parent = subprocess.Popen(["bash", "-c", f'exec -a "{title}" bash'], stdin=subprocess.PIPE)
    try:
        parent.stdin.write(b'sh -c "exit 3"\nsleep 5\n')  # alive while its child's exit is read
        parent.stdin.close()
        events = collect(src, lambda evs: any(e.ppid == parent.pid for e in evs))
    finally:
        parent.kill()
        parent.wait()
    (failed,) = [e for e in events if e.event == "exit" and e.ppid == parent.pid]
    assert failed.exit_code == 3
    assert failed.parent_cmdline == [title]


def _nonroot_names():
    """In the uid-65534 child: watch exec,exit and report how its own child was named."""
    src = ConnectorSource(probe(), parse_mask("exec,exit"))
    src.start()
    try:
        pid = run(["sh", "-c", "sleep 0.05", "named-by-nobody"])
        events = collect(src, lambda evs: exits_of(evs, pid))
        return {
            "execs": [(e.cmdline, e.comm, e.exe) for e in events if e.event == "exec" and e.tgid == pid],
            "exits": [(e.cmdline, e.comm) for e in exits_of(events, pid)],
        }
    finally:
        src.close()


@pytest.mark.nonroot
def test_nonroot_names_a_process_at_exec_and_at_exit(nonroot_child):
    """As uid 65534: argv, comm and exe read at exec, and the exit named from them."""
    result = nonroot_child(_nonroot_names)
    argv = ["sh", "-c", "sleep 0.05", "named-by-nobody"]
    ((cmdline, comm, exe),) = result["execs"]
    assert (cmdline, comm) == (argv, "sh")
    assert exe is not None and os.path.basename(exe) in ("dash", "bash", "sh")
    assert result["exits"] == [(argv, "sh")]
