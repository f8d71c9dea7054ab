"""``--summary``: the failures board as a plain text table, for scripts and bug reports.

One line a command identity (``proctop.model.identity``: a build's broken
files are a line each), fitted to the terminal's width and never wrapped.
With ``-- CMD`` the table goes to stderr, where time(1) writes, so the
command's own stdout stays clean; otherwise to stdout.

It reads events like ``--json`` does (live, from a replay, or from one
command's tree) and prints the board once, when the replay ends, after
``--duration``/``--count``, on SIGINT/SIGTERM/SIGHUP, or when the watched
command has exited.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from rich.cells import cell_len

from proctop.errors import write_stdout
from proctop.model.events import Event
from proctop.model.failures import FailureBoard, FailureGroup
from proctop.sinks.stream import Sink
from proctop.sinks.text.board import COMMAND, SUMMARY, SUMMARY_COMMAND, UNIT, USER, command_with_reason, group_cells
from proctop.sinks.text.cells import cut, fit, format_minutes
from proctop.sinks.text.sanitize import safe
from proctop.sources.base import Source

#: Width when neither COLUMNS nor a terminal says (a pipe, a file, CI's log).
DEFAULT_WIDTH = 80
#: Widest table drawn, whatever COLUMNS says.
MAX_WIDTH = 10_000
#: The columns whose empty cell says ``-`` (a plain table's words must not shift); the
#: columns themselves are the board's spec (``proctop.sinks.text.board.SUMMARY``).
PLACEHOLDER = (USER, UNIT)


class FailureSummary(Sink):
    """The ``--summary`` output: feeds ``board`` with the events shown, and prints it at the end.

    The table goes to ``out`` (default: stdout, through the one-line write path).
    A recorded source's time is its events' (first to last); a live one's the wall
    clock, from the start of the stream or from the first event if that came first
    (a watched command starts before the stream does).
    """

    def __init__(self, source: Source, board: FailureBoard, out: TextIO | None = None) -> None:
        self.source = source
        self.board = board
        self.out = out
        self.seen = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.started = time.time()

    def start(self, header: dict[str, object]) -> None:
        self.started = time.time()

    def write(self, events: list[Event]) -> None:
        for ev in events:
            self.seen += 1
            if ev.event != "lost":
                self.first_ts = ev.ts if self.first_ts is None else min(self.first_ts, ev.ts)
                self.last_ts = ev.ts if self.last_ts is None else max(self.last_ts, ev.ts)
            self.board.add(ev)

    @property
    def span(self) -> float:
        """Seconds from the first event to the last (a replay's real time span)."""
        return self.last_ts - self.first_ts if self.first_ts is not None and self.last_ts is not None else 0.0

    def finish(self) -> int:
        """Print the board; 0 (the CLI may return the watched command's status)."""
        board, source = self.board, self.source
        if source.recorded:
            span = self.span
        else:
            span = time.time() - min(self.started, self.first_ts if self.first_ts is not None else self.started)
        describe = source.describe()
        failures = "1 failure" if board.total == 1 else f"{board.total} failures"
        title = f"proctop: {failures} in {_duration(span)} ({describe.get('label', source.kind)})"
        text = format_board(board, title, terminal_width(self.out or sys.stdout))
        if self.out is None:
            write_stdout(text)  # a full disk is one line (status 1), a gone reader the quiet end (0)
        else:
            self.out.write(text)
            self.out.flush()
        return 0


def terminal_width(out: TextIO) -> int:
    """The width to fit: ``COLUMNS``, else the terminal ``out`` writes to, else ``DEFAULT_WIDTH``."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and columns.isascii() and len(columns) < 6 and int(columns) > 0:
        return min(int(columns), MAX_WIDTH)
    try:
        if out.isatty():
            return max(1, min(os.get_terminal_size(out.fileno()).columns, MAX_WIDTH))
    except (OSError, ValueError, AttributeError):  # closed, or not a real file
        pass
    return DEFAULT_WIDTH


def format_board(board: FailureBoard, title: str = "", width: int = DEFAULT_WIDTH) -> str:
    """The board as text, one line a group, crash loops first; every string made safe.

    No line is wider than ``width`` cells: the columns that matter least go first
    (``Column.keep``), each is as wide as its widest cell (up to its width), and what
    still does not fit is cut with an ellipsis, never wrapped.
    """
    width = max(1, width)
    lines: list[str] = []
    if title:
        lines.append(cut(title, width))
    if not board.total:
        lines.append("no failures")
        return "\n".join(lines) + "\n"
    rows = [_cells(board, group) for group in board.rows()]
    widths = [
        min(column.width, max(len(column.title), *(cell_len(safe(cells[i])) for cells, _ in rows)))
        for i, column in enumerate(SUMMARY)
    ]
    shown = list(range(len(SUMMARY)))
    command_room = min(COMMAND.minimum, max(len(COMMAND.title), *(cell_len(safe(command)) for _, command in rows)))
    while shown and sum(widths[i] + 1 for i in shown) + command_room > width:
        shown.remove(min(shown, key=lambda i: SUMMARY[i].keep))
    room = width - sum(widths[i] + 1 for i in shown)

    def line(cells: list[str], command: str) -> str:
        fixed = "".join(fit(cells[i], widths[i]) + " " for i in shown)
        return cut(fixed + (fit(command, room) if room > 0 else ""), width).rstrip()

    lines.append(line([column.title for column in SUMMARY], SUMMARY_COMMAND))
    lines.extend(line(cells, command) for cells, command in rows)
    return "\n".join(lines) + "\n"


def _cells(board: FailureBoard, group: FailureGroup) -> tuple[list[str], str]:
    """The texts of one row: the columns of ``SUMMARY``, and the command (with its reason)."""
    cells = group_cells(board, group)
    texts = [column.cell(cells) or ("-" if column in PLACEHOLDER else "") for column in SUMMARY]
    return texts, command_with_reason(cells)


def _duration(seconds: float) -> str:
    """``0.4s`` under ten seconds, ``42s``, ``5m07s``, ``2h03m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    return format_minutes(seconds)
