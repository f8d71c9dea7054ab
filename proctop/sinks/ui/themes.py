"""Themes: TOML files in ``themes/`` (installed as ``proctop.themes``) turned into Textual themes.

A theme file::

    name = "proctop-dark"
    dark = true
    [colors]            # Textual's base colours (primary is required)
    primary = "#4ea1ff"
    background = "#101418"
    [events]            # per-event colours, CSS variables $event-fork, ...
    fork = "#5fafff"
    failed = "#ff5f5f"

Every problem (unknown name, TOML syntax, unknown key, a colour Textual cannot
parse) is a ``ThemeError``: one line, exit status 2 from the CLI.

A theme answers to its short name (``dark`` for ``proctop-dark``) as well as
its full one, and Textual's own themes (``nord``, ``textual-light``) are
accepted too: the command palette offers them, so the config file may name
one. Names are checked without importing Textual (``resolve_theme_name``
looks at file names only), because ``--json --theme dark`` must be validated
and must not pay Textual's import time for it.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Required, TypedDict, cast

from proctop.errors import ProctopError
from proctop.model.kinds import COLOURS

if TYPE_CHECKING:  # Textual is imported where a theme is built, not to check a name (see above)
    from textual.theme import Theme

DEFAULT_THEME = "proctop-dark"

#: The prefix a theme's short name leaves out (``dark`` is ``proctop-dark``).
PREFIX = "proctop-"


class ThemeColors(TypedDict, total=False):
    """The ``[colors]`` table as ``Theme`` takes it: ``COLOR_KEYS``, each a colour string."""

    primary: Required[str]
    secondary: str
    accent: str
    foreground: str
    background: str
    surface: str
    panel: str
    boost: str
    warning: str
    error: str
    success: str


#: Colour keys of ``[colors]`` (Textual ``Theme`` fields), in ``ThemeColors``' order.
COLOR_KEYS: tuple[str, ...] = tuple(ThemeColors.__annotations__)

#: Keys of ``[events]``; each becomes the CSS variable ``$event-<key>`` (the colour classes of
#: ``proctop.model.kinds``).
EVENT_KEYS: tuple[str, ...] = tuple(colour.name for colour in COLOURS)

#: Used for any key a theme leaves out (and by Textual's own themes).
EVENT_DEFAULTS: dict[str, str] = {f"event-{colour.name}": colour.default for colour in COLOURS}


def event_css() -> str:
    """The ``.event--<key>`` rules, one per colour class, for ``App.CSS``.

    Generated rather than written in proctop.tcss: a hand-written copy checked
    by a test would be simpler code but still a second list to edit, and the
    goal is that a new kind (or colour class) is one line in
    ``proctop.model.kinds`` and nothing else. Generation is as robust: the
    rules name only ``$event-*`` variables, which every theme defines
    (``EVENT_DEFAULTS`` is the app's variable default), and no rule in
    proctop.tcss names an ``.event--*`` class (tests/core/test_kinds.py), so
    Textual's order between ``App.CSS`` and ``CSS_PATH`` cannot change a colour.
    """
    rules = []
    for colour in COLOURS:
        style = f" text-style: {colour.style};" if colour.style else ""
        rules.append(f".event--{colour.name} {{ color: $event-{colour.name};{style} }}")
    return "\n".join(rules) + "\n"


class ThemeError(ProctopError):
    """A theme cannot be found or read; the message is one line."""

    status = 2


def theme_files() -> dict[str, Path]:
    """Every ``*.toml`` shipped in ``proctop.themes``, by file stem."""
    try:
        root = resources.files("proctop.themes")
    except ModuleNotFoundError:  # running from a source tree (PYTHONPATH=.): themes/ beside proctop/
        root = Path(__file__).resolve().parents[3] / "themes"
    files = {}
    try:
        entries = list(root.iterdir())
    except OSError:  # no themes shipped (a bare copy of the package): Textual's own themes remain
        entries = []
    for entry in entries:
        if entry.name.endswith(".toml") and entry.is_file():
            files[entry.name[: -len(".toml")]] = Path(str(entry))
    return dict(sorted(files.items()))


def parse_theme(text: str, origin: str) -> Theme:
    """A Textual ``Theme`` from the text of a theme file (``origin`` names it in errors)."""
    from textual.theme import Theme

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"theme file {origin}: not valid TOML ({exc})") from None
    unknown = set(data) - {"name", "dark", "colors", "events", "description"}
    if unknown:
        raise ThemeError(f"theme file {origin}: unknown key {sorted(unknown)[0]!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeError(f"theme file {origin}: 'name' must be a non-empty string")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeError(f"theme file {origin}: 'dark' must be true or false")
    colors = _color_table(data.get("colors", {}), COLOR_KEYS, origin, "colors")
    if "primary" not in colors:
        raise ThemeError(f"theme file {origin}: [colors] needs 'primary'")
    events = _color_table(data.get("events", {}), EVENT_KEYS, origin, "events")
    variables = {**EVENT_DEFAULTS, **{f"event-{key}": value for key, value in events.items()}}
    # _color_table kept only COLOR_KEYS, each a colour string, and 'primary' is there.
    return Theme(name=name, dark=dark, variables=variables, **cast(ThemeColors, colors))


def _color_table(table: object, keys: tuple[str, ...], origin: str, section: str) -> dict[str, str]:
    from textual.color import Color, ColorParseError

    if not isinstance(table, dict):
        raise ThemeError(f"theme file {origin}: [{section}] must be a table")
    out = {}
    for key, value in table.items():
        if key not in keys:
            raise ThemeError(
                f"theme file {origin}: unknown key {key!r} in [{section}] (choose from: {', '.join(keys)})"
            )
        if not isinstance(value, str):
            raise ThemeError(f"theme file {origin}: {section}.{key} must be a colour string")
        try:
            Color.parse(value)
        except ColorParseError:
            raise ThemeError(f"theme file {origin}: {section}.{key} is not a colour: {value!r}") from None
        out[key] = value
    return out


def load_theme_file(path: Path) -> Theme:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeError(f"cannot read theme file {path.name}: {exc}") from None
    return parse_theme(text, path.name)


def load_themes() -> dict[str, Theme]:
    """Every shipped theme by name; a broken file raises ``ThemeError``."""
    themes: dict[str, Theme] = {}
    for path in theme_files().values():
        theme = load_theme_file(path)
        themes[theme.name] = theme
    return themes


def theme_names() -> list[str]:
    return list(theme_files())


def short_name(name: str) -> str:
    """``dark`` for ``proctop-dark``; any other name as it is."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name


def short_names() -> list[str]:
    """The shipped themes' short names, for ``--help`` and error messages."""
    return [short_name(name) for name in theme_files()]


def textual_theme_names() -> list[str]:
    """Textual's built-in themes (the palette offers them beside proctop's)."""
    from textual.theme import BUILTIN_THEMES

    return list(BUILTIN_THEMES)


def _shipped_name(name: str, files: dict[str, Path]) -> str | None:
    """The full name of the shipped theme ``name`` means, full or short (``dark``); None if none."""
    for candidate in (name, PREFIX + name):
        if candidate in files:
            return candidate
    return None


def resolve_theme_name(name: str) -> str:
    """The full name of the theme ``name`` means (``dark`` -> ``proctop-dark``); ``ThemeError`` if none.

    Only file names are looked at (no theme is parsed, Textual is not imported)
    unless ``name`` is none of proctop's: then Textual's built-in themes are
    asked, since the palette offers them and the config file may remember one.
    """
    files = theme_files()
    shipped = _shipped_name(name, files)
    if shipped is not None:
        return shipped
    if name in textual_theme_names():
        return name
    choices = ", ".join(short_name(n) for n in files) or "none installed"
    raise ThemeError(f"unknown theme {name!r} (choose from: {choices}, or one of Textual's such as textual-dark)")


def load_theme_by_name(name: str) -> Theme:
    """The shipped theme called ``name`` (full or short), validated; ``ThemeError`` otherwise."""
    files = theme_files()
    shipped = _shipped_name(name, files)
    if shipped is None:
        raise ThemeError(f"unknown theme {short_name(name)!r} (choose from: {', '.join(short_names()) or 'none'})")
    name, path = shipped, files[shipped]
    theme = load_theme_file(path)
    if theme.name != name:
        raise ThemeError(f"theme file {path.name}: its name is {theme.name!r}, expected {name!r}")
    return theme
