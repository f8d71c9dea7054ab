"""The view filter's little language: what a user types after ``/``, compiled once into a predicate.

journalctl and htop users type words, ``key:value`` pairs and regexes; one
case-insensitive substring matched none of them. The grammar, all of it
case-insensitive:

``gcc make``
    Space-separated terms must all match (AND).
``word``
    A substring of what the row shows: event, pid, ppid, user, unit, command, detail.
``SIGSEGV|SIGTERM``
    Outside slashes ``|`` separates alternatives: either substring (OR inside a term).
    Nothing else is special; ``.``, ``*``, ``(`` are plain characters.
``/regex/``
    Slashes at both ends make a Python regular expression, searched in the same text.
    It ends at the next space: write a space in a regex as ``\\s`` (or quote a literal).
``"make -k"``
    Double quotes hold spaces and make the text literal: no column, no ``|``, no regex
    (``"http://host"``, ``"a|b"``); ``\\"`` is a quote inside them. An unclosed quote runs
    to the end of the input (the user is still typing).
``column:value``
    Restricts the term to one column; the value may be a word, ``a|b``, ``/regex/`` or
    ``"quoted"``. An empty value (``cmd:`` while typing) restricts nothing.

The columns (the keys of the timeline's column spec, ``proctop.sinks.text.columns``), and
what a plain value means in each:

=========  ====================================================================
``event``  the event, exactly: a kind of ``proctop.model.kinds`` (``exec``, ``exit``, ...)
           or a colour class of one: ``failed`` (an exit with a non-zero code or by a
           signal, the JSON ``failed``), ``signal`` (death by a signal). ``event:exit``
           matches exit rows and never ``sh -c exit 3``.
``pid``    the pid (or, with ``--threads``, the process id), exactly: ``pid:123``
``ppid``   the parent pid, exactly
``user``   the user name as shown, exactly (``user:root``; ``user:/^www/`` for a prefix)
``id``     the command's identity (``proctop.model.identity``), exactly, case included: the
           key the failures board groups by, unit and all (``id:"sh -c exit @cron.service"``,
           what Enter on a board row writes). ``id:/regex/`` searches the key.
``cmd``    a substring of the command as shown, or of its identity's name (``cmd:"cc1 a.c"``
           finds the compile of a.c, whose argv names cc1 by its full path)
``unit``   a substring of the systemd unit or container
``status`` a number is the exit code, exactly (``status:1``; ``status:0`` is a clean
           exit); other text is a substring of the status (``status:SIGSEGV``,
           ``status:core``)
=========  ====================================================================

A bad filter (an invalid regex, an unknown column, ``pid:abc``) never raises:
``compile_filter`` returns a ``Filter`` whose ``error`` says what is wrong, in one
line for the input to show, and that filter matches no row. An empty view with
the error beside it tells the truth; keeping the previous filter would show
rows the input no longer describes.

Hostile text: the rows' strings come from other processes, and Python's ``re``
backtracks with no timeout. Three things bound a regex's cost. Every string it
searches is a row's shown string, cut at ``cells.ROW_TEXT_LIMIT`` (2048)
characters: keep it so. Before a regex runs, the shapes whose cost grows
faster than the square of that length are refused with an error: a repetition
or a choice inside a loop (``(a+)+``, ``(a|ab)*``: exponential, no length bound
saves them), and more ways to match from one position than one open-ended
repetition gives (``a.*a.*b`` took 53 s on one 2048-character row of ``a``;
``a{0,64}`` four times and the back-reference of ``(.*)\\1b`` took minutes).
A leading or trailing ``.*`` is dropped first: it changes no answer and would
make every search walk the whole row. What is accepted costs at worst tens of
milliseconds on one hostile row (tests/ui/test_ui_query.py). And since a static
check can be wrong, every pass of a regex filter over the rows runs under a
deadline (``bounded_pass``): past ``FILTER_DEADLINE`` the filter is given up
with an error, and ``q``, Ctrl-C and SIGTERM are answered. The text must reach
``compile_filter`` as typed: lower-cased, ``\\S`` would become ``\\s``.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import FrameType
from typing import Any, TypeVar

from proctop.model.kinds import COLOURS, EVENT_KINDS, EXTRA_COLOURS
from proctop.sinks.text.cells import ROW_TEXT_LIMIT
from proctop.sinks.text.columns import FILTER_KEYS, Exact, Substring, unit_text
from proctop.sinks.text.rows import Row
from proctop.sinks.text.sanitize import bounded, safe

try:  # the regex parser behind ``re``; private, so the backtracking check is skipped if it moves
    from re import _parser as _sre_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - every CPython 3.11 to 3.13 has it
    _sre_parser = None

#: What ``event:`` accepts: every event kind, and the colour classes that split one kind (failed, signal).
EVENT_VALUES: frozenset[str] = frozenset(EVENT_KINDS) | frozenset(
    colour.name for colour in COLOURS if colour not in EXTRA_COLOURS
)

#: A repetition that may run more times than this is a loop for the backtracking check.
_LOOP = 3
#: Most ways a regex may match from one position (``_tries``): one open-ended repetition
#: (the row's length) with a little bounded choice beside it (``gcc.*-O\\d{1,2}``).
_MAX_TRIES = 16 * ROW_TEXT_LIMIT

_KEY = re.compile(r"([A-Za-z]+):")


def _exit_code(row: Row) -> tuple[str, ...]:
    code = row.ev.exit_code
    return (str(code),) if row.ev.event == "exit" and code is not None and not row.ev.signal else ()


def row_text(row: Row) -> str:
    """Everything the row shows, one space between columns: what a plain term searches."""
    ev = row.ev
    unit = unit_text(row) if ev.unit else ""
    return f"{row.label} {ev.pid} {ev.ppid or ''} {row.user} {unit} {row.command} {row.detail}"


#: The keys come from the timeline's column spec (``proctop.sinks.text.columns``): a column
#: names its keys and what of a row each searches. Matched exactly (the value is the whole
#: field), and what their fields are:
EXACT: dict[str, Callable[[Row], tuple[str, ...]]] = {k.name: k.fields for k in FILTER_KEYS if isinstance(k, Exact)}
#: Matched by substring (text), and their text.
TEXT: dict[str, Callable[[Row], str]] = {k.name: k.text for k in FILTER_KEYS if isinstance(k, Substring)}
#: A second text a key's term also matches, looked at only when the first did not match:
#: ``cmd:`` finds the identity's name too (``cmd:"cc1 a.c"``; proctop.model.identity), and the
#: identity is computed only for rows whose command line missed, once a row: the first ``cmd:`` or
#: ``id:`` over 100,000 rows took 0.8 s, the next 0.06 s, as ``user:`` (here, load 3.6).
ALSO: dict[str, Callable[[Row], str]] = {
    k.name: k.also for k in FILTER_KEYS if isinstance(k, Substring) and k.also is not None
}
#: Every key, in the order the help and the errors list them (the timeline's column order).
COLUMNS: tuple[str, ...] = tuple(key.name for key in FILTER_KEYS)
Test = Callable[[Row], bool]


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled view filter: ``matches(row)`` is true if every term matches.

    ``error`` is one line naming what is wrong with the text, or ``None``; a
    filter with an error matches nothing. ``everything`` is true for an empty
    filter, which matches every row (the timeline can skip filtering).
    """

    text: str
    tests: tuple[Test, ...] = ()
    error: str | None = None
    #: Holds a regex: its cost per row is bounded by ``_slow`` only as far as a static
    #: check can see, so a pass over the rows goes through ``bounded_pass``.
    regex: bool = False

    @property
    def everything(self) -> bool:
        return not self.tests and self.error is None

    def matches(self, row: Row) -> bool:
        if self.error is not None:
            return False
        # Loops, not all()/any() over a generator, here and below: they run per row of a
        # 100,000-row history on every keystroke, and the generators cost a third more.
        for test in self.tests:  # noqa: SIM110
            if not test(row):
                return False
        return True


class FilterError(ValueError):
    """Raised inside the compiler only; ``compile_filter`` turns it into ``Filter.error``."""


@lru_cache(maxsize=64)
def compile_filter(text: str) -> Filter:
    """Compile the filter input's text; never raises (see the module docstring for the grammar)."""
    try:
        tokens = _tokens(text)
        terms = [term for token in tokens if (term := _term(*token)) is not None]
    except FilterError as exc:
        return Filter(text, error=str(exc))
    regex = any(not literal and len(value) >= 2 and value[0] == value[-1] == "/" for _c, value, literal in tokens)
    # Plain terms share one lower-cased copy of the row's text, made once per row.
    on_text = tuple(term for term in terms if isinstance(term, TextTest))
    tests = [term for term in terms if not isinstance(term, TextTest)]
    if on_text:

        def plain(row: Row) -> bool:
            hay = row_text(row).lower()
            for term in on_text:  # noqa: SIM110
                if not term.test(hay):
                    return False
            return True

        tests.insert(0, plain)
    return Filter(text, tuple(tests), regex=regex)


# --- the deadline of one pass -----------------------------------------------------

#: Seconds one pass of a regex filter over the rows may hold the UI's thread (typing it
#: over a full history, or a batch of new rows); then the filter is given up with an error.
FILTER_DEADLINE = 0.5

T = TypeVar("T")


class FilterTimeout(Exception):
    """A pass of a regex filter ran past ``FILTER_DEADLINE``."""


def timed_out(text: str) -> Filter:
    """The filter that replaces one given up at its deadline: it matches nothing and says why."""
    shown = safe(bounded(text, 40))
    return Filter(
        text,
        error=f"{shown!r} took longer than {FILTER_DEADLINE:g} s on these rows: "
        "simplify the regex, or split it into terms",
    )


def bounded_pass(row_filter: Filter, work: Callable[[], T]) -> T:
    """``work()`` (a pass of ``row_filter`` over rows), cut at ``FILTER_DEADLINE`` by ``FilterTimeout``.

    The static check (``_slow``) cannot see every shape that backtracks for
    minutes (``a{0,64}`` four times, a back-reference), and ``re`` holds the
    GIL while it searches: no other thread, not even the terminal watchdog,
    runs meanwhile. But ``re`` looks for signals every few thousand steps, so
    an interval timer's SIGALRM, whose handler raises, ends the search. Only
    in the main thread (where Python runs handlers) and only for a regex:
    plain terms are substring searches, linear in the bounded row.
    """
    if not row_filter.regex or threading.current_thread() is not threading.main_thread():
        return work()
    armed = [True]

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if armed[0]:
            armed[0] = False
            raise FilterTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, FILTER_DEADLINE)
        try:
            return work()
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


@dataclass(frozen=True, slots=True)
class TextTest:
    """A plain term: a test of the row's whole text, lower-cased (``row_text``)."""

    test: Callable[[str], bool]


# --- reading the text -------------------------------------------------------------


def _tokens(text: str) -> list[tuple[str | None, str, bool]]:
    """``(column or None, value, literal)`` per space-separated term.

    A column is a run of letters and ``:`` at the start of a term, outside quotes. A
    value that begins with ``/`` is read raw to the next space (a regex may hold ``"``);
    otherwise double quotes group spaces, and any quoted part makes the value literal.
    """
    tokens: list[tuple[str | None, str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        column = None
        key = _KEY.match(text, i)
        if key is not None:
            column = key.group(1).lower()
            i = key.end()
        if i < n and text[i] == "/":
            start = i
            while i < n and not text[i].isspace():
                i += 1
            tokens.append((column, text[start:i], False))
            continue
        chars: list[str] = []
        literal = False
        while i < n and not text[i].isspace():
            if text[i] != '"':
                chars.append(text[i])
                i += 1
                continue
            literal = True
            i += 1  # inside quotes, to the closing quote or the end
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\':
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1  # the closing quote
        tokens.append((column, "".join(chars), literal))
    return tokens


def _term(column: str | None, value: str, literal: bool) -> Test | TextTest | None:
    """One term's test, ``None`` for a term that restricts nothing (empty, still being typed)."""
    if column is not None and column not in COLUMNS:
        raise FilterError(f"unknown column {_quote(column)}: use {', '.join(COLUMNS)} (quote text with a colon)")
    if not literal and len(value) >= 2 and value[0] == value[-1] == "/":
        return _regex_term(column, _regex(value[1:-1]))
    if column == "id":  # a key as the board wrote it: exact, case included
        keys = frozenset(alt for alt in ([value] if literal else value.split("|")) if alt)
        return (lambda row: row.identity.key in keys) if keys else None
    needles = tuple(alt.lower() for alt in ([value] if literal else value.split("|")) if alt)
    if not needles:
        return None
    if column is None:
        if len(needles) == 1:
            (needle,) = needles
            return TextTest(lambda hay: needle in hay)
        return TextTest(lambda hay: _any_in(needles, hay))
    if column in EXACT:
        return _exact_term(column, frozenset(needles))
    if column == "status":
        return _status_term(needles)
    text_of = TEXT[column]
    also = ALSO.get(column)
    if also is not None:
        return lambda row: _any_in(needles, text_of(row).lower()) or _any_in(needles, also(row).lower())
    return lambda row: _any_in(needles, text_of(row).lower())


def _status_term(needles: tuple[str, ...]) -> Test:
    """``status:1|SIGSEGV``: a number is an exit code, exactly; other text a substring of the status."""
    codes = frozenset(n.lstrip("0") or "0" for n in needles if n.isdigit() and n.isascii())  # status:01 is exit 1
    texts = tuple(n for n in needles if not (n.isdigit() and n.isascii()))
    status = TEXT["status"]
    return lambda row: any(code in codes for code in _exit_code(row)) or _any_in(texts, status(row).lower())


def _any_in(needles: tuple[str, ...], hay: str) -> bool:
    for needle in needles:  # noqa: SIM110
        if needle in hay:
            return True
    return False


def _exact_term(column: str, values: frozenset[str]) -> Test:
    if column == "event":
        unknown = sorted(values - EVENT_VALUES)
        if unknown:
            raise FilterError(f"unknown event {_quote(unknown[0])}: use {', '.join(sorted(EVENT_VALUES))}")
    elif column in ("pid", "ppid"):
        bad = sorted(value for value in values if not (value.isdigit() and value.isascii()))
        if bad:
            raise FilterError(f"{column}: needs a number, got {_quote(bad[0])}")
        values = frozenset(value.lstrip("0") or "0" for value in values)  # no int(): 5000 digits
    fields_of = EXACT[column]
    if column != "user":  # the others are lower case or digits already
        return lambda row: not values.isdisjoint(fields_of(row))
    return lambda row: any(field.lower() in values for field in fields_of(row))


def _regex_term(column: str | None, pattern: re.Pattern[str]) -> Test | TextTest:
    search = pattern.search
    if column is None:
        return TextTest(lambda hay: search(hay) is not None)
    if column in EXACT:
        fields_of = EXACT[column]
        return lambda row: any(search(field) is not None for field in fields_of(row))
    text_of = TEXT[column]
    also = ALSO.get(column)
    if also is not None:
        return lambda row: search(text_of(row)) is not None or search(also(row)) is not None
    return lambda row: search(text_of(row)) is not None


def _regex(source: str) -> re.Pattern[str]:
    shown = safe(bounded(source, 40))
    source = _unpadded(source)
    try:
        pattern = re.compile(source, re.IGNORECASE)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        raise FilterError(f"bad regex /{shown}/: {safe(str(exc))}") from None
    problem = _slow(source)
    if problem:
        raise FilterError(f"regex /{shown}/ {problem}")
    return pattern


def _unpadded(source: str) -> str:
    """The regex without a leading or trailing ``.*``: the same rows match (rows are one line),
    and a search no longer walks every row to its end from every position."""
    for lead in (".*?", ".*"):
        if source.startswith(lead):
            source = source[len(lead) :]
            break
    for tail in (".*?", ".*"):
        head = source[: -len(tail)]
        if source.endswith(tail) and (len(head) - len(head.rstrip("\\"))) % 2 == 0:  # not ``\.*``
            source = head
            break
    return source


def _slow(source: str) -> str | None:
    """Why the regex could take seconds on one hostile row, or ``None``.

    ``re`` backtracks: a repetition inside a loop (``(a+)+$``, ``(a|ab)*``) is
    exponential in the row's length, and each open-ended repetition beyond the
    first multiplies the cost by that length (``a.*a.*b`` takes a minute on
    2048 characters of ``a``). One open-ended repetition is at worst quadratic
    in the bounded row (tens of milliseconds); possessive repeats and atomic
    groups do not backtrack into themselves and are not counted.
    """
    if _sre_parser is None:  # pragma: no cover
        return None
    try:
        tree = _sre_parser.parse(source, re.IGNORECASE)
        nested = _nested(tree, in_loop=False)
    except Exception:  # compiled by re already: a parser change here must not block the filter
        return None
    if nested:
        return "repeats a repetition or a choice ((a+)+, (a|b)*), which can take forever on a long row"
    if _tries(tree) > _MAX_TRIES:
        return (
            "has more than one open-ended repetition (*, +, {n,}, a back-reference) or bounded ones that "
            "multiply (a{0,64}a{0,64}a{0,64}), which can take minutes on a long row: split it into terms "
            "(all terms must match)"
        )
    return None


def _tries(items: Any) -> int:
    """How many ways the parsed regex can match from one position, at most (capped): the
    backtracking's cost per position. A repetition whose count may vary by ``k`` gives ``k + 1``
    ways (an open-ended one: the row's length), a back-reference compares up to the row's length,
    a choice sums its branches, and a sequence multiplies its parts. Possessive repeats and
    atomic groups never backtrack into themselves: one way."""
    total = 1
    for op, av in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, body = av
            inner = _tries(body)
            ways = min(high - low, ROW_TEXT_LIMIT) + 1
            total *= ways * (inner if inner == 1 else inner ** min(high, 8))
        elif name == "BRANCH":
            total *= sum(_tries(branch) for branch in av[1])
        elif name == "SUBPATTERN":
            total *= _tries(av[-1])
        elif name in ("ASSERT", "ASSERT_NOT"):
            total *= _tries(av[1])
        elif name == "GROUPREF_EXISTS":
            total *= sum(_tries(branch) for branch in av[1:] if branch is not None)
        elif name == "GROUPREF":
            total *= ROW_TEXT_LIMIT
        total = min(total, _MAX_TRIES * ROW_TEXT_LIMIT)  # capped: only "too many" matters
    return total


def _nested(items: Any, in_loop: bool) -> bool:
    for op, av in items:
        name = str(op)
        inner = in_loop
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, body = av
            if in_loop and high != low:
                return True
            children, inner = [body], in_loop or high > _LOOP
        elif name == "BRANCH":
            if in_loop:
                return True
            children = av[1]
        elif name == "SUBPATTERN":
            children = [av[-1]]
        elif name in ("ASSERT", "ASSERT_NOT"):
            children = [av[1]]
        elif name == "GROUPREF_EXISTS":
            children = [branch for branch in av[1:] if branch is not None]
        else:  # a literal, a class, an anchor; possessive repeats and atomic groups never backtrack into themselves
            continue
        if any(_nested(child, inner) for child in children):
            return True
    return False


def _quote(text: str) -> str:
    return repr(safe(bounded(text, 40)))
