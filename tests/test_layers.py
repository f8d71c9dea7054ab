"""The layering the README promises, held by parsing every module under proctop/.

Layers, lowest first; a module may import its own layer and any layer below it,
never one above:

    base     proctop/__init__.py, proctop/errors.py    (importable from anywhere)
    kernel   proctop/kernel/    the proc connector's wire format, socket, probe
    model    proctop/model/     events, enrichment, /proc, failures, identity; the UI's vocabulary
    sources  proctop/sources/   where events come from (connector, replay, stored records, tree)
    ui       proctop/ui/        the Textual app and what it draws
    top      proctop/cli.py and the other top-level modules (headless, summary, record,
             always_on, metrics, __main__): consumers that wire the layers together

One exception to "any layer below": the UI never imports kernel/. It speaks the
model's vocabulary (``proctop.model.kinds``, the table of event kinds, gives the mask
names and bits it toggles), so the UI never touches sockets or wire formats.

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "proctop"

RANKS = {"base": 0, "kernel": 1, "model": 2, "sources": 3, "ui": 4, "top": 5}
SUBPACKAGES = ("kernel", "model", "sources", "ui")
BASE_MODULES = ("proctop", "proctop.errors")
#: (importer layer, imported layer) pairs refused even though the imported layer is lower.
FORBIDDEN_DOWNWARD = {("ui", "kernel")}


def layer_of(module: str) -> str | None:
    """The layer of a dotted ``proctop`` module name; ``None`` for anything outside proctop."""
    parts = module.split(".")
    if parts[0] != "proctop":
        return None
    if module in BASE_MODULES:
        return "base"
    if parts[1] in SUBPACKAGES:
        return parts[1]
    return "top"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, importer: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted module)`` for every import anywhere in ``tree`` (functions included).

    ``from proctop import always_on`` imports the module ``proctop.always_on``;
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
        if RANKS[theirs] > RANKS[mine] or (mine, theirs) in FORBIDDEN_DOWNWARD:
            out.append(f"{importer}:{lineno}: {mine} imports {module} ({theirs})")
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
        ("proctop.ui.widgets", "from proctop.kernel.protocol import MASK_BITS", "ui imports proctop.kernel.protocol"),
        ("proctop.ui.app", "def f():\n    import proctop.kernel.socket", "ui imports proctop.kernel.socket"),
        ("proctop.ui.app", "from proctop import cli", "ui imports proctop.cli (top)"),
        ("proctop.model.enrich", "from proctop.sources.base import Source", "model imports proctop.sources.base"),
        ("proctop.model.events", "from proctop.ui import sanitize", "model imports proctop.ui.sanitize"),
        ("proctop.kernel.probe", "from proctop.model.events import Event", "kernel imports proctop.model.events"),
        ("proctop.kernel.socket", "from proctop.record import x", "kernel imports proctop.record (top)"),
        ("proctop.sources.replay", "from proctop.record import is_stored", "sources imports proctop.record (top)"),
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
        ("proctop.ui.app", "from proctop.model.kinds import MASK_BITS\nfrom proctop.sources.base import Source"),
        ("proctop.cli", "from proctop.kernel.protocol import parse_mask\nfrom proctop.ui.app import run_app"),
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
