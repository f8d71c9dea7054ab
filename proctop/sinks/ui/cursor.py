"""What the timeline and the failures board share: a cursor row kept on screen below a fixed header line."""

from __future__ import annotations

from textual.scroll_view import ScrollView


def reveal(view: ScrollView, cursor: int, top: int) -> None:
    """Scroll ``view`` the least that puts row ``cursor`` on screen; ``top`` is the first row shown.

    Line 0 of both views is their column header, so a page is one line shorter than the region.
    """
    page = max(1, view.scrollable_content_region.height - 1)
    if cursor < top:
        view.scroll_to(y=cursor, animate=False, immediate=True)
    elif cursor >= top + page:
        view.scroll_to(y=cursor - page + 1, animate=False, immediate=True)


def page_size(view: ScrollView) -> int:
    """Rows a page key moves the cursor: the visible rows, less the header."""
    return max(1, view.size.height - 2)
