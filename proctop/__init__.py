"""proctop: watch what processes do, live, through the kernel's filtered proc connector.

Run as the program (the ``proctop`` script or ``python -m proctop``), this is
the first of proctop's code to run, so SIGINT/SIGTERM/SIGHUP are caught here,
before any other import (``_signal`` is the interpreter's built-in module: the
``signal`` module's own import was long enough to be hit): a signal during the
imports that follow (argparse, orjson, Textual: up to half a second) raised
KeyboardInterrupt inside one of them (a traceback, and a SIGSEGV when it landed
in orjson's module init). The handler only notes the signal; ``proctop.cli.main``
asks ``early_signal`` once its own handlers are in place and ends with status
0, as for any signal.
"""

import _signal  # type: ignore[import-not-found]  # the built-in behind signal.py, which has no stub
import sys as _sys

#: The first SIGINT/SIGTERM/SIGHUP received before the command line's own handlers were
#: installed, or None.
early_signal: int | None = None


def _note_signal(signum: int, frame: object) -> None:
    global early_signal
    if early_signal is None:
        early_signal = signum


def _running_as_program() -> bool:
    """The ``proctop`` script, or ``python [options] -m proctop``; not a test importing the package."""
    if _sys.argv and _sys.argv[0].rsplit("/", 1)[-1] == "proctop":
        return True
    argv = getattr(_sys, "orig_argv", [])
    return any(argv[i] == "-m" and argv[i + 1] == "proctop" for i in range(len(argv) - 1))


if _running_as_program():
    for _sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        try:
            _signal.signal(_sig, _note_signal)
        except (OSError, ValueError):  # not the main thread (embedded): nothing to catch here
            pass

__version__ = "0.1.0"
