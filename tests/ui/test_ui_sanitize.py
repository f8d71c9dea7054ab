"""No control, format or invisible character reaches the screen, whatever an event holds.

Hypothesis builds events with hostile text in every field and renders them the
three ways the UI does (a timeline row, the details panel, the header); a
pilot test replays a hostile capture through the whole app.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.style import Style
from ui_helpers import screen_text, wait_for

from proctop.kernel.protocol import PROC_EVENT_ALL
from proctop.model.events import EVENT_KINDS, Event
from proctop.sinks.text.cells import fit
from proctop.sinks.text.rows import Row
from proctop.sinks.text.sanitize import ScreenText, Shown, bounded, safe
from proctop.sinks.ui.app import ProctopApp
from proctop.sinks.ui.timeline import row_segments
from proctop.sinks.ui.widgets import details_text
from proctop.sources.base import Source
from proctop.sources.replay import ReplaySource

#: What must never be drawn: controls, format characters (bidi, zero-width, BOM),
#: surrogates, private use, unassigned, separators and spaces other than U+0020.
FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}


def forbidden(text: str) -> list[str]:
    return [
        ch
        for ch in text
        if ch not in " \n" and (unicodedata.category(ch) in FORBIDDEN_CATEGORIES or ch in "\u115f\u3164\ufe0f")
    ]


HOSTILE = "\x1b]0;TITLE\x07\x1b]52;c;cHduZWQ=\x07\x1b[2J\x9b\u202e\u200b\ufeff\u2028\udcff\u3164\ufe0f"
TEXT = st.text(alphabet=st.characters(codec=None) | st.sampled_from(list(HOSTILE)), max_size=40)
INTS = st.none() | st.integers(-(2**63), 2**63)
ARGV = st.none() | st.lists(TEXT, max_size=4)

_STRATEGIES = {
    "ts": st.floats(0, 4e9),
    "event": st.sampled_from(EVENT_KINDS),
    "comm": st.none() | TEXT,
    "cmdline": ARGV,
    "user": st.none() | TEXT,
    "signal": st.none() | TEXT,
    "core_dumped": st.booleans(),
    "lifetime": st.none() | st.floats(0, 1e9),
    "exe": st.none() | TEXT,
    "parent_cmdline": ARGV,
    "parent_comm": st.none() | TEXT,
    "reason": st.none() | TEXT,
    "unit": st.none() | TEXT,
    "lifetime_resolution": st.none() | st.floats(0, 1),
}
EVENTS = st.builds(
    Event,
    **{f.name: _STRATEGIES.get(f.name, INTS) for f in fields(Event)},
)


@settings(max_examples=300, deadline=None)
@given(ev=EVENTS, width=st.integers(0, 200), ancestry=st.lists(st.tuples(st.integers(1, 10**6), TEXT), max_size=3))
def test_rows_and_details_never_draw_unsafe_characters(ev, width, ancestry):
    row = Row(ev)
    for is_cursor in (False, True):
        drawn = "".join(seg.text for seg in row_segments(row, width, Style(), Style(), is_cursor))
        assert forbidden(drawn) == [], drawn
    assert forbidden(details_text(row, ancestry).plain) == []


@given(text=TEXT, width=st.integers(-1, 120))
def test_fit_is_safe_and_exactly_as_wide_as_asked(text, width):
    from rich.cells import cell_len

    out = fit(text, width)
    assert forbidden(out) == []
    assert cell_len(out) == max(0, width)


@given(parts=st.lists(TEXT, max_size=5))
def test_screen_text_sanitizes_whatever_is_appended(parts):
    text = ScreenText(parts[0] if parts else "")
    for part in parts[1:]:
        text.append(part, style="bold").newline()
    assert forbidden(text.plain) == []


def test_screen_text_refuses_an_unchecked_rich_text():
    from rich.text import Text

    with pytest.raises(TypeError):
        ScreenText().append(Text("\x1b[2J"))


def test_invisible_and_format_characters_are_escaped():
    assert safe("r\u200bm") == r"r\u200bm"  # would read as `rm`
    assert safe("\ufeffls") == r"\ufeffls"
    assert safe("a\u2028b") == r"a\u2028b"
    assert safe("nb\u00a0sp") == r"nb\xa0sp"
    assert safe("hangul\u3164filler") == r"hangul\u3164filler"
    assert safe("tag\U000e0041") == r"tag\U000e0041"
    assert safe("ünïcödé 漢字 emoji \U0001f600") == "ünïcödé 漢字 emoji \U0001f600"
    assert type(safe("x")) is Shown and safe(safe("\x1b")) == r"\x1b"


def test_bounded_names_what_it_left_out():
    assert bounded("abc", 5) == "abc"
    assert bounded("a" * 10 + "é", 4) == "aaaa\u2026 (8 more bytes)"


def test_a_megabyte_argv_is_cut_in_the_details_panel():
    ev = Event(ts=0, event="exec", pid=1, tgid=1, cmdline=["x" * 1_000_000, "y" * 1000])
    plain = details_text(Row(ev), []).plain
    assert len(plain) < 20_000
    assert "(992809 more bytes)" in plain  # 1,001,001 bytes of argv, 8,192 characters kept


class _HostileSource(Source):
    """A source whose every string a header can show is hostile."""

    kind = "replay"
    label = "replay \x1b]0;TITLE\x07"

    def __init__(self) -> None:
        super().__init__(PROC_EVENT_ALL)
        self.error = "broken \x1b[2J\u202e"

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Event]:
        return []


async def test_the_header_draws_hostile_source_strings_literally():
    app = ProctopApp(_HostileSource(), rate_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("slash", "a", "b")
        app.view_filter = "\x1b[31m\u200b"  # the app's state, bound into the header
        await pilot.pause()
        header = app.header_bar.render().plain
        assert r"broken \x1b[2J\u202e" in header
        assert r"\x1b[31m\u200b" in header
        assert forbidden(header) == []


async def test_a_hostile_capture_is_drawn_literally_everywhere(tmp_path):
    """The issue's example: a capture whose `signal` retitles the terminal, writes the clipboard, clears it."""
    hostile = {
        "ts": 1700000000.5,
        "event": "exit",
        "pid": 42,
        "tgid": 42,
        "ppid": 1,
        "comm": "evil\u200b",
        "cmdline": ["r\u200bm", "-rf", "\x1b[2J"],
        "user": "root\u202e",
        "signal": "\x1b]0;TITLE\x07\x1b]52;c;cHduZWQ=\x07\x1b[2J",
        "exe": "/tmp/\x9b2J",
        "parent_comm": "\ufeffsh",
    }
    path = tmp_path / "hostile.jsonl"
    path.write_text(json.dumps(hostile) + "\n")
    source = ReplaySource(path, PROC_EVENT_ALL)
    source.start()
    app = ProctopApp(source, rate_interval=None)
    async with app.run_test(size=(160, 40)) as pilot:
        assert await wait_for(pilot, lambda: len(app.timeline.rows) == 1)
        await pilot.press("enter")  # the details panel too
        await pilot.pause()
        text = screen_text(app)
        assert forbidden(text) == []
        assert r"\x1b]0;TITLE\x07" in text
        assert r"r\u200bm -rf \x1b[2J" in text
    source.close()
