"""The one table of event kinds (proctop.model.kinds) and the kernel's numbers agree.

The kernel layer cannot import the model, so ``proctop.kernel.protocol`` keeps
its own ``MASK_BITS`` for parsing ``--only``; these tests hold the two equal,
so a kind added to one and not the other fails here, not on a user's screen.
"""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

from proctop.kernel import protocol
from proctop.model import kinds
from proctop.model.events import Event
from proctop.model.kinds import KINDS


def test_mask_bits_agree_with_the_kernel_protocol():
    assert kinds.MASK_BITS == protocol.MASK_BITS
    assert set(kinds.MASK_BITS) | {"all"} == set(protocol.MASK_NAMES)
    assert kinds.PROC_EVENT_ALL == protocol.PROC_EVENT_ALL


def test_every_kernel_event_type_has_a_kind():
    """Every PROC_EVENT_* the kernel sends as an event (all but NONE and the mask-only
    NONZERO_EXIT) names a kind whose bit is that number."""
    not_sent = ("PROC_EVENT_NONE", "PROC_EVENT_ALL", "PROC_EVENT_NONZERO_EXIT")
    sent = {value for name, value in vars(protocol).items() if name.startswith("PROC_EVENT_") and name not in not_sent}
    assert set(kinds.EVENT_NAMES) == sent
    for what, name in kinds.EVENT_NAMES.items():
        assert kinds.BY_NAME[name].bit == what


def test_table_is_consistent():
    names = [kind.name for kind in KINDS]
    assert len(names) == len(set(names))
    keys = [kind.key for kind in KINDS if kind.key is not None]
    assert len(keys) == len(set(keys))
    colours = [colour.name for colour in kinds.COLOURS]
    assert len(colours) == len(set(colours))
    for kind in KINDS:
        # a toggle needs a bit to toggle; an event kind has its own colour class, named after it
        assert kind.key is None or kind.bit
        if kind.event:
            assert kind.colours and kind.colours[0].name == kind.name
    assert set(kinds.EVENT_KINDS) == {kind.name for kind in KINDS if kind.event}
    assert "nonzero-exit" not in kinds.EVENT_KINDS  # filtered exits arrive as "exit"


def test_event_kinds_keep_the_kernel_order():
    """The JSON/metrics order: the kernel's numbers ascending, proctop's own ``lost`` last."""
    assert kinds.EVENT_KINDS == ("fork", "exec", "uid", "gid", "sid", "ptrace", "comm", "coredump", "exit", "lost")


# --- no second list -------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent.parent
#: Where event names may be listed: the table, and the kernel's own numbers it is tested against.
ALLOWED = {ROOT / "proctop" / "model" / "kinds.py", ROOT / "proctop" / "kernel" / "protocol.py"}
#: Names a second list would repeat: every kind and every colour class, but those that are also
#: Event fields ("uid", "comm", "signal"): a list of fields is not a second vocabulary.
NAMES = ({kind.name for kind in KINDS} | {colour.name for colour in kinds.COLOURS}) - {f.name for f in fields(Event)}


def literal_lists(tree: ast.AST) -> list[tuple[int, set[str]]]:
    """(line, event names) of every tuple, list, set or dict literal naming three or more event kinds."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items: list[ast.expr | None] = list(node.elts)
        elif isinstance(node, ast.Dict):
            items = [*node.keys, *node.values]
        else:
            continue
        # anywhere inside: rows of a table (("f", "fork", "fork"), Kind("fork", ...)) count as a whole
        strings = {  # "event-fork" (a theme variable) and "event--fork" (a style class) name "fork" too
            inner.value.removeprefix("event-").removeprefix("-")
            for item in items
            if item is not None
            for inner in ast.walk(item)
            if isinstance(inner, ast.Constant) and isinstance(inner.value, str)
        }
        named = strings & NAMES
        if len(named) >= 3:
            found.append((node.lineno, named))
    return found


def python_files() -> list[Path]:
    return sorted([*(ROOT / "proctop").rglob("*.py"), *(ROOT / "bench").rglob("*.py")])


def test_no_second_list_of_event_names():
    """A tuple, list, set or dict literal naming three or more event kinds anywhere in
    proctop/ or bench/ but the table is a second vocabulary: derive it from
    ``proctop.model.kinds`` instead."""
    offenders = []
    for path in python_files():
        if path in ALLOWED:
            continue
        for line, named in literal_lists(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {sorted(named)}")
    assert not offenders, "event names listed outside proctop/model/kinds.py:\n" + "\n".join(offenders)


def test_no_event_rules_in_the_stylesheet():
    """The ``.event--*`` rules are generated from the table (``proctop.sinks.ui.themes.event_css``)."""
    for path in (ROOT / "proctop").rglob("*.tcss"):
        assert not re.findall(r"\.event--[\w-]+\s*[{,]", path.read_text()), path


def test_the_scan_finds_a_second_list():
    """The scan above is not vacuous: the lists this table replaced would fail it."""
    old_toggles = 'TOGGLES = (("f", "fork", "fork"), ("e", "exec", "exec"), ("x", "nonzero-exit", "nonzero-exit"))'
    old_defaults = 'EVENT_DEFAULTS = {"event-fork": "#5fafff", "event-exec": "#5fd7af", "event-gid": "#d7af5f"}'
    old_kinds = 'EVENT_KINDS = ["fork", "exec", "uid", "gid", "sid"]'
    two_names = 'if kind in ("exit", "lost"): pass'
    fields = 'FIELDS = ("pid", "tgid", "ppid", "comm", "cmdline", "user", "uid", "signal", "exe", "cpu")'
    for source in (old_toggles, old_defaults, old_kinds):
        assert literal_lists(ast.parse(source)), source
    assert not literal_lists(ast.parse(two_names))
    assert not literal_lists(ast.parse(fields))
    assert (ROOT / "proctop" / "model" / "kinds.py") in python_files()  # the scan sees the tree
    assert literal_lists(ast.parse((ROOT / "proctop" / "model" / "kinds.py").read_text()))
