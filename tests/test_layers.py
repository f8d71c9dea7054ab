"""The layering the README promises, held by parsing every module under proctop/.

The folders are the data's way, and the layers, lowest first; a module may
import its own layer and any layer below it, never one above:

    base     proctop/__init__.py, errors.py, safefile.py   (importable from anywhere)
    kernel   proctop/kernel/    in: the proc connector's wire format, socket, probe
    model    proctop/model/     events, kinds, enrichment, /proc, failures, identity
    sources  proctop/sources/   in: where events come from (connector, replay, stored records, tree)
    sinks    proctop/sinks/     out: JSON lines, recorder, metrics, summary, and the Textual UI (sinks/ui/)
    cli      proctop/cli/       the command line (main, config, manual) and proctop/__main__.py:
                                wires a source to its sinks

One exception to "any layer below": the UI never imports kernel/. It speaks the
model's vocabulary (``proctop.model.kinds``, the table of event kinds, gives the mask
names and bits it toggles), so the UI never touches sockets or wire formats.
Nothing else sits loose in proctop/, and no module imports itself back through
another (``test_no_import_cycle``).

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``.

Textual is the UI's alone: ``proctop/sinks/text/`` (sanitize, cells, rows, the
column specs) imports neither Textual nor the UI, and ``--summary`` and
``--json``, run for real, load no ``textual`` module (``test_headless_modes_load_no_textual``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "proctop"

RANKS = {"base": 0, "kernel": 1, "model": 2, "sources": 3, "sinks": 4, "cli": 5}
SUBPACKAGES = ("kernel", "model", "sources", "sinks", "cli")
BASE_MODULES = ("proctop", "proctop.errors", "proctop.safefile")
UI = "proctop.sinks.ui"


def layer_of(module: str) -> str | None:
    """The layer of a dotted ``proctop`` module name; ``None`` for anything outside proctop."""
    parts = module.split(".")
    if parts[0] != "proctop":
        return None
    if module in BASE_MODULES:
        return "base"
    if parts[1] in SUBPACKAGES:
        return parts[1]
    if module == "proctop.__main__":
        return "cli"
    raise AssertionError(f"{module} sits loose in proctop/: put it in the folder of its layer")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, importer: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted module)`` for every import anywhere in ``tree`` (functions included).

    ``from proctop.cli import always_on`` imports the module ``proctop.cli.always_on``;
    ``from proctop import __version__`` imports ``proctop`` itself.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importer's package
                package = importer.split(".") if is_package else importer.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                rel = Path(*candidate.split("."))
                if (PACKAGE.parent / rel).with_suffix(".py").exists() or (PACKAGE.parent / rel).is_dir():
                    found.append((node.lineno, candidate))  # a submodule imported by name
                else:
                    found.append((node.lineno, module))
    return found


def violations(source: str, importer: str, is_package: bool = False) -> list[str]:
    """The imports in ``source`` (the text of module ``importer``) that break the layering."""
    mine = layer_of(importer)
    assert mine is not None
    out = []
    for lineno, module in dict.fromkeys(imported_modules(ast.parse(source), importer, is_package)):
        theirs = layer_of(module)
        if theirs is None or theirs == mine:
            continue
        if RANKS[theirs] > RANKS[mine]:
            out.append(f"{importer}:{lineno}: {mine} imports {module} ({theirs})")
        elif theirs == "kernel" and (importer == UI or importer.startswith(UI + ".")):
            out.append(f"{importer}:{lineno}: ui imports {module} ({theirs})")
    return out


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_layer_is_present():
    """The walk finds the tree: a renamed package would otherwise make the layering test vacuous."""
    layers = {layer_of(module_name(p)) for p in all_modules()}
    assert layers == set(RANKS)


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_respects_the_layers(path: Path):
    assert violations(path.read_text(), module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        ("proctop.sinks.ui.widgets", "from proctop.kernel.protocol import PROC_EVENT_ALL", "ui imports proctop.kernel"),
        ("proctop.sinks.ui.app", "def f():\n    import proctop.kernel.socket", "ui imports proctop.kernel.socket"),
        ("proctop.sinks.ui.app", "from proctop import cli", "sinks imports proctop.cli (cli)"),
        ("proctop.model.enrich", "from proctop.sources.base import Source", "model imports proctop.sources.base"),
        ("proctop.model.events", "from proctop.sinks.text import cells", "model imports proctop.sinks.text.cells"),
        ("proctop.kernel.probe", "from proctop.model.events import Event", "kernel imports proctop.model.events"),
        ("proctop.kernel.socket", "from proctop.sinks.record import x", "kernel imports proctop.sinks.record"),
        ("proctop.sources.replay", "from proctop.sinks.record import is_stored", "sources imports proctop.sinks"),
        ("proctop.sinks.summary", "from proctop.cli.config import MAX_HISTORY", "sinks imports proctop.cli.config"),
        ("proctop.kernel.socket", "from ..model import events", "kernel imports proctop.model.events"),
    ],
)
def test_a_violation_is_caught(importer: str, source: str, expected: str):
    """The checker itself: each of these imports breaks a rule, inside a function or not."""
    found = violations(source, importer)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("proctop.kernel.probe", "from proctop.errors import ProctopError\nfrom proctop import __version__"),
        ("proctop.sinks.ui.app", "from proctop.model.kinds import MASK_BITS\nfrom proctop.sources.base import Source"),
        ("proctop.cli.main", "from proctop.model.kinds import parse_mask\nfrom proctop.sinks.ui import app"),
        ("proctop.model.enrich", "from proctop.kernel.protocol import PROC_EVENT_EXIT\nimport psutil"),
    ],
)
def test_an_allowed_import_passes(importer: str, source: str):
    assert violations(source, importer) == []


def test_identity_is_pure():
    """The one identity of a command (board, summary, metrics, filter) is a pure function of an event:
    no Textual, no /proc, no I/O, only the standard library and the event type."""
    path = PACKAGE / "model" / "identity.py"
    modules = {module for _, module in imported_modules(ast.parse(path.read_text()), "proctop.model.identity", False)}
    allowed = {"__future__", "posixpath", "re", "dataclasses", "enum", "typing", "proctop.model.events"}
    assert modules <= allowed, modules


def import_graph() -> dict[str, set[str]]:
    """Every proctop module to the proctop modules it imports (anywhere in its text)."""
    graph: dict[str, set[str]] = {}
    for path in all_modules():
        name = module_name(path)
        found = imported_modules(ast.parse(path.read_text()), name, path.name == "__init__.py")
        graph[name] = {module for _, module in found if module.startswith("proctop") and module != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``, each as the path that closes it (depth-first; a package's
    ``__init__`` importing its own submodules counts like any other import)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle():
    """A newcomer reads the tree one way: no module reaches itself again through its imports
    (functions' imports included: a lazy import hides a cycle, it does not remove it)."""
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    graph = {"proctop.a": {"proctop.b"}, "proctop.b": {"proctop.c"}, "proctop.c": {"proctop.a"}, "proctop.d": set()}
    assert cycles(graph) == [["proctop.a", "proctop.b", "proctop.c", "proctop.a"]]


def test_nothing_sits_loose_at_the_top():
    """Only the base modules and ``__main__`` live directly in proctop/; the rest is in a layer's folder."""
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == {"__init__.py", "__main__.py", "errors.py", "safefile.py"}


def test_every_package_is_installed():
    """A new folder is a package ``pip install .`` must list (pyproject.toml's ``packages``): an
    editable install finds it anyway, an installed proctop would fail to import it."""
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(init) for init in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, sorted(folders - listed)


# --- Textual is the UI's alone ------------------------------------------------------

TEXT = "proctop.sinks.text"


def test_the_text_modules_import_neither_textual_nor_the_ui():
    """What every sink shows (sanitize, fit, rows, the column specs) is below the UI: ``--summary`` reads it."""
    paths = sorted((PACKAGE / "sinks" / "text").glob("*.py"))
    assert len(paths) >= 5, paths  # the walk finds the package
    found = []
    for path in paths:
        name = module_name(path)
        for line, module in imported_modules(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            if module.split(".")[0] == "textual" or module == UI or module.startswith(UI + "."):
                found.append(f"{name}:{line}: imports {module}")
    assert found == []


def imported_by(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``python -X importtime *args``: the process, and every module it imported, in order."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return proc, modules


def textual_in(modules: list[str]) -> list[str]:
    return [module for module in modules if module.split(".")[0] == "textual"]


@pytest.mark.parametrize(
    ("mode", "sink", "shows"),
    [("--summary", "proctop.sinks.summary", "COMMAND / REASON"), ("--json", "proctop.sinks.headless", '"event"')],
)
def test_headless_modes_load_no_textual(mode: str, sink: str, shows: str):
    """``proctop --summary`` and ``--json`` on a replay, for real: they print their output and
    never load Textual (0.2 s of imports against the UI's 0.9 s on a cold start)."""
    proc, modules = imported_by("-m", "proctop", mode, "--replay", "tests/data/failures.jsonl")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shows in proc.stdout and sink in modules  # it ran the sink, and the import log was read
    assert textual_in(modules) == []


def test_the_textual_check_sees_textual():
    """The check above can fail: importing the UI's board loads Textual, and the same reading finds it."""
    proc, modules = imported_by("-c", "import proctop.sinks.ui.board")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "textual" in textual_in(modules)
