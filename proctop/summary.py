"""``--summary``: the failures board as a plain text table, for scripts and bug reports.

It reads events like ``--json`` does (live, from a replay, or from one
command's tree) and prints the board once, when the replay ends, after
``--duration``/``--count``, on SIGINT/SIGTERM/SIGHUP, or when the watched
command has exited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from proctop.errors import write_stdout
from proctop.headless import batches
from proctop.model.failures import FailureBoard
from proctop.sources.base import Source
from proctop.ui.board import group_cells
from proctop.ui.sanitize import safe
from proctop.ui.timeline import fit

#: (title, width) of the table's columns; the command is last and not cut.
TABLE = (("LOOP", 4), ("COUNT", 6), ("/MIN", 5), ("LAST 10MIN", 10), ("LAST", 8), ("STATUSES", 28))


def collect_failures(
    source: Source,
    board: FailureBoard,
    *,
    duration: float | None = None,
    count: int | None = None,
    stop_flag: Callable[[], bool] | None = None,
) -> int:
    """Feed ``board`` until the end of the source, the duration or count, or a stop; returns events read."""
    seen = 0

    def more() -> bool:
        return count is None or seen < count

    for events in batches(source, duration=duration, stop_flag=stop_flag, more=more):
        for ev in events:
            if not source.shows(ev):
                continue
            seen += 1
            board.add(ev)
            if not more():
                break
    return seen


def format_board(board: FailureBoard, title: str = "") -> str:
    """The board as text: one line a group, crash loops first; every string made safe."""
    lines: list[str] = []
    if title:
        lines.append(safe(title))
    if not board.total:
        lines.append("no failures")
        return "\n".join(lines) + "\n"
    header = " ".join(name.ljust(w) for name, w in TABLE) + " USER     UNIT                 COMMAND / REASON"
    lines.append(header.rstrip())
    for group in board.rows():
        cells = group_cells(board, group, width=10_000)  # wide: user, unit and reason too
        mark, number, rate, spark, last, statuses, user, unit, reason, _ = cells
        command = " ".join(group.last_command) if group.last_command else (group.last_comm or group.key)
        if group.key == "other":
            command = f"(other commands: {group.count} failures)"
        fixed = [mark, number, rate, spark, last, statuses]
        row = " ".join(fit(c, w) for c, (_, w) in zip(fixed, TABLE, strict=True))  # made safe, cut to fit
        row += f" {safe(user or '-'):<8} {safe(unit or '-'):<20} {safe(command)}"
        if reason:
            row += f"  ({safe(reason)})"
        lines.append(row)
    return "\n".join(lines) + "\n"


def run_summary(
    source: Source,
    *,
    board: FailureBoard,
    out: TextIO | None = None,
    duration: float | None = None,
    count: int | None = None,
    stop_flag: Callable[[], bool] | None = None,
) -> int:
    """Collect, then print the board; returns 0 (the CLI may return the watched command's status)."""
    started = time.time()
    collect_failures(source, board, duration=duration, count=count, stop_flag=stop_flag)
    span = time.time() - started
    describe = source.describe()
    title = f"proctop: {board.total} failures in {span:.0f}s ({describe.get('label', source.kind)})"
    text = format_board(board, title)
    if out is None:
        write_stdout(text)  # a full disk is one line (status 1), a gone reader the quiet end (0)
    else:
        out.write(text)
        out.flush()
    return 0

