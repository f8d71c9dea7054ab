"""The one table of proctop's keys: every binding of the app, the timeline and the failures board.

Each ``KeySpec`` gives a binding its id (``pause``, ``toggle-fork``: plain TOML keys), default key, action,
footer label, one line of help and group. The widgets' ``BINDINGS`` are built
from this table (``bindings(scope)``), and so are the help screen and the
command palette's entries, so the three never disagree. Every binding has an
id, so a config file can remap a key by id (``ProctopApp.apply_keymap``, which
hands the map to Textual's ``App.set_keymap``); tests/ui/test_ui_keys.py fails
if a binding without one appears.

The kernel filter's toggles are derived from the table of event kinds
(``proctop.model.kinds.TOGGLES``): a new kind with a key gets its binding, its
help line and its palette entry here without a second list.

An id names what the key does, not where: the navigation keys of the timeline
and the board share ids, so remapping ``cursor-down`` to ``j`` moves
the cursor in both.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from textual.binding import Binding, BindingType
from textual.keys import _character_to_key

from proctop.model.kinds import TOGGLES

Scope = Literal["app", "timeline", "board", "help"]
Group = Literal["kernel filter", "view", "navigation", "general"]

#: Groups in the order the help screen shows them.
GROUPS: tuple[Group, ...] = ("kernel filter", "view", "navigation", "general")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One key binding of proctop, with what the help screen and the palette say of it."""

    id: str  # binding id, the name a config file remaps it by
    key: str  # default key(s), Textual key names, comma-separated
    action: str  # the action, run in the namespace of ``scope``
    scope: Scope  # whose BINDINGS hold it
    description: str  # the footer's label and the palette's title
    help: str  # one line on the help screen (keep it within 30 cells: two columns fit 80 columns)
    group: Group
    footer: int = 0  # place in the footer (1 first); 0: not shown there
    priority: bool = False  # handled before the focused widget sees the key
    palette: bool = False  # offered in the command palette


def _mask_keys() -> tuple[KeySpec, ...]:
    """One toggle per mask bit with a key, from the table of kinds."""
    return tuple(
        KeySpec(
            id=f"toggle-{name}",
            key=key,
            action=f"toggle_mask('{name}')",
            scope="app",
            description=f"Kernel: {label} on/off",
            help=f"{label} events on/off",
            group="kernel filter",
            palette=True,
        )
        for key, name, label in TOGGLES
    )


#: (id, key, label, help) of the cursor keys the timeline and the board share.
CURSOR_KEYS = (
    ("cursor-up", "up,k", "Up", "cursor up a row"),
    ("cursor-down", "down,j", "Down", "cursor down a row"),
    ("page-up", "pageup", "Page up", "cursor up a page"),
    ("page-down", "pagedown", "Page down", "cursor down a page"),
)


def _cursor_keys(scope: Scope, actions: tuple[str, str, str, str]) -> tuple[KeySpec, ...]:
    """The cursor keys of ``scope``, each running its action of ``actions`` (in ``CURSOR_KEYS`` order)."""
    return tuple(
        KeySpec(binding_id, key, action, scope, label, help_line, "navigation")
        for (binding_id, key, label, help_line), action in zip(CURSOR_KEYS, actions, strict=True)
    )


# fmt: off
KEYS: tuple[KeySpec, ...] = (
    # kernel filter: what the kernel sends from now on (a replay hides recorded rows instead)
    *_mask_keys(),
    # not in the footer: at 80 columns it would cut the footer's last entries (it is in the help and palette)
    KeySpec("toggle-all", "a", "toggle_all", "app", "All / none / start",
            "all kinds, none, the start's", "kernel filter", palette=True),
    # view: what is on screen of what was received
    # slash: priority, handled as the key arrives, so the keys typed after it already see the open input
    KeySpec("filter", "slash", "filter", "app", "Filter",
            "filter the rows received", "view", footer=3, priority=True, palette=True),
    KeySpec("details", "enter", "details", "app", "Details",
            "details and ancestry of a row", "view", footer=4, palette=True),
    KeySpec("close", "escape", "close", "app", "Close",
            "close the filter or details", "view"),
    KeySpec("pause", "space", "pause", "app", "Pause",
            "hold new rows (still counted)", "view", footer=2, palette=True),
    # the same key (and id) while paused: the footer names what space does now
    KeySpec("pause", "space", "resume", "app", "Resume",
            "hold new rows (still counted)", "view", footer=2),
    KeySpec("board", "tab", "toggle_board", "app", "Board",
            "failures board / timeline", "view", footer=5, priority=True, palette=True),
    KeySpec("board-sort", "o", "sort", "board", "Sort",
            "board: count, rate or recent", "view", footer=1),
    # the same key (and id) both ways: the footer names the grouping b switches to (FailuresView.check_action)
    KeySpec("board-group", "b", "group('unit')", "board", "By unit",
            "board: by command or by unit", "view", footer=2),
    KeySpec("board-group", "b", "group('command')", "board", "By command",
            "board: by command or by unit", "view", footer=2),
    KeySpec("board-open", "enter", "open", "board", "Its events",
            "board: the timeline of a row", "view", footer=3, priority=True),
    # navigation: the timeline and the board share ids (see the module docstring)
    *_cursor_keys("timeline", ("cursor_up", "cursor_down", "page_up", "page_down")),
    KeySpec("first", "home", "first", "timeline", "First", "oldest row (holds the view)", "navigation"),
    # in the footer only while the view is held (Timeline.check_action)
    KeySpec("follow", "end", "follow", "timeline", "Follow",
            "follow the newest row", "navigation", footer=1, palette=True),
    *_cursor_keys("board", ("cursor(-1)", "cursor(1)", "page(-1)", "page(1)")),
    # general
    KeySpec("help", "question_mark,f1", "help", "app", "Help",
            "this list of keys", "general", footer=6, palette=True),
    KeySpec("palette", "ctrl+p", "command_palette", "app", "palette",
            "every action, searchable", "general", priority=True),
    KeySpec("quit", "q", "quit", "app", "Quit", "quit", "general", footer=1, palette=True),
    KeySpec("interrupt", "ctrl+c", "interrupt", "app", "Quit",
            "quit, whatever has the focus", "general", priority=True),
    # the help screen's own keys: the same ids as the keys that open it and that close things
    KeySpec("help", "question_mark,f1", "dismiss", "help", "Close", "this list of keys", "general"),
    KeySpec("close", "escape", "dismiss", "help", "Close", "close the filter or details", "view"),
)
# fmt: on

#: Scopes whose bindings are live at once: a key two of them share is a clash. The timeline's and the
#: board's bindings shadow the app's while they have the focus (nearly always); the help screen is alone.
CLASH_SCOPES: tuple[frozenset[Scope], ...] = (
    frozenset({"app", "timeline"}),
    frozenset({"app", "board"}),
    frozenset({"help"}),
)

#: Every binding id.
IDS: frozenset[str] = frozenset(spec.id for spec in KEYS)

#: The help screen's lines: each id once (the first spec that names it), grouped, in table order.
HELP: dict[Group, tuple[KeySpec, ...]] = {
    group: tuple(
        spec
        for i, spec in enumerate(KEYS)
        if spec.group == group and spec.scope != "help" and all(other.id != spec.id for other in KEYS[:i])
    )
    for group in GROUPS
}


def bindings(scope: Scope) -> list[BindingType]:
    """The ``BINDINGS`` of ``scope``, from the table (every one with its id), in the footer's order."""
    specs = sorted((spec for spec in KEYS if spec.scope == scope), key=lambda spec: spec.footer or len(KEYS))
    return [
        Binding(spec.key, spec.action, spec.description, show=bool(spec.footer), priority=spec.priority, id=spec.id)
        for spec in specs
    ]


def lookup(binding_id: str, scope: Scope = "app") -> KeySpec:
    """The spec of ``binding_id`` in ``scope`` (KeyError if there is none)."""
    for item in KEYS:
        if item.id == binding_id and item.scope == scope:
            return item
    raise KeyError(binding_id)


def normalize_key(key: str) -> str:
    """A key as Textual names it in bindings: ``?`` is ``question_mark``, ``ctrl+p`` stays ``ctrl+p``."""
    key = key.strip()
    return _character_to_key(key) if len(key) == 1 else key


def check_keymap(keymap: Mapping[str, str]) -> str | None:
    """What is wrong with a keymap (binding id -> keys), in one line; None if nothing.

    For the config file's reader, which reports it naming the file and the
    key: an unknown id, an empty key, or a remapped key that another binding
    live at the same time already has (Textual would silently drop or shadow
    one: ``pause = "p"`` would switch off the ptrace toggle's key,
    ``follow = "f"`` the fork toggle's while the timeline has the focus).
    """
    for binding_id, value in keymap.items():
        if binding_id not in IDS:
            hint = did_you_mean(binding_id, IDS)
            return f"unknown key binding id {binding_id!r}{hint}; choose from {', '.join(sorted(IDS))}"
        if not isinstance(value, str) or not all(k.strip() for k in value.split(",")):
            return f"{binding_id}: keys must be a non-empty string of comma-separated key names"
    moved = {  # ids bound to other keys than their defaults
        item.id
        for item in KEYS
        if item.id in keymap
        and {normalize_key(k) for k in current_keys(item, keymap)} != {normalize_key(k) for k in current_keys(item, {})}
    }
    for places in CLASH_SCOPES:
        owner: dict[str, str] = {}
        for item in KEYS:
            if item.scope not in places:
                continue
            for key in current_keys(item, keymap):
                other = owner.setdefault(normalize_key(key), item.id)
                if other != item.id and (other in moved or item.id in moved):  # the defaults' overlaps are meant
                    first, second = sorted((other, item.id), key=lambda i: i not in moved)
                    return f"{first}: key {key!r} is also {second}'s (remap that one too)"
    return None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'pause'?)`` for the closest of ``choices`` to a mistyped ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def current_keys(spec: KeySpec, keymap: Mapping[str, str]) -> list[str]:
    """The keys bound to ``spec`` now: the keymap's, else the default."""
    keys = keymap.get(spec.id, spec.key)
    return [k.strip() for k in keys.split(",") if k.strip()]
