"""The one choke point between untrusted text and the terminal.

argv, comm, exe paths, user names, capture files, error messages and file
names are chosen by someone else. Everything the UI and ``--summary`` draw
passes through ``safe``, and the renderers make that structural rather than a
call per field:

* ``Shown`` is the type of a string that passed ``safe``;
* the timeline, the board and ``--summary`` build their columns only through
  ``proctop.sinks.text.cells.fit``, which takes any string and sanitizes what
  is not ``Shown`` already;
* the header and the details panel build only ``ScreenText``, a Rich
  ``Text`` whose ``append`` sanitizes every string (line breaks go through
  ``newline()``, the only way to add one);
* notifications go through ``ProctopApp.say``.

``safe`` replaces every character a terminal could act on, or that would
hide or disguise what is shown, with a visible escape: C0 controls and DEL
(``\\x1b``), C1 controls (``\\x9b``), the lone surrogates Python uses for
undecodable bytes (``\\xff``, the original byte), other surrogates, format
characters (bidi overrides, zero-width space, BOM: ``r\\u200bm`` must not read
as ``rm``), line and paragraph separators, spaces other than U+0020,
private-use and unassigned code points, and Unicode's default-ignorable
characters (variation selectors, Hangul fillers, tags). Markup is never
parsed: the text is data, not Rich markup.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from rich.style import Style
from rich.text import Text

_ASCII_UNSAFE = re.compile("[\x00-\x1f\x7f]")
#: General categories that never belong on screen as themselves.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
#: Default_Ignorable_Code_Point (Unicode DerivedCoreProperties) outside the categories above.
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


class Shown(str):
    """A string that passed ``safe``: nothing in it can act on a terminal."""

    __slots__ = ()


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    if code < 0x80:
        return code < 0x20 or code == 0x7F
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES or _IGNORABLE.match(ch) is not None


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{code - 0xDC00:02x}"
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    return f"\\u{code:04x}"


def safe(text: str | None) -> Shown:
    """``text`` with every control, format, invisible or reordering character made visible.

    ASCII text (nearly all of it) costs one regex search; other text is
    looked at character by character, only where it is not ASCII.
    """
    if not text:
        return _EMPTY
    if type(text) is Shown:
        return text
    if text.isascii():
        if _ASCII_UNSAFE.search(text) is None:
            return Shown(text)
        return Shown(_ASCII_UNSAFE.sub(lambda m: _escape(m.group()), text))
    return Shown("".join(_escape(ch) if _unsafe(ch) else ch for ch in text))


_EMPTY = Shown("")


def safe_argv(argv: list[str] | None) -> Shown:
    """An argv joined by spaces, each argument made safe."""
    if not argv:
        return _EMPTY
    return Shown(" ".join(safe(arg) for arg in argv))


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many bytes (UTF-8) were left out.

    A process's argv may be megabytes; rendering it whole would stall a frame.
    """
    if len(text) <= limit:
        return text
    rest = len(text[limit:].encode("utf-8", "surrogateescape"))
    return f"{text[:limit]}\u2026 ({rest} more bytes)"


class ScreenText(Text):
    """Rich ``Text`` that sanitizes every string appended to it.

    The header and the details panel are built only from these, so no field
    can reach the screen raw, whichever code adds it. A line break is added
    with ``newline()``; a ``"\\n"`` inside appended text is shown as ``\\x0a``.
    """

    def __init__(self, text: str = "", style: str | Style = "", **kwargs: Any) -> None:  # kwargs: Text's
        super().__init__(safe(text), style, **kwargs)

    def append(self, text: str | Text, style: str | Style | None = None) -> ScreenText:
        if isinstance(text, str):
            super().append(safe(text), style)
        elif isinstance(text, ScreenText):
            super().append(text, style)
        else:
            raise TypeError("ScreenText takes str or ScreenText, not an unchecked Text")
        return self

    def append_text(self, text: Text) -> ScreenText:
        return self.append(text)

    def newline(self) -> ScreenText:
        super().append("\n")
        return self
