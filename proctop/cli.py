"""Command line: parse, probe, pick a source, run the UI or ``--json``.

Every user error is one line on stderr and exit 2; a machine that cannot
deliver events is one line and exit 3; signals and a closed stdout end the
run with 0. No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Sequence

from proctop import __version__
from proctop.kernel.protocol import DEFAULT_MASK, MASK_NAMES, MaskError, parse_mask

EXIT_USAGE = 2


class UsageError(Exception):
    status = EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="proctop",
        description="Watch forks, execs and abnormal exits live, filtered by the kernel.",
    )
    p.add_argument(
        "--only",
        metavar="EVENTS",
        default=None,
        help="comma list of events the kernel should send: "
        + ", ".join(MASK_NAMES)
        + " (default: fork,exec,nonzero-exit)",
    )
    p.add_argument("--json", action="store_true", help="no UI: one JSON object per event on stdout")
    p.add_argument("--duration", metavar="SECONDS", type=_nonneg_float, help="stop after this many seconds")
    p.add_argument("--count", metavar="N", type=_nonneg_int, help="stop after N events")
    p.add_argument("--replay", metavar="FILE", help="read a capture written by --json instead of the kernel")
    p.add_argument("--threads", action="store_true", help="keep per-thread events (pid != tgid)")
    p.add_argument("--theme", metavar="NAME", help="UI theme (see themes/)")
    p.add_argument("--history", metavar="N", type=_pos_int, default=100_000, help="rows the UI keeps (default 100000)")
    p.add_argument(
        "--source",
        choices=("auto", "native", "kmod", "userspace"),
        default="auto",
        help="force an event source instead of probing (default: auto)",
    )
    p.add_argument("--version", action="version", version=f"proctop {__version__}")
    return p


def _number(text: str, convert: type, noun: str, minimum: float):
    """Parse a command-line number: finite and at least ``minimum``, else a one-line error."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise argparse.ArgumentTypeError(f"must be a finite number >= {minimum}, got {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    return _number(text, float, "a number", 0)


def _nonneg_int(text: str) -> int:
    return _number(text, int, "a whole number", 0)


def _pos_int(text: str) -> int:
    return _number(text, int, "a whole number", 1)


class _StopFlag:
    """Set by SIGINT/SIGTERM/SIGHUP; the JSON loop looks at it between batches.

    A flag, not an exception: raised from a handler, an exception could land
    inside one of the best-effort ``except Exception`` blocks and be swallowed.
    """

    def __init__(self) -> None:
        self.raised = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        self.raised = True

    def __call__(self) -> bool:
        return self.raised


def make_source(args: argparse.Namespace, mask: int):
    """The event source the arguments ask for (raises errors with a ``status``)."""
    if args.replay:
        from proctop.sources.replay import ReplaySource

        return ReplaySource(args.replay, mask)
    from proctop.kernel.probe import probe
    from proctop.sources.connector import ConnectorSource

    capability = probe(None if args.source == "auto" else args.source)
    return ConnectorSource(capability, mask, threads=args.threads)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        mask = parse_mask(args.only) if args.only is not None else DEFAULT_MASK
        if args.json:
            return _run_json(args, mask)
        return _run_ui(args, mask)
    except (UsageError, MaskError) as exc:
        print(f"proctop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # errors that carry their own exit status
        status = getattr(exc, "status", None)
        if status is None:
            raise
        print(f"proctop: {exc}", file=sys.stderr)
        return status


def _run_json(args: argparse.Namespace, mask: int) -> int:
    from proctop.headless import run_json

    stop = _StopFlag()
    source = None
    try:
        source = make_source(args, mask)
        source.start()
        return run_json(source, duration=args.duration, count=args.count, stop_flag=stop)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`| head -1`): silence the final flush too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if source is not None:
            _quietly_close(source)


def _quietly_close(source) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        source.close()
    except Exception:
        pass


def _run_ui(args: argparse.Namespace, mask: int) -> int:
    from proctop.ui.app import run_app

    if args.theme is not None:
        from proctop.ui.themes import (
            load_theme_by_name,  # validates before the screen opens
        )

        load_theme_by_name(args.theme)
    _need_terminal()
    source = make_source(args, mask)
    return run_app(source, args, exit_process=True)


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
