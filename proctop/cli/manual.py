"""Shell completions and the man page, generated from the argparse parser itself.

Written by hand, both would fall behind the options within a release; generated
(shtab for bash, zsh and fish; argparse-manpage for roff) they list exactly what
``cli.build_parser`` accepts. ``--completion SHELL`` and ``--manpage`` are
argparse actions, like ``--version``: they print from the parser that parsed
them and exit 0, whatever else is on the command line.

The man page also ships as a file: ``man/proctop.1`` in the source tree is this
module's output (tests/core/test_manual.py fails when it is stale), installed by
the wheel as data to ``<prefix>/share/man/man1/proctop.1``. In a venv that is
``<venv>/share/man/man1``, which ``man proctop`` finds once ``<venv>/bin`` is on
``PATH`` (man-db derives the man path from ``PATH``); ``proctop --manpage | man -l -``
works wherever proctop runs.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from proctop import __version__
from proctop.errors import write_stdout

#: The shells ``--completion`` writes for.
SHELLS = ("bash", "zsh", "fish")

#: What a value of these options is, for the completion (the rest complete nothing).
_FILE_OPTIONS = ("replay",)
_DIRECTORY_OPTIONS = ("record",)

#: Two forms: watching, and the module command (argparse-manpage would run them together).
_SYNOPSIS = r""".B proctop
[options] [\-\- COMMAND [ARG ...]]
.br
.B proctop module
{install,remove,status}"""

# Sections the options cannot say; roff, shown as written by `man`.
_SECTIONS: tuple[tuple[str, str], ...] = (
    (
        "view filter",
        r"""In the UI, \fB/\fR opens the view filter: it hides rows already received and changes nothing
the kernel sends. Space-separated terms must all match, case-insensitively:
.TP
\fBword\fR
a substring of what the row shows (event, pid, ppid, user, unit, command, detail);
\fBSIGSEGV|SIGTERM\fR is either.
.TP
\fB/regex/\fR
a regular expression (Python syntax), searched in the same text; it ends at a space (write \fB\\s\fR).
.TP
\fB"two words"\fR
literal text: no column, no \fB|\fR, no regex.
.TP
\fIcolumn\fB:\fIvalue\fR
the term in one column: \fBevent:\fR (a kind, or \fBfailed\fR, \fBsignal\fR), \fBpid:\fR, \fBppid:\fR,
\fBuser:\fR (exactly), \fBid:\fR (a command's identity, the failures board's group, exactly and
case included: what Enter on a board row writes, e.g. \fBid:"sh -c exit @cron.service"\fR),
\fBcmd:\fR (a substring of the command or its identity's name), \fBunit:\fR (a substring),
\fBstatus:\fR (a number is the exit code,
other text a substring of the status, e.g. \fBstatus:SIGSEGV\fR). The value may be a \fB/regex/\fR.
.PP
A bad filter (a bad regex, an unknown column) is shown as an error in the input and matches no row.""",
    ),
    (
        "config file",
        r"""\fI$XDG_CONFIG_HOME/proctop/config.toml\fR (by default \fI~/.config/proctop/config.toml\fR;
another with \fB--config\fR, none with \fB--no-config\fR), TOML, read at start; every key is optional
and the command line wins over it:
.PP
.nf
theme = "cb-safe"                   # as --theme
events = ["fork", "exec", "nonzero-exit"]   # as --only, for a live run
history = 200000                    # as --history
[keys]                              # binding id = key(s), comma-separated
pause = "z"
quit = "q,ctrl+q"
.fi
.PP
The binding ids are in \fBKEYS\fR below. A wrong file (bad TOML, an unknown key, id or theme, a key
that another binding already has) stops proctop in every mode with one line naming the file, status 2.
A theme chosen in the UI's command palette is written back to the file (only the \fBtheme\fR line).""",
    ),
    (
        "exit status",
        r""".TP
\fB0\fR
stopped by \fB--duration\fR, \fB--count\fR, \fBq\fR, SIGINT, SIGTERM or SIGHUP, or the end of a replay.
.TP
\fB1\fR
a failure during the run: the output or a recording could not be written, or reading events failed;
a step of \fBproctop module\fR failed (the dkms build, whose log it names; dkms install; modprobe);
\fBproctop module status\fR: the module is not loaded.
.TP
\fB2\fR
bad input: the command line, the config file, a capture file or record directory, a \fB--metrics\fR
address; or the UI without a terminal: one line on stderr.
.TP
\fB3\fR
this machine cannot deliver process events; for \fBproctop module\fR: it cannot take the module
(a kernel without module support, no dkms, no headers of the running kernel).
.TP
\fB4\fR
\fBproctop module install\fR or \fBremove\fR not run as root.
.TP
\fIN\fR
with \fB-- COMMAND\fR: the command's exit status (128+N if signal N killed it;
127 not found, 126 not executable).""",
    ),
    (
        "examples",
        r""".nf
proctop --only nonzero-exit
proctop --json --only all --duration 10 > capture.jsonl
proctop --summary --replay capture.jsonl
proctop --summary -- make -k -j8
proctop --completion bash > /etc/bash_completion.d/proctop
sudo proctop module install
.fi""",
    ),
)


def completion_values() -> dict[str, list[str]]:
    """The values offered after the options whose values are a known list (by ``dest``).

    Offered, not enforced: the parser checks them itself (``--only`` takes a comma
    list, ``--theme`` any Textual theme), so they are set on the parser only here,
    for shtab, whose scripts complete an action's ``choices``.
    """
    from textual.theme import BUILTIN_THEMES

    from proctop.model.kinds import MASK_NAMES
    from proctop.sinks.ui.themes import short_names

    return {"only": list(MASK_NAMES), "theme": [*short_names(), *sorted(BUILTIN_THEMES)]}


def completion(parser: argparse.ArgumentParser, shell: str) -> str:
    """The ``shell`` completion script for ``parser`` (shtab)."""
    import shtab

    values = completion_values()
    for action in parser._actions:
        if action.dest in values:
            action.choices = values[action.dest]  # the parser exits once the script is printed
        if action.dest in _FILE_OPTIONS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.dest in _DIRECTORY_OPTIONS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        if shell == "zsh" and action.metavar and ":" in str(action.metavar):  # ADDR:PORT: a colon ends zsh's field
            action.metavar = str(action.metavar).replace(":", "\\:")
    script: str = shtab.complete(parser, shell=shell)
    return script


def manpage(parser: argparse.ArgumentParser) -> str:
    """The roff man page for ``parser`` (argparse-manpage), with the sections options cannot say."""
    from argparse_manpage.manpage import Manpage

    # One line per paragraph, whatever $COLUMNS says: roff fills the lines itself, and a
    # line break argparse put inside "nonzero-exit" would show as "nonzero- exit".
    parsers = _parsers(parser)  # proctop module's usage lines too
    classes = [p.formatter_class for p in parsers]
    for p in parsers:
        p.formatter_class = functools.partial(p.formatter_class, width=100_000)  # type: ignore[call-arg]
    try:
        page: Any = Manpage(parser, format="single-commands-section")
        page.source = f"proctop {__version__}"
        page.manual = "User Commands"
        page.date = ""  # no build date: the shipped file must equal a fresh one (tests/core/test_manual.py)
        page.description = "watch forks, execs and abnormal process deaths live"
        page.add_section("synopsis", "=", _SYNOPSIS)
        for heading, content in (*_SECTIONS[:1], ("keys", _keys_section()), *_SECTIONS[1:]):
            page.add_section(heading, ">", content)
        text: str = str(page)
    finally:
        for p, formatter_class in zip(parsers, classes, strict=True):
            p.formatter_class = formatter_class
    return "\n".join(_as_text(line) for line in text.split("\n"))


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and its subcommands' parsers, all the way down."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _parsers(sub)
    return found


def _keys_section() -> str:
    """The UI's keys as the help screen groups them, each with its binding id (``[keys]`` in the config file)."""
    from proctop.sinks.ui.keys import GROUPS, HELP

    lines = [r"In the UI; \fB?\fR or F1 lists them as bound now, \fBctrl+p\fR finds any action by name."]
    for group in GROUPS:
        lines.append(f".SS {group}")
        for spec in HELP[group]:
            shown = " or ".join(rf"\fB{_roff(key)}\fR" for key in spec.key.split(","))
            lines += [".TP", f"{shown}  ({spec.id})", _roff(spec.help)]
    return "\n".join(lines)


def _roff(text: str) -> str:
    """Text safe in a roff line: backslashes doubled, a leading dot or quote escaped."""
    text = text.replace("\\", "\\\\")
    return "\\&" + text if text[:1] in (".", "'") else text


#: The roff requests argparse-manpage and the sections above write; any other line that starts
#: with ``.`` or ``'`` is help text (``...within N seconds``) that roff would take for a request.
_REQUESTS = frozenset({"TH", "SH", "SS", "TP", "PP", "B", "I", "RS", "RE", "nf", "fi", "UR", "UE", "IP", "br"})


def _as_text(line: str) -> str:
    if line[:1] in (".", "'") and line[1:].split(" ", 1)[0] not in _REQUESTS:
        return "\\&" + line
    return line


class PrintAction(argparse.Action):
    """``--completion SHELL``, ``--manpage``: print what ``render`` makes of the parser and exit 0,
    as ``--version`` does (``render`` gets the option's value, None for ``--manpage``)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        render: Callable[[argparse.ArgumentParser, str | None], str],
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.render = render

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        _emit(parser, self.render(parser, None if values is None or values == [] else str(values)))


def _emit(parser: argparse.ArgumentParser, text: str) -> NoReturn:
    """Print and exit 0; a reader that went away (``| head``) or a closed stdout is no error."""
    write_stdout(text)  # a full disk is one line (status 1), a gone reader the quiet end (0)
    parser.exit(0)


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--completion`` and ``--manpage``, for ``cli.build_parser``."""
    parser.add_argument(
        "--completion",
        metavar="SHELL",
        choices=SHELLS,
        action=PrintAction,
        render=lambda parser, shell: completion(parser, str(shell)),
        help=f"print the shell completion script ({', '.join(SHELLS)}) and exit",
    )
    parser.add_argument(
        "--manpage",
        action=PrintAction,
        nargs=0,
        render=lambda parser, _: manpage(parser),
        default=argparse.SUPPRESS,
        help="print the man page (roff) and exit",
    )
