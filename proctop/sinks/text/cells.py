"""Cells: text fitted to a width, and the time formats the columns show.

Every string a column draws goes through ``fit``, which makes it safe
(``proctop.sinks.text.sanitize``) before it measures it, so nothing reaches a
terminal unsanitized, on screen or in ``--summary``'s table.
"""

from __future__ import annotations

import time

from rich.cells import cell_len, set_cell_size

from proctop.sinks.text.sanitize import safe

#: Characters of a row's text kept for display and searched by the view filter (a command,
#: a detail, a unit): wider than any terminal, so a megabyte argv costs no more to draw
#: or to match than a short one (and a regex's backtracking is bounded by it).
ROW_TEXT_LIMIT = 2048


def fit(text: str, width: int) -> str:
    """``text`` made safe, then cut (with an ellipsis) or padded to exactly ``width`` cells.

    The only way text gets into a column, so nothing reaches the screen unsanitized
    (``safe`` passes ``Shown`` strings through as they are).
    """
    if width <= 0:
        return ""
    text = safe(text)
    cut = len(text) > width * 2 + 2  # more than fits even in 2-cell characters: measure less
    if cut:
        text = text[: width * 2 + 2]
    if cut or cell_len(text) > width:
        return set_cell_size(text, width - 1) + "\u2026"
    return set_cell_size(text, width)


def cut(text: str, width: int) -> str:
    """``text`` made safe and no wider than ``width`` cells (an ellipsis where cut), never padded."""
    text = safe(text)
    return text if cell_len(text) <= width else fit(text, width)


def format_time(ts: float) -> str:
    """``HH:MM:SS.mmm`` in local time (tests set ``TZ=UTC``)."""
    whole = int(ts)
    ms = round((ts - whole) * 1000)
    if ms >= 1000:
        whole, ms = whole + 1, ms - 1000
    return time.strftime("%H:%M:%S", time.localtime(whole)) + f".{ms:03d}"


def format_minutes(seconds: float) -> str:
    """A span of a minute or more: ``5m07s``, ``2h03m`` (lifetimes, and ``--summary``'s span)."""
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
