"""Make strings that come from processes safe to put on a terminal.

argv, comm, exe paths and user names are chosen by whoever started the
process. They are shown with ``rich.text.Text`` (never parsed as markup) and
every character a terminal could act on is replaced by a visible escape:
C0 controls and DEL (``\\x1b``), C1 controls (``\\x9b``), the lone surrogates
Python uses for undecodable bytes (``\\xff``), other surrogates, and the
bidirectional-override characters that can reorder what is displayed.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\ud800-\udfff{_BIDI}]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def safe(text: str | None) -> str:
    """``text`` with every control, escape or reordering character made visible."""
    if not text:
        return text or ""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def safe_argv(argv: list[str] | None) -> str:
    """An argv joined by spaces, each argument made safe."""
    if not argv:
        return ""
    return " ".join(safe(arg) for arg in argv)
