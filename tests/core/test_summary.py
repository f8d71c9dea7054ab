"""``--summary``'s table: one line a command identity, fitted to the width, never wrapped."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import termios

import pytest
from helpers import REPO
from rich.cells import cell_len

from proctop.kernel.protocol import PROC_EVENT_ALL
from proctop.model.events import Event
from proctop.model.failures import FailureBoard
from proctop.sinks.stream import run_headless
from proctop.sinks.summary import DEFAULT_WIDTH, FailureSummary, format_board, terminal_width
from proctop.sources.replay import ReplaySource

FAILURES = REPO / "tests/data/failures.jsonl"


def replayed(path=FAILURES) -> tuple[str, FailureBoard]:
    source = ReplaySource(path, PROC_EVENT_ALL)
    source.start()
    board = FailureBoard()
    out = io.StringIO()
    run_headless(source, FailureSummary(source, board, out))
    source.close()
    return out.getvalue(), board


@pytest.mark.parametrize("width", [1, 20, 40, 80, 100, 130, 200])
def test_no_line_is_wider_than_the_terminal(width):
    _, board = replayed()
    text = format_board(board, "proctop: 14 failures in 8m50s (replay)", width)
    lines = text.splitlines()
    assert len(lines) == 2 + len(board.rows())  # title, header, a line a group: nothing wrapped, nothing lost
    assert all(cell_len(line) <= width for line in lines), text


def test_columns_go_by_priority_and_the_unit_stays_at_80():
    _, board = replayed()
    header, *_ = format_board(board, width=80).splitlines()
    assert header.split()[:4] == ["LOOP", "COUNT", "STATUSES", "UNIT"]  # the sparkline, rate, user, time went
    wide = format_board(board, width=200).splitlines()[0]
    assert all(title in wide for title in ("/MIN", "LAST 10MIN", "USER", "UNIT", "COMMAND / REASON"))
    narrow = format_board(board, width=40).splitlines()
    assert narrow[0].split() == ["COUNT", "COMMAND", "/", "REASON"]
    assert any(line.endswith("\u2026") for line in narrow)  # cut with an ellipsis


def test_a_replays_time_is_its_events_first_to_last():
    text, _ = replayed()
    assert text.splitlines()[0] == "proctop: 14 failures in 8m50s (replay)"  # 10 s to 540 s after the header


def test_the_width_comes_from_columns_then_the_terminal_then_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "123")
    assert terminal_width(io.StringIO()) == 123
    for bad in ("", "0", "-5", "abc", "9" * 50, "\u0663"):  # Arabic-Indic 3 is a digit, not a width
        monkeypatch.setenv("COLUMNS", bad)
        assert terminal_width(io.StringIO()) == DEFAULT_WIDTH
    monkeypatch.delenv("COLUMNS")
    main, other = pty.openpty()
    try:
        fcntl.ioctl(other, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 97, 0, 0))
        with open(other, "w", closefd=False) as tty:
            assert terminal_width(tty) == 97
    finally:
        os.close(main)
        os.close(other)


def test_a_hostile_unit_or_command_cannot_widen_a_line():
    board = FailureBoard()
    board.add(Event(ts=1, event="exit", pid=1, cmdline=["\u4e00" * 500, "x" * 10_000], exit_code=1, unit="\u4e00" * 99))
    board.add(Event(ts=2, event="exit", pid=2, cmdline=["a\x1b[2Jb"], exit_code=1, user="\u200b" * 40))
    text = format_board(board, width=80)
    assert all(cell_len(line) <= 80 for line in text.splitlines()) and "\x1b" not in text
