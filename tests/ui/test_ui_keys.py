"""proctop's keys: one table (proctop/sinks/ui/keys.py), ids on every binding, remapping, help, palette.

The pilot tests run the app on the replayed sample capture; the help screen's
snapshot is in test_help_snapshot_80x24.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from rich.cells import cell_len
from textual.command import CommandList, CommandPalette
from ui_helpers import SAMPLE, screen_text, wait_for

from proctop.kernel.protocol import PROC_EVENT_ALL, PROC_EVENT_FORK
from proctop.model.kinds import MASK_BITS, TOGGLES
from proctop.sinks.ui import keys
from proctop.sinks.ui.app import ProctopApp
from proctop.sinks.ui.board import FailuresView
from proctop.sinks.ui.help import COLUMNS as help_columns
from proctop.sinks.ui.help import HelpScreen
from proctop.sinks.ui.keys import GROUPS, HELP, KEYS
from proctop.sinks.ui.timeline import Timeline
from proctop.sources.replay import ReplaySource

ROOT = Path(__file__).resolve().parents[2]
#: The class that holds each scope's BINDINGS.
SCOPES = {"app": ProctopApp, "timeline": Timeline, "board": FailuresView, "help": HelpScreen}


def make_app(**kw) -> ProctopApp:
    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    return ProctopApp(source, rate_interval=None, **kw)


async def loaded(pilot) -> None:
    app = pilot.app
    assert await wait_for(pilot, lambda: app.reader_done and len(app.timeline.rows) == app.source.stats.delivered)
    await pilot.pause()


# --- the table ------------------------------------------------------------------


@pytest.mark.parametrize("scope", SCOPES)
def test_every_binding_has_a_proctop_id(scope):
    """Each class's own BINDINGS come from the table, every binding with an id a config file can name."""
    own = SCOPES[scope].__dict__["BINDINGS"]
    assert own, scope
    for binding in own:
        assert binding.id and binding.id in keys.IDS, binding
    assert [b.id for b in own] == [b.id for b in keys.bindings(scope)]


def binding_calls_without_id(source: str, filename: str) -> list[int]:
    """Lines of ``Binding(...)`` calls without ``id=`` and of BINDINGS not built by ``keys.bindings``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name == "Binding" and not any(kw.arg == "id" for kw in node.keywords):
                found.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "BINDINGS" for t in targets):
                value = node.value
                built = (
                    isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Attribute)
                    and value.func.attr == "bindings"
                    and isinstance(value.func.value, ast.Name)
                    and value.func.value.id == "keys"
                )
                if not built:
                    found.append(node.lineno)
    return found


def test_no_binding_without_an_id_anywhere_in_proctop():
    """A binding written outside the table (or without an id) fails here, wherever it appears."""
    offenders = []
    for path in sorted((ROOT / "proctop").rglob("*.py")):
        for line in binding_calls_without_id(path.read_text(), str(path)):
            offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert not offenders, "bindings outside proctop/sinks/ui/keys.py or without an id:\n" + "\n".join(offenders)


def test_the_binding_scan_finds_what_it_looks_for():
    """The scan above is not vacuous: the bindings this table replaced would fail it."""
    assert binding_calls_without_id('BINDINGS = [Binding("q", "quit", "Quit")]', "old.py") == [1, 1]
    assert binding_calls_without_id('x = Binding("q", "quit", id="quit")', "ok.py") == []
    assert binding_calls_without_id('BINDINGS = keys.bindings("app")', "ok.py") == []


def test_mask_toggles_come_from_the_table_of_kinds():
    toggles = [spec for spec in KEYS if spec.action.startswith("toggle_mask(")]
    expected = [(key, f"toggle_mask('{name}')") for key, name, _ in TOGGLES]
    assert [(spec.key, spec.action) for spec in toggles] == expected
    assert all(spec.group == "kernel filter" and spec.palette for spec in toggles)
    assert {spec.id for spec in toggles} == {f"toggle-{name}" for _, name, _ in TOGGLES}


def test_the_table_is_consistent():
    for scope, cls in SCOPES.items():
        specs = [spec for spec in KEYS if spec.scope == scope]
        # an id twice in a scope is one key with two states (space: Pause / Resume), on the same keys
        for binding_id in {spec.id for spec in specs}:
            assert len({spec.key for spec in specs if spec.id == binding_id}) == 1, (scope, binding_id)
        owners = {key: spec.id for spec in specs for key in spec.key.split(",")}
        bound = [key for spec in specs for key in spec.key.split(",")]
        assert len(set(bound)) == len(owners) and all(
            owners[key] == spec.id for spec in specs for key in spec.key.split(",")
        ), f"{scope}: two bindings on one key"
        for spec in specs:  # the action exists where the binding is
            name = re.match(r"\w+", spec.action).group(0)
            assert callable(getattr(cls, f"action_{name}", None)), (scope, spec.action)
    for spec in KEYS:
        assert spec.group in GROUPS and spec.help and spec.description
        assert cell_len(spec.help) <= 30, spec.help  # one line in a help column at 80 columns
    # the same id means the same thing wherever it is bound
    for spec in KEYS:
        same = [other for other in KEYS if other.id == spec.id]
        assert {(other.key, other.help, other.group) for other in same} == {(spec.key, spec.help, spec.group)}
    assert all(HELP[group] for group in GROUPS)
    assert sorted(group for column in help_columns for group in column) == sorted(GROUPS)  # every group on screen
    navigation = {spec.key for spec in HELP["navigation"]}
    assert navigation == {"up,k", "down,j", "pageup", "pagedown", "home", "end"}


def test_check_keymap():
    assert keys.check_keymap({"pause": "z", "help": "h,f1"}) is None
    assert keys.check_keymap({"nope": "p"}).startswith("unknown key binding id 'nope'; choose from board, ")
    assert keys.check_keymap({"puase": "p"}).startswith("unknown key binding id 'puase' (did you mean 'pause'?); ")
    assert all(binding_id in keys.check_keymap({"nope": "p"}) for binding_id in keys.IDS)
    assert "non-empty" in keys.check_keymap({"pause": " "})
    assert "non-empty" in keys.check_keymap({"pause": "p,"})
    # a key two bindings of one place would share: Textual would drop one silently
    assert keys.check_keymap({"pause": "p"}) == ("pause: key 'p' is also toggle-ptrace's (remap that one too)")
    assert keys.check_keymap({"help": "?"}) is None  # "?" is question_mark, its own key
    assert "quit" in keys.check_keymap({"filter": "q"})
    swapped = {"pause": "p", "toggle-ptrace": "P", "toggle-exit": "ctrl+x"}
    assert keys.check_keymap(swapped) is None
    assert keys.check_keymap({"board-sort": "t"}) is None
    # the timeline's keys shadow the app's while it has the focus
    assert keys.check_keymap({"follow": "f"}) == ("follow: key 'f' is also toggle-fork's (remap that one too)")
    assert "toggle-sid" in keys.check_keymap({"board-sort": "s"})
    assert keys.check_keymap({"details": "enter"}) is None  # the board's Enter over it is by design
    assert keys.check_keymap({}) is None
    with pytest.raises(ValueError, match="nope"):
        make_app(keymap={"nope": "p"})


# --- remapping ----------------------------------------------------------------------


async def test_a_remapped_key_works_and_the_old_one_is_free():
    app = make_app(keymap={"pause": "z", "toggle-fork": "F", "cursor-up": "k"})
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("z")
        assert app.paused
        await pilot.press("space")
        assert app.paused  # space no longer pauses
        await pilot.press("z")
        assert not app.paused
        await pilot.press("F")
        assert app.source.mask == PROC_EVENT_ALL ^ PROC_EVENT_FORK
        await pilot.press("f")
        assert app.source.mask == PROC_EVENT_ALL ^ PROC_EVENT_FORK
        last = app.timeline.selected
        await pilot.press("k")  # the timeline's navigation, remapped by id
        assert app.timeline.selected is not last and not app.timeline.follow
        assert "z Pause" in screen_text(app).splitlines()[-1]  # the footer names the key bound now


async def test_every_key_the_screen_names_is_the_one_bound():
    """Remapped keys: the header, the kernel filter line, the empty note and the filter's placeholder
    name the keys bound now (``z``, ``F``, ``G``, ``A``), never the defaults that no longer act."""
    keymap = {"pause": "z", "toggle-fork": "F", "follow": "G", "toggle-all": "A", "help": "H", "close": "ctrl+g"}
    app = make_app(keymap=keymap)
    async with app.run_test(size=(130, 30)) as pilot:
        await loaded(pilot)
        assert app.filter_input.placeholder == "filter rows (Enter keeps, ^g clears)"
        await pilot.press("up")
        await pilot.pause()
        assert "held (G follows)" in screen_text(app).splitlines()[0]
        await pilot.press("z")
        await pilot.pause()
        header = screen_text(app).splitlines()
        assert "(z resumes)" in header[0] and "space" not in header[0]
        assert " F[x]fork " in header[1] and " f[" not in header[1]
        await pilot.press("A")  # all on -> none
        await pilot.pause()
        assert "(A: shown again)" in screen_text(app).splitlines()[1]


async def test_a_keymap_applied_while_running_reaches_the_board():
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        app.apply_keymap({"board-sort": "s", "toggle-sid": "S"})  # sid moves: no clash
        await pilot.press("tab")
        assert app.views.current == "board"
        await pilot.press("s")
        assert app.board_view.sort == "rate"
        assert app.source.mask == PROC_EVENT_ALL  # "s" is the board's now, not sid's


# --- help ---------------------------------------------------------------------------


async def test_question_mark_and_f1_open_the_help_escape_and_question_mark_close_it():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        for opener, closer in [("question_mark", "escape"), ("f1", "question_mark"), ("question_mark", "f1")]:
            await pilot.press(opener)
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen), opener
            await pilot.press(closer)
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen), closer
            assert len(app.screen_stack) == 1


async def test_help_lists_proctops_keys_grouped_with_one_line_each():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        for group in GROUPS:
            assert group in text
        for key, _name, label in TOGGLES:  # every kernel filter key, on one line with its help
            assert re.search(rf"│ {re.escape(key)}\s+{re.escape(label)} events on/off", text), key
        for line in (
            "space  hold new rows (still counted)",
            "/      filter the rows received",
            "end    follow the newest row",
            "tab    failures board / timeline",
            "q      quit",
        ):
            assert line in text, line
        assert "kernel filter: what the kernel sends from now on" in text
        for generic in ("Focus Next", "focus_next", "Copy", "super+c", "Scroll"):  # Textual's own keys stay out
            assert generic not in text
        # the keys typed while the help is up do nothing underneath
        await pilot.press("space", "f", "tab", "slash")
        assert not app.paused and app.source.mask == PROC_EVENT_ALL
        assert app.views.current == "timeline" and not app.filter_input.has_class("-open")
        assert isinstance(app.screen, HelpScreen)


async def test_help_shows_the_keys_bound_now():
    app = make_app(keymap={"pause": "z", "help": "h", "close": "ctrl+g"})
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)  # ? is not bound any more
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "z      hold new rows" in text and "space  hold new rows" not in text
        assert "h      this list of keys" in text
        assert "^g/h closes" in text
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert len(app.screen_stack) == 1


async def test_question_mark_in_the_filter_is_text():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("slash", "a", "question_mark")
        await pilot.pause()
        assert app.filter_input.value == "a?"
        assert len(app.screen_stack) == 1


@pytest.mark.parametrize("theme", ["proctop-dark"])
def test_help_snapshot_80x24(snap_compare, theme):
    async def open_help(pilot) -> None:
        await loaded(pilot)
        await pilot.press("f1")
        await pilot.pause()

    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    app = ProctopApp(source, theme=theme, rate_interval=None)
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_help)


# --- the command palette ------------------------------------------------------------


def palette_titles(app: ProctopApp) -> list[str]:
    return [command.title for command in app.get_system_commands(app.screen)]


async def run_from_palette(pilot, query: str) -> None:
    """Open the palette, type ``query``, take the first hit."""
    app = pilot.app
    await pilot.press("ctrl+p")
    assert await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
    hits = app.screen.query_one(CommandList)
    await pilot.press(*query)
    # the palette gathers hits in a worker: wait until the best one is this query's
    assert await wait_for(
        pilot, lambda: hits.option_count and query in str(hits.get_option_at_index(0).prompt).lower()
    ), query
    await pilot.press("down", "enter")
    assert await wait_for(pilot, lambda: not isinstance(app.screen, CommandPalette))
    await pilot.pause()


async def test_every_action_is_in_the_palette_with_its_key():
    app = make_app(keymap={"filter": "ctrl+f"})
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        titles = palette_titles(app)
        for _, _name, label in TOGGLES:
            assert any(t.startswith(f"Kernel: {label} on/off  (") for t in titles), label
        for title in (
            "Pause  (space)",
            "Filter  (^f)",
            "Details  (⏎)",
            "Board  (tab)",
            "Follow  (end)",
            "All / none / start  (a)",
            "Help  (?/f1)",
            "Quit  (q)",
        ):
            assert title in titles, title
        assert "Keys" not in titles and titles.count("Quit  (q)") == 1  # not Textual's generic ones
        assert "Theme" in titles  # Textual's other commands stay
        await pilot.press("space")
        assert "Resume  (space)" in palette_titles(app)


async def test_palette_runs_the_actions_and_escape_closes_it():
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("ctrl+p")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        # shown before anything is typed
        assert await wait_for(pilot, lambda: "All / none / start  (a)" in screen_text(app))
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: len(app.screen_stack) == 1)

        await run_from_palette(pilot, "pause")
        assert app.paused
        await run_from_palette(pilot, "resume")
        assert not app.paused
        await run_from_palette(pilot, "kernel: coredump")
        assert app.source.mask == PROC_EVENT_ALL ^ MASK_BITS["coredump"]
        await run_from_palette(pilot, "all / none / start")
        assert app.source.mask == PROC_EVENT_ALL
        await pilot.press("up", "up")
        assert not app.timeline.follow
        await run_from_palette(pilot, "follow")
        assert app.timeline.follow
        await run_from_palette(pilot, "board")
        assert app.views.current == "board"
        await run_from_palette(pilot, "board")
        assert app.views.current == "timeline"
        await run_from_palette(pilot, "details")
        assert app.details.has_class("-open")
        await run_from_palette(pilot, "help")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await run_from_palette(pilot, "filter")
        assert app.filter_input.has_class("-open")
        assert await wait_for(pilot, lambda: app.filter_input.has_focus)
        await pilot.press(*"crashme")
        assert app.timeline.needle == "crashme"
        await pilot.press("escape")
        await run_from_palette(pilot, "quit")
        assert await wait_for(pilot, lambda: not app.is_running)


def test_the_help_names_the_filter_syntax_with_the_query_s_own_columns():
    """? shows the view filter's syntax under its key; every column it names is one the query knows."""
    import re

    from proctop.sinks.ui.help import FILTER_HELP
    from proctop.sinks.ui.query import COLUMNS

    named = set(re.findall(r"([a-z]+):", " ".join(FILTER_HELP)))
    assert named and named <= set(COLUMNS), named - set(COLUMNS)
    assert all(len(line) <= 30 for line in FILTER_HELP)  # the help column at 80 columns


def test_the_readme_lists_every_binding_id_with_its_default_keys():
    """The [keys] ids are documented where users look, not only in the source."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for spec in keys.KEYS:
        assert f"| `{spec.id}` | `{spec.key}` |" in readme or spec.scope == "help", spec.id
