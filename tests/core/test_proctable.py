"""The one process table: learnt from events (replay), walked for ancestry, bounded in what it remembers."""

from __future__ import annotations

from proctop.model.events import Event
from proctop.model.proctable import ProcessTable, ProcInfo


def _learnt() -> tuple[ProcessTable, Event]:
    table = ProcessTable()
    table.learn(Event(ts=1, event="exec", pid=20, tgid=20, ppid=10, cmdline=["make"], uid=1000))
    table.learn(Event(ts=2, event="fork", pid=30, tgid=30, ppid=20))
    table.learn(Event(ts=3, event="exec", pid=30, tgid=30, ppid=20, cmdline=["cc", "x.c"]))
    table.learn(Event(ts=4, event="fork", pid=40, tgid=40, ppid=30))
    crash = Event(ts=5, event="exit", pid=40, tgid=40, ppid=30, signal="SIGSEGV")
    table.learn(crash)
    return table, crash


def test_ancestry_from_the_events_then_from_a_live_read():
    table, crash = _learnt()
    assert 40 not in table.live and table.exited[40].ppid == 30  # exited, remembered
    assert table.live[40 - 10].cmdline == ["cc", "x.c"]
    # 10 is unknown to the events: "?" and the chain ends; a live read (the enricher's) goes on
    assert table.ancestry(crash) == [(30, "cc x.c"), (20, "make"), (10, "?")]
    reads = {10: ProcInfo(pid=10, start=0, cmdline=["bash"], ppid=1), 1: ProcInfo(pid=1, start=0, comm="init")}
    assert table.ancestry(crash, reads.get) == [(30, "cc x.c"), (20, "make"), (10, "bash"), (1, "init")]


def test_the_parents_of_an_exited_row_outlive_it():
    table, crash = _learnt()
    table.learn(Event(ts=6, event="exit", pid=30, tgid=30, ppid=20))  # cc ends too
    table.learn(Event(ts=7, event="exit", pid=20, tgid=20, ppid=10))  # and make
    assert not table.live.keys() & {20, 30, 40}
    assert table.ancestry(crash) == [(30, "cc x.c"), (20, "make"), (10, "?")]


def test_a_reused_pid_is_not_taken_for_the_old_process():
    table, crash = _learnt()
    table.learn(Event(ts=6, event="exit", pid=30, tgid=30, ppid=20))
    table.learn(Event(ts=9, event="fork", pid=30, tgid=30, ppid=1))  # pid 30 again, another process
    assert table.ancestry(crash)[:2] == [(30, "cc x.c"), (20, "make")]
    later = Event(ts=10, event="exec", pid=30, tgid=30, ppid=1, cmdline=["other"])
    table.learn(later)
    assert table.ancestry(later) == [(1, "?")]


def test_an_exit_names_its_parent_and_the_uid_before_a_change_is_the_events():
    table = ProcessTable()
    table.learn(Event(ts=1, event="exit", pid=5, tgid=5, ppid=4, exit_code=1, parent_cmdline=["sh", "-c", "x"]))
    assert table.live[4].cmdline == ["sh", "-c", "x"]
    table.learn(Event(ts=2, event="exec", pid=6, tgid=6, ppid=4, uid=1000, cmdline=["sudo"]))
    table.learn(Event(ts=3, event="uid", pid=6, tgid=6, ruid=0, euid=0, uid=1000))
    assert table.live[6].uid == 0


def test_threads_do_not_retire_their_process_and_a_tracer_is_no_parent():
    table = ProcessTable()
    table.learn(Event(ts=1, event="exec", pid=7, tgid=7, ppid=1, cmdline=["db"]))
    table.learn(Event(ts=2, event="fork", pid=8, tgid=7, ppid=1))  # a thread
    table.learn(Event(ts=3, event="exit", pid=8, tgid=7, ppid=1))  # the thread ends
    table.learn(Event(ts=4, event="ptrace", pid=7, tgid=7, ppid=99, tracer_pid=99))
    assert table.live[7].cmdline == ["db"] and table.live[7].ppid == 1
    assert 8 not in table.live and 8 not in table.exited


def test_the_exited_are_bounded_oldest_first():
    table = ProcessTable(exited_limit=3)
    for pid in range(100, 110):
        table.learn(Event(ts=pid, event="exec", pid=pid, tgid=pid, ppid=1, cmdline=[str(pid)]))
        table.learn(Event(ts=pid + 0.5, event="exit", pid=pid, tgid=pid, ppid=1))
    assert list(table.exited) == [107, 108, 109]
    assert not table.live.keys() - {1}
