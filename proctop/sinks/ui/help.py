"""Help where a sysadmin looks for it (``?``, F1), and every action in the command palette.

Both are read from the table of keys (``proctop.sinks.ui.keys``) and show the key
bound *now*, after a config file's remapping, so what they say is what the
keys do. The help screen lists proctop's own keys only, grouped as the table
groups them; Textual's generic keys (focus next, copy) are not proctop's
vocabulary and stay out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from proctop.sinks.text.sanitize import ScreenText
from proctop.sinks.ui import keys
from proctop.sinks.ui.keys import HELP, KeySpec

if TYPE_CHECKING:
    from textual.app import App

#: Width of the key column on the help screen.
KEY_WIDTH = 6
#: Groups in the left and the right column (two columns fit 80x24).
COLUMNS: tuple[tuple[keys.Group, ...], ...] = (("kernel filter", "general"), ("view", "navigation"))

#: Said once at the top: the kernel filter keys change what arrives, not what is shown.
KERNEL_NOTE = "kernel filter: what the kernel sends from now on; / hides rows received"

#: The view filter's syntax (proctop.sinks.ui.query), under the filter's key: each line fits the help
#: column at 80 columns, which has no row to spare for more (the man page has it all).
#: tests/ui/test_ui_keys.py checks that the columns named are the query's.
FILTER_HELP = (
    "a b both, a|b either, /regex/",
    '"a b" literal; event:failed',
    "cmd: pid: user: unit: status:",
)


def key_text(app: App[Any], spec: KeySpec, keymap: Mapping[str, str], *, first: bool = False) -> str:
    """The keys bound to ``spec`` now, as the footer writes them (``?/f1``, ``^p``, ``pgdn``);
    ``first``: only the first of them, for a hint inside a sentence (``(space resumes)``)."""
    bound = keys.current_keys(spec, keymap)
    return "/".join(app.get_key_display(Binding(key, spec.action, id=spec.id)) for key in bound[: 1 if first else None])


class HelpScreen(ModalScreen[None]):
    """proctop's keys, grouped; ``?`` or Escape closes it."""

    BINDINGS = keys.bindings("help")

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > #help-box {
        width: 100%;
        max-width: 100;
        height: auto;
        max-height: 100%;
        border: round $primary;
        border-title-color: $foreground;
        border-subtitle-color: $foreground 70%;
        background: $panel;
        padding: 0 1;
    }
    HelpScreen #help-note {
        color: $foreground 70%;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        margin-bottom: 1;
    }
    HelpScreen #help-columns {
        height: auto;
    }
    HelpScreen .help-column {
        width: 1fr;
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    HelpScreen #help-left {
        margin-right: 2;
    }
    """

    def __init__(self, keymap: Mapping[str, str]) -> None:
        super().__init__(id="help")
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        box = Vertical(id="help-box")
        box.border_title = "proctop keys"
        close = "/".join(key_text(self.app, keys.lookup(i, "help"), self.keymap) for i in ("close", "help"))
        box.border_subtitle = f"{close} closes"
        with box:
            yield Static(KERNEL_NOTE, id="help-note")
            with Horizontal(id="help-columns"):
                for side, groups in zip(("left", "right"), COLUMNS, strict=True):
                    yield Static(self.column_text(groups), id=f"help-{side}", classes="help-column")

    def column_text(self, groups: Iterable[keys.Group]) -> ScreenText:
        text = ScreenText(no_wrap=True, overflow="ellipsis")
        for i, group in enumerate(groups):
            if i:
                text.newline().newline()
            text.append(group, style="bold underline")
            for spec in HELP[group]:
                text.newline()
                text.append(f"{key_text(self.app, spec, self.keymap):<{KEY_WIDTH}}", style="bold")
                text.append(" " + spec.help)
                if spec.id == "filter":  # its syntax, below it
                    for line in FILTER_HELP:
                        text.newline().append(" " * (KEY_WIDTH + 1) + line)
        return text


def palette_commands(
    app: App[Any], keymap: Mapping[str, str], run: Callable[[KeySpec], object], title: Callable[[KeySpec], str]
) -> Iterable[SystemCommand]:
    """A palette entry for every table entry marked ``palette``, its key named in the title.

    ``run`` runs a spec's action; ``title`` says what it does now (Pause or Resume).
    """
    for spec in keys.KEYS:
        if spec.palette:
            yield SystemCommand(
                f"{title(spec)}  ({key_text(app, spec, keymap)})",
                spec.help,
                lambda spec=spec: run(spec),  # the default binds this spec, not the loop's last
            )
