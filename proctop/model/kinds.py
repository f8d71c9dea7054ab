"""The one table of event kinds: every list of event names in proctop derives from ``KINDS``.

A new event kind is one line in ``KINDS`` (plus, in the kernel layer, its
``PROC_EVENT_*`` constant, its ``MASK_BITS`` entry and its decoder: the kernel
layer cannot import the model, so the kernel's own numbers stay in
``proctop.kernel.protocol``; tests/core/test_kinds.py holds the two in step).
The UI's toggles, labels, rate line and colour classes, the themes' ``[events]``
keys and default colours, the ``.event--*`` CSS rules and the JSON ``event``
values are all read from here. tests/core/test_kinds.py fails if a second list
of event names appears anywhere else in proctop/.

The UI imports ``proctop.model`` and never ``proctop.kernel``
(tests/test_layers.py holds that), so this module is also where the UI finds
the mask bits it toggles.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

from proctop.kernel.protocol import (
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
)


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
    event of a kind with ``what`` equal to its mask bit; ``bit`` 0 marks a kind
    proctop makes itself (``lost``).
    """

    name: str
    bit: int  # kernel mask bit (PROC_EVENT_*), 0 when the kernel has none
    key: str | None  # the UI key that toggles the bit; None: not a toggle
    label: str  # the toggle's label in the header
    row: str | None  # the timeline's EVENT column; None: never a row (a mask-only bit)
    rate: str | None  # label in the header's events/s line; None: not counted there
    colours: tuple[Colour, ...] = ()  # its own colour class first, then classes derived from it
    parent: bool = False  # its ``ppid`` names the parent at the time of the event (ancestry may start there)

    @property
    def event(self) -> bool:
        """True if events of this kind exist (in JSON and on screen); false for a mask-only bit."""
        return self.row is not None


#: Every kind, in the header's order (exits beside exec, where a reader looks for failures).
# fmt: off
KINDS: tuple[Kind, ...] = (
    Kind("fork", PROC_EVENT_FORK, "f", "fork", "fork", "fork", (Colour("fork", "#5fafff"),), parent=True),
    Kind("exec", PROC_EVENT_EXEC, "e", "exec", "exec", "exec", (Colour("exec", "#5fd7af"),), parent=True),
    Kind("nonzero-exit", PROC_EVENT_NONZERO_EXIT, "x", "nonzero-exit", None, None),  # arrives as "exit"
    Kind("exit", PROC_EVENT_EXIT, "X", "exit", "exit", "exit", (
        Colour("exit", "#a8a8a8"),  # a clean exit
        Colour("failed", "#ff875f", "bold"),  # a non-zero exit
        Colour("signal", "#ff5f87", "bold"),  # death by a signal
    ), parent=True),
    Kind("uid", PROC_EVENT_UID, "u", "uid", "uid", "uid", (Colour("uid", "#d7af5f"),)),
    Kind("gid", PROC_EVENT_GID, "g", "gid", "gid", "gid", (Colour("gid", "#d7af5f"),)),
    Kind("sid", PROC_EVENT_SID, "s", "sid", "sid", "sid", (Colour("sid", "#af87d7"),)),
    Kind("ptrace", PROC_EVENT_PTRACE, "p", "ptrace", "ptrace", "ptrace", (Colour("ptrace", "#ff5fff"),)),
    Kind("comm", PROC_EVENT_COMM, "c", "comm", "comm", "comm", (Colour("comm", "#87afd7"),)),
    Kind("coredump", PROC_EVENT_COREDUMP, "d", "coredump", "coredump", "core",
         (Colour("coredump", "#ff0000", "bold"),)),
    Kind("lost", 0, None, "lost", "LOST", None, (Colour("lost", "#ff0000", "bold reverse"),)),
)
# fmt: on

#: Colour classes that belong to no kind: a crash loop on the failures board.
EXTRA_COLOURS: tuple[Colour, ...] = (Colour("loop", "#ff5fd7", "bold reverse"),)

# --- derived: nothing below names a kind --------------------------------------

BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}

#: Values of the JSON ``event`` key, in the kernel's numeric order (enum proc_cn_event), proctop's own last.
EVENT_KINDS: tuple[str, ...] = tuple(
    kind.name for kind in sorted(KINDS, key=lambda k: (k.bit == 0, k.bit)) if kind.event
)

#: Event type (the kernel's ``what`` field) to the event name.
EVENT_NAMES: dict[int, str] = {kind.bit: kind.name for kind in KINDS if kind.event and kind.bit}

#: Mask name to kernel bit (the same pairs as ``proctop.kernel.protocol.MASK_BITS``, here in header order).
MASK_BITS: dict[str, int] = {kind.name: kind.bit for kind in KINDS if kind.bit}

#: Every bit of ``MASK_BITS``: the full mask.
PROC_EVENT_ALL: int = functools.reduce(operator.or_, (kind.bit for kind in KINDS), 0)

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
RATE_LABELS: tuple[tuple[str, str], ...] = tuple(
    (kind.name, kind.rate) for kind in KINDS if kind.rate is not None
)

#: Event kinds whose ``ppid`` names the parent at the time of the event.
PARENT_KINDS: frozenset[str] = frozenset(kind.name for kind in KINDS if kind.parent)

#: Every colour class, in the order themes list them.
COLOURS: tuple[Colour, ...] = (*(colour for kind in KINDS for colour in kind.colours), *EXTRA_COLOURS)
