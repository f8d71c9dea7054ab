"""The one table of event kinds (proctop.model.kinds): it agrees with the kernel's wire table,
drives every kind from the wire to the screen, and a new kind needs nothing but its row and data.

The kernel layer cannot import the model, so ``proctop.kernel.protocol`` keeps
the kernel's numbers and wire layouts (``LAYOUTS``); the table refuses to load
when the two disagree, and these tests hold the rest.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from kind_trip import round_trip

from proctop.kernel import protocol
from proctop.model import kinds
from proctop.model.events import Event
from proctop.model.kinds import KINDS, MASK_NAMES, PROC_EVENT_ALL, MaskError, mask_names, parse_mask
from proctop.model.proctable import ProcInfo
from proctop.sinks.text.rows import detail_field


def test_mask_bits_agree_with_the_kernel_protocol():
    assert kinds.PROC_EVENT_ALL == protocol.PROC_EVENT_ALL
    assert set(kinds.MASK_BITS.values()) == {*protocol.LAYOUTS, protocol.PROC_EVENT_NONZERO_EXIT}
    assert kinds.DEFAULT_MASK == protocol.PROC_EVENT_FORK | protocol.PROC_EVENT_EXEC | protocol.PROC_EVENT_NONZERO_EXIT


def test_parse_mask_names():
    assert parse_mask("fork,exec,nonzero-exit") == kinds.DEFAULT_MASK
    assert parse_mask("all") == PROC_EVENT_ALL
    assert parse_mask(" Exit ") == protocol.PROC_EVENT_EXIT
    for name in MASK_NAMES:
        assert parse_mask(name)
    with pytest.raises(MaskError, match="unknown event 'bogus'"):
        parse_mask("fork,bogus")
    with pytest.raises(MaskError, match="empty"):
        parse_mask("")
    assert mask_names(parse_mask("exec,fork")) == ["fork", "exec"]
    assert mask_names(parse_mask("exit,uid")) == ["uid", "exit"]  # --help's order, the kernel's numbers
    assert mask_names(PROC_EVENT_ALL) == ["all"]
    # --help, the man page and the completions list them so: the kernel's numbers, then mask-only bits
    assert MASK_NAMES[-2:] == ("nonzero-exit", "all") and MASK_NAMES[:2] == ("fork", "exec")


@pytest.mark.parametrize("what", sorted(protocol.LAYOUTS), ids=lambda what: kinds.EVENT_NAMES[what])
def test_every_kind_goes_from_the_wire_to_the_screen_and_back(what, tmp_path):
    """encode -> decode -> enrich -> JSON -> replay gives the same event, with its detail text."""
    round_trip(what, tmp_path)


def test_the_rows_name_fields_that_exist():
    """What each row copies, learns and shows exists (the enricher also refuses to load otherwise)."""
    event_fields = {f.name for f in fields(Event)}
    shown = event_fields | {"status", "lifetime"}  # made for display by proctop.sinks.text.rows.detail_field
    for kind in KINDS:
        assert {e for e, _ in kind.copies} <= event_fields, kind.name
        assert {w for _, w in kind.copies} <= set(protocol.RawEvent._fields), kind.name
        assert {i for i, _ in kind.learns} <= {f.name for f in fields(ProcInfo)}, kind.name
        assert kinds.template_fields(kind.detail) <= shown, kind.name


def test_detail_formats():
    ev = Event(ts=0, event="uid", uid=1000, ruid=0, euid=0)
    assert kinds.format_detail("uid {uid}\u2192{ruid}[ euid {euid}]", lambda name: detail_field(ev, False, name)) == (
        "uid 1000\u21920"
    )
    values = {"a": 1, "b": None, "n": 2, "empty": ""}
    fill = values.get
    assert kinds.format_detail("{a} {b} {empty}", fill) == "1 ? ?"  # unset shows as ?
    assert kinds.format_detail("x[ {b}][ a={a}]", fill) == "x a=1"  # an optional part needs its fields
    assert kinds.format_detail("[{b}|{a:03d}|none]", fill) == "001"  # the first alternative with all its fields
    assert kinds.format_detail("[{b}|none]", fill) == "none"
    assert kinds.format_detail("{n} item{n:s}, {a} item{a:s}", fill) == "2 items, 1 item"
    assert kinds.template_fields("{a}[ {b}|{c:s}]") == {"a", "b", "c"}


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


# --- a new kind is its row and its data ------------------------------------------

#: A made-up event type (no kernel has 0x400): what a developer adding a kind writes, and nothing else.
NEW_WHAT = 0x00000400
NEW_CONSTANT = "PROC_EVENT_REPARENT = 0x00000400\n"
NEW_LAYOUT = '    PROC_EVENT_REPARENT: Layout("pid tgid ppid ptgid"),  # a made-up reparent_proc_event\n'
NEW_IMPORT = "    PROC_EVENT_REPARENT,\n"
NEW_KIND = (
    '    Kind("reparent", PROC_EVENT_REPARENT, None, "reparent", "reparent", "re-par",\n'
    '         (Colour("reparent", "#87d7ff"),), parent=True, copies=(("ppid", "ptgid"),),\n'
    '         learns=(("ppid", "ppid"),), detail="reparented to {ppid}"),\n'
)


def _insert_after(path: Path, anchor: str, text: str) -> None:
    source = path.read_text()
    assert source.count(anchor) == 1, f"{anchor!r} in {path}"
    path.write_text(source.replace(anchor, anchor + text))


def _tree_with_a_new_kind(tmp_path: Path, *, layout: bool = True, row: bool = True) -> Path:
    """A copy of proctop/ with the made-up kind added: its wire constant and layout in the kernel's
    table (``layout``) and its row in the kind table (``row``). No other file is edited."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "proctop", tree / "proctop", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tests" / "kind_trip.py", tree)
    wire, table = tree / "proctop" / "kernel" / "protocol.py", tree / "proctop" / "model" / "kinds.py"
    _insert_after(wire, "PROC_EVENT_EXIT = 0x80000000\n", NEW_CONSTANT)
    if layout:
        _insert_after(wire, "LAYOUTS: dict[int, Layout] = {\n", NEW_LAYOUT)
    if row:
        _insert_after(table, "    PROC_EVENT_PTRACE,\n", NEW_IMPORT)
        _insert_after(table, "KINDS: tuple[Kind, ...] = (\n", NEW_KIND)
    return tree


def _run(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # the script's own directory (the copy) comes first on sys.path: its proctop, not the installed one
    return subprocess.run([sys.executable, *args], cwd=tree, capture_output=True, text=True, timeout=60)


def test_a_new_kind_is_its_row_and_its_data(tmp_path):
    """Add a kind the way a developer would (constant + layout, import + row) to a copy of the tree:
    it decodes, enriches, round-trips JSON and a replay, has its detail text, a mask name, --help."""
    tree = _tree_with_a_new_kind(tmp_path)
    trip = _run(tree, "kind_trip.py", hex(NEW_WHAT), str(tmp_path))
    assert trip.returncode == 0, trip.stderr
    line, detail = trip.stdout.splitlines()
    assert '"event":"reparent"' in line and f'"ppid":{4_200_001}' in line
    assert detail == "reparented to 4200001"
    shown = _run(tree, "-c", "from proctop.sinks.ui.themes import event_css; print(event_css())")
    assert ".event--reparent" in shown.stdout, shown.stderr
    usage = _run(tree, "-m", "proctop", "--help")
    assert "reparent" in " ".join(usage.stdout.split()), usage.stderr


@pytest.mark.parametrize(("layout", "row", "named"), [(False, True, "'reparent'"), (True, False, "0x400")])
def test_a_kind_without_a_layout_or_a_layout_without_a_kind_does_not_load(tmp_path, layout, row, named):
    """Not a silently malformed event at run time: proctop refuses to import, naming what is missing."""
    tree = _tree_with_a_new_kind(tmp_path, layout=layout, row=row)
    loaded = _run(tree, "-c", "import proctop.model.kinds")
    assert loaded.returncode != 0
    assert "KindTableError" in loaded.stderr and named in loaded.stderr, loaded.stderr
