"""The one table of event kinds: every list of event names in proctop derives from ``KINDS``,
and every behaviour that differs by kind is read from its row.

A new event kind is one row in ``KINDS`` plus its own data: its number and
``event_data`` layout in the kernel's one wire table
(``proctop.kernel.protocol.LAYOUTS``; the kernel layer cannot import the model,
and the wire format is the kernel's), what the enricher copies from the wire and
teaches the process table (``copies``, ``learns`` and one of four ``Effect``
values), and its detail text (``detail``, a format of the event's fields). This
module refuses to load if a kind has no layout or a layout no kind;
tests/core/test_kinds.py adds a made-up kind to a copy of the tree and follows
it from the wire through enrichment, JSON and a replay to its detail text.

The mask vocabulary lives here too (``MASK_BITS``, ``MASK_NAMES``,
``parse_mask``, ``mask_names``, ``DEFAULT_MASK``, ``event_passes``), and so do
the UI's toggles, labels, rate line and colour classes, the themes' ``[events]``
keys and default colours, the ``.event--*`` CSS rules and the JSON ``event``
values. tests/core/test_kinds.py fails if a second list of event names appears
anywhere else in proctop/.

The UI imports ``proctop.model`` and never ``proctop.kernel``
(tests/test_layers.py holds that), so this module is also where the UI finds
the mask bits it toggles.
"""

from __future__ import annotations

import enum
import functools
import operator
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from proctop.errors import ProctopError
from proctop.kernel.protocol import (
    LAYOUTS,
    PROC_EVENT_COMM,
    PROC_EVENT_COREDUMP,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_GID,
    PROC_EVENT_NONZERO_EXIT,
    PROC_EVENT_PTRACE,
    PROC_EVENT_SID,
    PROC_EVENT_UID,
    mask_accepts,
)


class Effect(enum.Enum):
    """What an event of a kind does to the process table (``proctop.model.enrich`` dispatches on it)."""

    FORK = "fork"  # a new process: a copy of its parent until it execs (a new thread changes nothing)
    EXEC = "exec"  # a new program: read from /proc the moment it is decoded
    EXIT = "exit"  # the end: lifetime, parent, reason; the entry retires
    NOTE = "note"  # about a live process: ``copies`` describe it, ``learns`` change its entry


@dataclass(frozen=True, slots=True)
class Colour:
    """A colour class: the theme key ``<name>`` (CSS variable ``$event-<name>``, rule ``.event--<name>``)."""

    name: str
    default: str  # the colour when a theme leaves the key out (and under Textual's own themes)
    style: str = ""  # extra text-style of the rule, e.g. "bold"; colour alone must not carry meaning


@dataclass(frozen=True, slots=True)
class Kind:
    """One event kind, or one mask bit that is not a kind of its own (``nonzero-exit``).

    ``name`` is the mask name (``--only``, the ``f``/``e``... toggles) and, when
    ``event`` is true, the value of the JSON ``event`` key. The kernel sends an
    event of a kind with ``what`` equal to its mask bit, laid out as
    ``LAYOUTS[bit]`` says; ``bit`` 0 marks a kind proctop makes itself (``lost``).
    """

    name: str
    bit: int  # kernel mask bit (PROC_EVENT_*), 0 when the kernel has none
    key: str | None  # the UI key that toggles the bit; None: not a toggle
    label: str  # the toggle's label in the header
    row: str | None  # the timeline's EVENT column; None: never a row (a mask-only bit)
    rate: str | None  # label in the header's events/s line; None: not counted there
    colours: tuple[Colour, ...] = ()  # its own colour class first, then classes derived from it
    parent: bool = False  # its ``ppid`` names the parent at the time of the event (ancestry may start there)
    default: bool = False  # in the mask proctop asks for when ``--only`` is not given
    effect: Effect = Effect.NOTE
    #: ``(Event field, RawEvent field)``: what the enricher copies from the wire (bytes decoded as argv is).
    copies: tuple[tuple[str, str], ...] = ()
    #: ``(ProcInfo field, Event field)``: what a process's event changes in its table entry. The
    #: event keeps the value from before the change in its own field of that name, if it has one.
    learns: tuple[tuple[str, str], ...] = ()
    #: The timeline's detail column: a format of the event's fields (``format_detail``).
    detail: str = ""

    @property
    def event(self) -> bool:
        """True if events of this kind exist (in JSON and on screen); false for a mask-only bit."""
        return self.row is not None


#: Every kind, in the header's order (exits beside exec, where a reader looks for failures).
# fmt: off
KINDS: tuple[Kind, ...] = (
    Kind("fork", PROC_EVENT_FORK, "f", "fork", "fork", "fork", (Colour("fork", "#5fafff"),),
         parent=True, default=True, effect=Effect.FORK, copies=(("ppid", "ptgid"),)),
    Kind("exec", PROC_EVENT_EXEC, "e", "exec", "exec", "exec", (Colour("exec", "#5fd7af"),),
         parent=True, default=True, effect=Effect.EXEC),
    Kind("nonzero-exit", PROC_EVENT_NONZERO_EXIT, "x", "nonzero-exit", None, None, default=True),  # arrives as "exit"
    Kind("exit", PROC_EVENT_EXIT, "X", "exit", "exit", "exit", (
        Colour("exit", "#a8a8a8"),  # a clean exit
        Colour("failed", "#ff875f", "bold"),  # a non-zero exit
        Colour("signal", "#ff5f87", "bold"),  # death by a signal
    ), parent=True, effect=Effect.EXIT, copies=(("ppid", "ptgid"),), detail="{status}[ after {lifetime}]"),
    Kind("uid", PROC_EVENT_UID, "u", "uid", "uid", "uid", (Colour("uid", "#d7af5f"),),
         copies=(("ruid", "a"), ("euid", "b")), learns=(("uid", "ruid"),),
         detail="uid {uid}\u2192{ruid}[ euid {euid}]"),
    Kind("gid", PROC_EVENT_GID, "g", "gid", "gid", "gid", (Colour("gid", "#d7af5f"),),
         copies=(("rgid", "a"), ("egid", "b")), detail="gid \u2192{rgid}[ egid {egid}]"),
    Kind("sid", PROC_EVENT_SID, "s", "sid", "sid", "sid", (Colour("sid", "#af87d7"),), detail="new session"),
    Kind("ptrace", PROC_EVENT_PTRACE, "p", "ptrace", "ptrace", "ptrace", (Colour("ptrace", "#ff5fff"),),
         copies=(("tracer_pid", "ptgid"),), detail="[traced by {tracer_pid}|detached]"),
    Kind("comm", PROC_EVENT_COMM, "c", "comm", "comm", "comm", (Colour("comm", "#87afd7"),),
         copies=(("comm", "comm"),), learns=(("comm", "comm"),), detail="comm \u2192 {comm}"),
    Kind("coredump", PROC_EVENT_COREDUMP, "d", "coredump", "coredump", "core",
         (Colour("coredump", "#ff0000", "bold"),), parent=True, copies=(("ppid", "ptgid"),),
         detail="dumping core"),
    Kind("lost", 0, None, "lost", "LOST", None, (Colour("lost", "#ff0000", "bold reverse"),),
         detail="{count}+ event{count:s} lost"),
)
# fmt: on

#: Colour classes that belong to no kind: a crash loop on the failures board.
EXTRA_COLOURS: tuple[Colour, ...] = (Colour("loop", "#ff5fd7", "bold reverse"),)

# --- derived: nothing below names a kind --------------------------------------


class KindTableError(RuntimeError):
    """The table and the kernel's wire table disagree: a bug, found when proctop is imported."""


BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}

#: Values of the JSON ``event`` key, in the kernel's numeric order (enum proc_cn_event), proctop's own last.
EVENT_KINDS: tuple[str, ...] = tuple(
    kind.name for kind in sorted(KINDS, key=lambda k: (k.bit == 0, k.bit)) if kind.event
)

#: Event type (the kernel's ``what`` field) to its kind.
BY_WHAT: dict[int, Kind] = {kind.bit: kind for kind in KINDS if kind.event and kind.bit}

#: Event type (the kernel's ``what`` field) to the event name.
EVENT_NAMES: dict[int, str] = {what: kind.name for what, kind in BY_WHAT.items()}


def _check_layouts() -> None:
    """Every kind the kernel sends has a wire layout, and every layout a kind: else no import."""
    missing = [kind.name for what, kind in BY_WHAT.items() if what not in LAYOUTS]
    orphans = [hex(what) for what in LAYOUTS if what not in BY_WHAT]
    if missing or orphans:
        raise KindTableError(
            f"kinds without a wire layout in proctop.kernel.protocol.LAYOUTS: {missing}; "
            f"layouts without a kind in proctop.model.kinds.KINDS: {orphans}"
        )


_check_layouts()

#: Mask name to kernel bit, in the header's order.
MASK_BITS: dict[str, int] = {kind.name: kind.bit for kind in KINDS if kind.bit}

#: The names ``--only`` takes, in the order of ``--help``: the kernel's numbers, mask-only bits, ``all``.
MASK_NAMES: tuple[str, ...] = (
    *(name for name in EVENT_KINDS if BY_NAME[name].bit),
    *(kind.name for kind in KINDS if kind.bit and not kind.event),
    "all",
)

#: Every bit of ``MASK_BITS``: the full mask.
PROC_EVENT_ALL: int = functools.reduce(operator.or_, (kind.bit for kind in KINDS), 0)

#: The mask proctop asks for when ``--only`` is not given.
DEFAULT_MASK: int = functools.reduce(operator.or_, (kind.bit for kind in KINDS if kind.default), 0)

#: The UI's mask toggles: (key, mask name, label), in the header's order.
TOGGLES: tuple[tuple[str, str, str], ...] = tuple(
    (kind.key, kind.name, kind.label) for kind in KINDS if kind.key is not None
)


def toggles_on(mask: int) -> list[str]:
    """The mask names of the toggles ``mask`` has on, in the header's order."""
    return [name for _, name, _ in TOGGLES if mask & MASK_BITS[name]]


#: Labels of the timeline's EVENT column, by event name.
ROW_LABELS: dict[str, str] = {kind.name: kind.row for kind in KINDS if kind.row is not None}

#: (event name, label) of the header's events/s line, in display order.
RATE_LABELS: tuple[tuple[str, str], ...] = tuple((kind.name, kind.rate) for kind in KINDS if kind.rate is not None)

#: Event kinds whose ``ppid`` names the parent at the time of the event.
PARENT_KINDS: frozenset[str] = frozenset(kind.name for kind in KINDS if kind.parent)

#: Every colour class, in the order themes list them.
COLOURS: tuple[Colour, ...] = (*(colour for kind in KINDS for colour in kind.colours), *EXTRA_COLOURS)


# --- the mask ------------------------------------------------------------------


class MaskError(ProctopError, ValueError):
    """An unknown event name in a mask specification (bad input: status 2)."""

    status = 2


def parse_mask(spec: str) -> int:
    """Turn ``"fork,exec,nonzero-exit"`` into the kernel mask; ``all`` is every bit."""
    mask = 0
    names = [part.strip().lower() for part in spec.split(",")]
    if not any(names):
        raise MaskError("empty event list (choose from: " + ", ".join(MASK_NAMES) + ")")
    for name in names:
        if name == "all":
            mask |= PROC_EVENT_ALL
        elif name in MASK_BITS:
            mask |= MASK_BITS[name]
        else:
            raise MaskError(f"unknown event {name!r} (choose from: {', '.join(MASK_NAMES)})")
    return mask


def mask_names(mask: int) -> list[str]:
    """The names of the bits set in ``mask``, in ``MASK_NAMES`` order (``["all"]`` for the full mask)."""
    if mask & PROC_EVENT_ALL == PROC_EVENT_ALL:
        return ["all"]
    return [name for name in MASK_NAMES[:-1] if mask & MASK_BITS[name]]


class Filtered(Protocol):
    """What ``event_passes`` reads of an event (``proctop.model.events.Event``)."""

    @property
    def event(self) -> str: ...

    @property
    def failed(self) -> bool: ...


def event_passes(mask: int, ev: Filtered) -> bool:
    """The kernel's filter applied to a recorded event; proctop's own (``lost``) always pass."""
    kind = BY_NAME.get(ev.event)
    if kind is not None and kind.event and not kind.bit:
        return True
    if not mask:
        return False
    return mask_accepts(mask, kind.bit if kind is not None else 0, 1 if ev.failed else 0)


# --- the detail text -----------------------------------------------------------

#: An optional part of a detail format: ``[a|b]`` is the first alternative whose fields are all set.
_OPTIONAL = re.compile(r"\[([^\]]*)\]")
_Part = tuple[str, str | None, str]  # literal text, then a field name and its format spec (or None)


@functools.cache
def _parse(text: str) -> tuple[_Part, ...]:
    return tuple((literal, name, spec or "") for literal, name, spec, _ in string.Formatter().parse(text))


@functools.cache
def detail_parts(template: str) -> tuple[tuple[tuple[_Part, ...], ...], ...]:
    """``template`` split into segments of alternatives: a fixed segment has one, an optional
    ``[a|b]`` its own and then an empty one (nothing, when no alternative has all its fields)."""
    segments: list[tuple[tuple[_Part, ...], ...]] = []
    pos = 0
    for match in _OPTIONAL.finditer(template):
        segments.append((_parse(template[pos : match.start()]),))
        segments.append((*(_parse(alternative) for alternative in match[1].split("|")), ()))
        pos = match.end()
    segments.append((_parse(template[pos:]),))
    return tuple(segments)


def template_fields(template: str) -> set[str]:
    """Every field name ``template`` uses (tests hold them to the fields the UI provides)."""
    return {name for segment in detail_parts(template) for parts in segment for _, name, _ in parts if name}


def format_detail(template: str, value: Callable[[str], object]) -> str:
    """``template`` filled with ``value(field)``: the detail column of a kind, from its row.

    ``{field}`` is the field's value, ``?`` when unset (None or empty);
    ``[text {field}]`` is left out when a field in it is unset, and
    ``[a|b]`` is the first alternative whose fields are all set (else nothing);
    ``{count:s}`` is the plural ending for a number (``s`` unless it is 1).
    Any other spec is Python's format spec.
    """
    out: list[str] = []
    for segment in detail_parts(template):
        if len(segment) == 1:
            out.append(_fill(segment[0], value))
            continue
        for parts in segment:
            if all(_is_set(value(name)) for _, name, _ in parts if name):
                out.append(_fill(parts, value))
                break
    return "".join(out)


def _is_set(value: object) -> bool:
    return value is not None and value != ""


def _fill(parts: tuple[_Part, ...], value: Callable[[str], object]) -> str:
    out: list[str] = []
    for literal, name, spec in parts:
        out.append(literal)
        if name is None:
            continue
        field = value(name)
        if spec == "s":
            out.append("" if field == 1 else "s")
        else:
            out.append(format(field, spec) if _is_set(field) else "?")
    return "".join(out)
