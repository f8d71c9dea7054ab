"""proctop: watch what processes do, live, through the kernel's filtered proc connector.

Run as the program (the ``proctop`` script or ``python -m proctop``), this is
the first of proctop's code to run, so SIGINT/SIGTERM/SIGHUP are caught here,
before any import: a signal during the imports that follow (argparse, orjson,
Textual: up to half a second) raised KeyboardInterrupt inside one of them (a
traceback, and a SIGSEGV when it landed in orjson's module init). The handler
only notes the signal; ``proctop.cli`` asks ``early_signal`` once its own
handlers are in place and ends with status 0, as for any signal.
"""

import signal as _signal
import sys as _sys
from itertools import pairwise as _pairwise
from types import FrameType as _FrameType

__version__ = "0.1.0"

#: The first SIGINT/SIGTERM/SIGHUP received before the command line's own handlers were
#: installed, or None.
early_signal: int | None = None

#: The signals that end proctop with status 0 (README, "Exit status").
QUIT_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)


def _note_signal(signum: int, frame: _FrameType | None) -> None:
    global early_signal
    if early_signal is None:
        early_signal = signum


def _running_as_program() -> bool:
    """The ``proctop`` script, or ``python [options] -m proctop``; not a test importing the package."""
    if _sys.argv and _sys.argv[0].rsplit("/", 1)[-1] == "proctop":
        return True
    argv = getattr(_sys, "orig_argv", [])
    return any(a == "-m" and b == "proctop" for a, b in _pairwise(argv))


if _running_as_program():
    for _sig in QUIT_SIGNALS:
        try:
            _signal.signal(_sig, _note_signal)
        except (OSError, ValueError):  # not the main thread (embedded): nothing to catch here
            pass
