"""Command line: parse, probe, pick a source, run the UI or ``--json``.

Every user error is one line on stderr and exit 2; a machine that cannot
deliver events is one line and exit 3; signals and a closed stdout end the
run with 0. No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import proctop
from proctop import __version__
from proctop.cli import always_on, config, manual, module, options
from proctop.cli.config import DEFAULT_HISTORY, MAX_HISTORY
from proctop.cli.options import Options, UsageError
from proctop.errors import OutputClosed, ProctopError, write_stdout
from proctop.model.failures import LOOP_BURST, LOOP_INTERVAL
from proctop.model.kinds import MASK_NAMES
from proctop.sources.choice import describe_reader

if TYPE_CHECKING:  # annotations only: the sources and sinks are imported when one is made
    from proctop.sinks.stream import Sink
    from proctop.sources.base import Source

N = TypeVar("N", int, float)

EXIT_USAGE = UsageError.status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        unknown = "unrecognized arguments: "
        if message.startswith(unknown):  # --jsno: "did you mean --json?"
            message += _suggestion(message[len(unknown) :].split(), self._option_string_actions)
        raise UsageError(message)

    def _print_message(self, message: str, file: Any = None) -> None:
        """--help and --version: through ``write_stdout``, so /dev/full is one line, not a traceback."""
        if not message:
            return
        if file is sys.stdout:
            write_stdout(message)
            return
        try:
            (file or sys.stderr).write(message)
        except (OSError, ValueError, AttributeError):
            pass


def _suggestion(words: Sequence[str], options: Iterable[str]) -> str:
    """`` (did you mean --json?)`` for the first mistyped option among ``words`` that is close to one."""
    for word in words:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], [o for o in options if o.startswith("--")], n=1)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="proctop",
        usage="proctop [options] [-- COMMAND [ARG ...]]\n       proctop module {install,remove,status}",
        description="Watch forks, execs and abnormal exits live, filtered by the kernel. "
        "With -- COMMAND: start it, watch only it and its descendants, exit with its status.",
    )
    p.add_argument(
        "--only",
        metavar="EVENTS",
        default=None,
        help="comma list of events the kernel should send: "
        + ", ".join(MASK_NAMES)
        + " (default: fork,exec,nonzero-exit)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="no UI: one JSON object per event on stdout")
    out.add_argument(
        "--summary",
        action="store_true",
        help="no UI: print the failures board as a text table at the end (of a replay, --duration, "
        "--count, the watched command, or on SIGINT/SIGTERM), as wide as COLUMNS or the terminal; "
        "on stderr with -- COMMAND",
    )
    p.add_argument("--duration", metavar="SECONDS", type=_duration, help="stop after this many seconds")
    p.add_argument("--count", metavar="N", type=_count, help="stop after N events")
    p.add_argument("--replay", metavar="FILE", help="read a capture written by --json instead of the kernel")
    p.add_argument("--threads", action="store_true", help="keep per-thread events (pid != tgid)")
    p.add_argument(
        "--names",
        choices=("on", "off"),
        default=None,
        help="read each exec for names even when EVENTS lacks exec (default: on; off: the leanest watch)",
    )
    p.add_argument("--theme", metavar="NAME", help=_theme_help())
    p.add_argument(
        "--history", metavar="N", type=_history, default=None, help=f"rows the UI keeps (default {DEFAULT_HISTORY})"
    )
    p.add_argument(
        "--source",
        choices=("auto", "native", "kmod", "userspace"),
        default="auto",
        help="force an event source instead of probing (default: auto)",
    )
    p.add_argument(
        "--loop-burst",
        metavar="N",
        type=_burst,
        default=LOOP_BURST,
        help=f"failures that make a crash loop (default {LOOP_BURST})",
    )
    p.add_argument(
        "--loop-interval",
        metavar="SECONDS",
        type=_duration,
        default=LOOP_INTERVAL,
        help=f"...within this many seconds (default {LOOP_INTERVAL:.0f})",
    )
    p.add_argument("--version", action="version", version=f"proctop {__version__} (reader: {describe_reader()})")
    always_on.add_options(p)  # --record, --metrics, --since/--until (proctop/cli/always_on.py)
    config.add_options(p)  # --config, --no-config (proctop/cli/config.py)
    manual.add_options(p)  # --completion SHELL, --manpage (proctop/cli/manual.py)
    module.add_parser(p)  # proctop module install|remove|status (proctop/cli/module.py)
    return p


def _theme_help() -> str:
    from proctop.sinks.ui.themes import DEFAULT_THEME, short_name, short_names

    names = ", ".join(short_names()) or "none installed"
    return f"UI theme: {names} (default {short_name(DEFAULT_THEME)}), or one of Textual's such as nord"


#: Upper bounds of the numeric options: far above any real use, far below what
#: breaks arithmetic or memory (a history of 10**23 rows, a deadline past float range).
MAX_DURATION = 10 * 365 * 86400  # ten years, in seconds
MAX_COUNT = 10**12


def _number(text: str, convert: Callable[[str], N], noun: str, minimum: float, maximum: float) -> N:
    """Parse a command-line number: finite, within bounds, else a one-line error."""
    if len(text) > 40:  # before int(): a 5,000-digit argument is refused, not converted
        raise argparse.ArgumentTypeError(f"must be a number from {minimum} to {maximum}, got {text[:20]!r}...")
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise argparse.ArgumentTypeError(f"must be a number from {minimum} to {maximum}, got {text!r}")
    return value


def _duration(text: str) -> float:
    return _number(text, float, "a number", 0, MAX_DURATION)


def _count(text: str) -> int:
    return _number(text, int, "a whole number", 0, MAX_COUNT)


def _history(text: str) -> int:
    return _number(text, int, "a whole number", 1, MAX_HISTORY)


def _burst(text: str) -> int:
    return _number(text, int, "a whole number", 1, MAX_COUNT)


class _StopFlag:
    """Set by SIGINT/SIGTERM/SIGHUP; the JSON loop looks at it between batches.

    A flag, not an exception: raised from a handler, an exception could land
    inside one of the best-effort ``except Exception`` blocks and be swallowed.
    """

    def __init__(self) -> None:
        self.raised = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handler)
        if proctop.early_signal is not None:  # came during the imports (proctop/__init__.py)
            self.raised = True

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.raised = True

    def __call__(self) -> bool:
        return self.raised


def make_source(opts: Options) -> Source:
    """The event source ``opts`` ask for, teed to the recorder and the metrics (raises errors with a ``status``)."""
    metrics_address = always_on.check(opts)
    if opts.replay:
        from proctop.sources.replay import ReplaySource

        replay = ReplaySource(opts.replay, opts.mask, since=opts.since, until=opts.until)
        return always_on.attach(replay, opts, metrics_address)
    from proctop.kernel.probe import probe
    from proctop.sources.connector import ConnectorSource

    capability = probe(None if opts.source == "auto" else opts.source)
    source: Source = ConnectorSource(capability, opts.mask, threads=opts.threads, names=opts.names)
    if opts.command:
        source = _command_tree(source, opts)
    return always_on.attach(source, opts, metrics_address)


def _command_tree(source: Source, opts: Options) -> Source:
    from proctop.sources.tree import CommandTree

    argv = list(opts.command)
    if opts.json:  # stdout is the JSON stream: the command's output goes to stderr
        return CommandTree(source, argv, stdout=sys.stderr.fileno())
    if opts.summary or opts.record:
        return CommandTree(source, argv)
    return CommandTree(  # under the UI the terminal is proctop's
        source, argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``proctop [options] -- CMD ARGS``: the options, and the command (empty without ``--``)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    command = argv[cut + 1 :]
    if not command:
        raise UsageError("-- must be followed by a command to run and watch")
    return argv[:cut], command


def _command_status(source: Source, status: int) -> int:
    """With -- COMMAND proctop exits with the command's status."""
    command_status = source.command_status
    return command_status if command_status is not None else status


def parse_options(argv: Sequence[str]) -> Options:
    """``proctop [options] [-- COMMAND]`` and the config file: the run's options, built once and frozen."""
    words, command = split_command(argv)
    return options.build(build_parser().parse_args(words), command)


def main(argv: Sequence[str] | None = None) -> int:
    if proctop.early_signal is not None:  # a signal during the imports: the end, quietly
        return 0
    try:
        words, command = split_command(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(words)
        if module.wanted(args):  # proctop module install|remove|status
            return module.run(args, words, command)
        opts = options.build(args, command)
        if opts.headless:
            return _run_headless(opts)
        return _run_ui(opts)
    except KeyboardInterrupt:
        return 0
    except ProctopError as exc:  # one line and its own status; anything else is a bug and shows its traceback
        if not isinstance(exc, OutputClosed):
            _error_line(exc)
        return exc.status


def _error_line(exc: BaseException) -> None:
    """One line on stderr; file names and argv in it are untrusted, so made safe like the screen's text."""
    from proctop.sinks.text.sanitize import safe

    print(f"proctop: {safe(str(exc))}", file=sys.stderr)


def _run_headless(opts: Options) -> int:
    """``--json``, ``--summary``, ``--record`` without a UI: the one loop (``run_headless``) with one output."""
    from proctop.sinks.stream import NoOutput, run_headless

    stop = _StopFlag()
    source = None
    try:
        source = make_source(opts)  # bad input is reported even with stdout closed
        source.start()
        output: Sink
        if opts.summary or opts.json:
            if sys.stdout is None:  # started with stdout closed (`proctop --json >&-`): nobody to tell
                return 0
            output = _output(opts, source, stop)
        else:  # --record alone: nothing on stdout
            output = NoOutput()
        status = run_headless(source, output, duration=opts.duration, count=opts.count, stop_flag=stop)
        source.close()  # ends the watched command, if any, before its status is read
        return _command_status(source, status)
    except KeyboardInterrupt:
        return 0
    finally:
        if source is not None:
            _quietly_close(source)


def _output(opts: Options, source: Source, stop: _StopFlag) -> Sink:
    """What the headless loop writes to stdout: the failures table or the JSON lines."""
    if opts.summary:
        from proctop.model.failures import FailureBoard
        from proctop.sinks.summary import FailureSummary

        board = FailureBoard(loop_burst=opts.loop_burst, loop_interval=opts.loop_interval)
        # -- CMD: where time(1) writes, so CMD keeps stdout; else stdout, through the one-line write path
        return FailureSummary(source, board, sys.stderr if opts.command else None)
    from proctop.sinks.headless import JsonLines

    return JsonLines(stop_flag=stop, count_lost=source.count_lost, waits_for_reader=source.kind == "replay")


def _quietly_close(source: Source) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        source.close()
    except Exception:
        pass


def _run_ui(opts: Options) -> int:
    from proctop.sinks.ui.app import ProctopApp, run_app

    if opts.theme is not None:
        from proctop.sinks.ui.themes import load_theme_by_name, theme_files

        if opts.theme in theme_files():  # resolved by options.build; a Textual theme needs no file
            load_theme_by_name(opts.theme)  # the file itself is checked before the screen opens
    _need_terminal()
    source = make_source(opts)
    app = ProctopApp(
        source,
        history=opts.history,
        theme=opts.theme,
        loop_burst=opts.loop_burst,
        loop_interval=opts.loop_interval,
        duration=opts.duration,
        count=opts.count,
        keymap=opts.keymap,
        save_theme=opts.save_theme,
    )
    return run_app(app, exit_process=True)


def _need_terminal() -> None:
    """The UI reads keys from stdin and draws on stdout: both must be a terminal.

    Checked before anything is drawn. (Textual's input loop spun a core on a
    stdin at end of file, ``proctop < /dev/null``.)
    """
    for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout)):
        try:
            tty = stream is not None and os.isatty(stream.fileno())
        except (OSError, ValueError):
            tty = False
        if not tty:
            raise UsageError(f"the UI needs a terminal and {name} is not one; use --json for a pipe or file")
