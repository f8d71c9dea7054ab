"""``proctop module install|remove|status`` on the command line: the words, their checks, the dispatch.

The work itself (DKMS, modprobe, the boot file) is ``proctop.kernel.module_install``;
this is only how the command line reaches it, so that the kernel layer knows
nothing of argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from proctop.kernel.module_install import EXIT_USAGE, ModuleError, install, remove, status
from proctop.kernel.probe import KMOD_NAME


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """The subcommand slot, which a stray word must not turn into "invalid choice".

    ``proctop --hisotry 5``: argparse offers the ``5`` to the first positional, this
    one; it is kept (``stray``) so that the mistyped option is what the user hears
    about (``did you mean --history?``), and ``run`` refuses the word otherwise.
    argparse checks a value against ``choices`` before the action sees it, so the
    choices admit any word; the commands themselves are the dict's keys.
    """

    class _AnyWord(dict[str, argparse.ArgumentParser]):
        """The commands (a dict: shtab and argparse-manpage want one) that contain any word."""

        def __contains__(self, word: object) -> bool:
            return True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = self._AnyWord()

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        self.choices[name] = parser
        return parser

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values and values[0] not in self._name_parser_map:
            namespace.stray = list(values)
            return
        super().__call__(parser, namespace, values, option_string)


def add_parser(parser: argparse.ArgumentParser) -> None:
    """``proctop module {install,remove,status}`` on ``cli.build_parser``'s parser."""
    parser.set_defaults(stray=None)  # a stray word, kept by _Commands
    commands = parser.add_subparsers(
        dest="module_group", metavar="module", title="commands", prog="proctop", action=_Commands
    )
    module = commands.add_parser(
        "module",
        help=f"build and load the {KMOD_NAME} backport module through DKMS (install, remove: root; status)",
        description=f"The {KMOD_NAME} module gives kernels before 6.6 (and 6.6+ kernels that refuse "
        "non-root users) filtered process events for any user. install builds the shipped source with "
        "DKMS for the running kernel, loads it and loads it at every boot; remove undoes that.",
    )
    actions = module.add_subparsers(
        dest="module_action", metavar="{install,remove,status}", required=True, prog="proctop module"
    )
    actions.add_parser("install", help="dkms add, build and install for the running kernel, modprobe, load at boot")
    actions.add_parser("remove", help="unload, dkms remove, and no more loading at boot")
    actions.add_parser("status", help="what is installed and loaded (exit 0 when loaded, 1 when not)")


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command line names a command (``module``), or a word where one would be."""
    return bool(args.module_group or args.stray)


def run(args: argparse.Namespace, options: Sequence[str], command: Sequence[str]) -> int:
    """The ``module`` command the arguments name; its exit status (errors raise ``ModuleError``)."""
    if args.stray:
        raise ModuleError(f"unrecognized arguments: {' '.join(args.stray)}", status=EXIT_USAGE)
    if options[0] != "module":  # proctop --json module status: nothing else on the line applies
        raise ModuleError("module: no options go before it (proctop module install)", status=EXIT_USAGE)
    if command:
        raise ModuleError("module: takes no -- COMMAND", status=EXIT_USAGE)
    action = {"install": install, "remove": remove, "status": status}[args.module_action]
    try:
        return action()
    except OSError as exc:  # a file it could not write, a tool it could not start: one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        raise ModuleError(f"module {args.module_action}: {exc.strerror or exc}{where}") from None
