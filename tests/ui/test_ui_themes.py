"""Theme files: loading, validation, --theme, the command palette, per-event colours."""

from __future__ import annotations

import pytest
from textual.color import Color
from textual.command import CommandPalette
from textual.widgets import OptionList
from ui_helpers import SAMPLE, wait_for

from proctop.cli import main as cli
from proctop.model.kinds import COLOURS
from proctop.sinks.ui import themes
from proctop.sinks.ui.app import ProctopApp
from proctop.sinks.ui.themes import ThemeError, load_theme_by_name, load_themes, parse_theme

NAMES = {"proctop-dark", "proctop-light", "proctop-high-contrast", "proctop-cb-safe"}
OKABE_ITO = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}


def test_shipped_themes_load():
    loaded = load_themes()
    assert set(loaded) >= NAMES
    assert loaded["proctop-dark"].dark and not loaded["proctop-light"].dark
    for theme in loaded.values():
        for key in themes.EVENT_KEYS:
            Color.parse(theme.variables[f"event-{key}"])  # every event has a parseable colour
    cb = loaded["proctop-cb-safe"]
    event_colours = {cb.variables[f"event-{k}"].upper() for k in themes.EVENT_KEYS}
    greys = {c for c in event_colours if c[1:3] == c[3:5] == c[5:7]}
    assert event_colours - greys <= OKABE_ITO
    assert load_theme_by_name("proctop-high-contrast").background == "#000000"


def test_unknown_theme_is_one_line_with_status_2():
    with pytest.raises(ThemeError) as info:
        load_theme_by_name("nope")
    assert info.value.status == 2
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown theme 'nope' (choose from: ")
    choices = message.split("(choose from: ", 1)[1].rstrip(")").split(", ")
    assert set(choices) == {name.removeprefix("proctop-") for name in NAMES}  # short names, as --theme takes them


def test_short_and_full_names_are_the_same_theme():
    for name in NAMES:
        short = name.removeprefix("proctop-")
        assert themes.resolve_theme_name(short) == themes.resolve_theme_name(name) == name
        assert load_theme_by_name(short).name == name
    assert themes.resolve_theme_name("nord") == "nord"  # Textual's own themes: the palette offers them
    assert sorted(themes.short_names()) == sorted(n.removeprefix("proctop-") for n in NAMES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'x'\n[colors\nprimary='#fff'", "not valid TOML"),
        ("name = 'x'\n[colors]\nprimary = 'notacolour'", "colors.primary is not a colour"),
        ("name = 'x'\n[colors]\nbackground = '#000'", "needs 'primary'"),
        ("name = 'x'\n[colors]\nprimary = '#fff'\n[events]\nforks = '#fff'", "unknown key 'forks' in [events]"),
        ("name = 'x'\ndark = 'yes'\n[colors]\nprimary = '#fff'", "'dark' must be true or false"),
        ("[colors]\nprimary = '#fff'", "'name' must be a non-empty string"),
        ("name = 'x'\ncolours = 1", "unknown key 'colours'"),
    ],
)
def test_malformed_theme_text(text, expected):
    with pytest.raises(ThemeError) as info:
        parse_theme(text, "bad.toml")
    assert expected in str(info.value)
    assert str(info.value).startswith("theme file bad.toml: ")
    assert "\n" not in str(info.value)


def test_cli_theme_errors(tmp_path, monkeypatch, capsys):
    assert cli.main(["--replay", str(SAMPLE), "--theme", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("proctop: unknown theme 'nope' (choose from: ") and err.count("\n") == 1

    (tmp_path / "broken.toml").write_text("name = 'broken'\n[colors]\nprimary = 12\n")
    monkeypatch.setattr(themes, "theme_files", lambda: {"broken": tmp_path / "broken.toml"})
    assert cli.main(["--replay", str(SAMPLE), "--theme", "broken"]) == 2
    err = capsys.readouterr().err
    assert err == "proctop: theme file broken.toml: colors.primary must be a colour string\n"


async def test_theme_option_and_event_colours(sample_source):
    app = ProctopApp(sample_source, theme="proctop-light", rate_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "proctop-light"
        style = app.timeline.get_component_rich_style("event--fork")
        assert style.color.triplet.hex == "#0550ae"
        app.theme = "proctop-cb-safe"
        await pilot.pause()
        style = app.timeline.get_component_rich_style("event--signal")
        assert style.color.triplet.hex.upper() == "#D55E00"
        # a Textual built-in theme still works: proctop's variables have defaults
        app.theme = "textual-dark"
        await pilot.pause()
        assert app.timeline.get_component_rich_style("event--fork").color is not None


async def test_every_colour_class_of_the_table_styles_the_timeline(sample_source):
    """The generated ``.event--*`` rules (``themes.event_css``) reach the widgets: every colour
    class of proctop.model.kinds has its theme colour and its text style."""
    app = ProctopApp(sample_source, theme="proctop-dark", rate_interval=None)
    async with app.run_test(size=(100, 30)):
        theme = load_theme_by_name("proctop-dark")
        for colour in COLOURS:
            style = app.timeline.get_component_rich_style(f"event--{colour.name}")
            assert style.color.triplet.hex.lower() == theme.variables[f"event-{colour.name}"].lower(), colour
            assert bool(style.bold) == ("bold" in colour.style), colour
            assert bool(style.reverse) == ("reverse" in colour.style), colour


async def test_command_palette_lists_the_themes(sample_source):
    app = ProctopApp(sample_source, rate_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "proctop-dark"
        app.search_themes()
        assert await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"proctop")
        results = app.screen.query_one(OptionList)

        def names():
            return {str(results.get_option_at_index(i).prompt) for i in range(results.option_count)}

        assert await wait_for(pilot, lambda: all(any(n in p for p in names()) for n in NAMES))
        # pick the high contrast theme from the palette
        await pilot.press("backspace", *"-high-contrast", "enter")
        assert await wait_for(pilot, lambda: app.theme == "proctop-high-contrast")


def _luminance(color) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = color.triplet
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def _contrast(a, b) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("theme", sorted(NAMES))
async def test_selected_rows_are_readable_in_every_theme(theme):
    """WCAG AA (4.5:1) for the selected row of the timeline and the board, as Textual resolves the styles."""
    from ui_helpers import SAMPLE

    from proctop.kernel.protocol import PROC_EVENT_ALL
    from proctop.sinks.ui.app import ProctopApp
    from proctop.sources.replay import ReplaySource

    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    app = ProctopApp(source, theme=theme, rate_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for widget, component in ((app.timeline, "timeline--cursor"), (app.board_view, "board--cursor")):
            style = widget.rich_style + widget.get_component_rich_style(component, partial=True)
            assert _contrast(style.color, style.bgcolor) >= 4.5, (theme, component, style)


async def test_a_theme_chosen_in_the_palette_is_saved_in_the_config_file(sample_source, tmp_path):
    from functools import partial

    from proctop.cli.config import load, save_theme

    path = tmp_path / "proctop" / "config.toml"
    path.parent.mkdir()
    path.write_text("# mine\nhistory = 500\n")
    app = ProctopApp(sample_source, theme="proctop-dark", rate_interval=None, save_theme=partial(save_theme, path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert path.read_text() == "# mine\nhistory = 500\n"  # the starting theme is no choice
        app.search_themes()
        assert await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"proctop-cb-safe")
        assert await wait_for(pilot, lambda: app.screen.query_one(OptionList).option_count > 0)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.theme == "proctop-cb-safe")
        assert await wait_for(pilot, lambda: 'theme = "cb-safe"' in path.read_text())
    assert path.read_text() == 'theme = "cb-safe"\n# mine\nhistory = 500\n'
    assert load(path).theme == "proctop-cb-safe"  # the next start opens in it


async def test_a_theme_that_cannot_be_saved_is_a_notification_not_a_crash(sample_source, tmp_path):
    from functools import partial

    from proctop.cli.config import save_theme

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    save = partial(save_theme, not_a_dir / "config.toml")
    app = ProctopApp(sample_source, theme="proctop-dark", rate_interval=None, save_theme=save)
    async with app.run_test(size=(100, 30)) as pilot:
        app.theme = "proctop-light"
        assert await wait_for(pilot, lambda: len(app._notifications) == 1)
        (note,) = app._notifications
        assert note.message == f"theme not saved in {not_a_dir / 'config.toml'}: Not a directory"
        assert note.severity == "warning"
        assert app.is_running and app.theme == "proctop-light"


async def test_the_config_keymap_reaches_textual(sample_source):
    """``keymap=`` (the config file's [keys]) goes to ``App.set_keymap``: the binding ``pause``
    answers to its new keys (both of them, pausing and resuming) and no longer to space."""
    app = ProctopApp(sample_source, rate_interval=None, keymap={"pause": "z,f5"})
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("space")
        await pilot.pause()
        assert not app.paused
        await pilot.press("z")
        assert await wait_for(pilot, lambda: app.paused)
        await pilot.press("f5")
        assert await wait_for(pilot, lambda: not app.paused)


def test_a_package_without_its_themes_folder_still_starts(monkeypatch, tmp_path):
    """A bare copy of the package (the kmod guest's, a vendored one): no proctop themes, Textual's remain."""
    from importlib import resources

    monkeypatch.setattr(resources, "files", lambda name: tmp_path / "absent")
    assert themes.theme_files() == {}
    assert "none installed" in cli.build_parser().format_help()
