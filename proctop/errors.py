"""The root of proctop's own errors: each carries the exit status the CLI ends with.

The CLI prints any ``ProctopError`` as one line and exits with its
``status``; anything else is a bug and shows its traceback.
"""

from __future__ import annotations


class ProctopError(Exception):
    """A failure to report in one line; ``status`` is the process exit status."""

    status = 1

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class OutputError(ProctopError):
    """stdout cannot be written (``> /dev/full``, an I/O error): one line, status 1."""

    status = 1


class OutputClosed(ProctopError):
    """The reader of stdout went away (``| head``, ``| true``): the quiet end, status 0, no line."""

    status = 0


def write_stdout(text: str) -> None:
    """Write ``text`` to stdout and flush it now, so that a failure is ours to report.

    Left to the interpreter's last flush, a full disk or a gone reader was an
    "Exception ignored" or a traceback. After a failure stdout points at
    /dev/null: what stays buffered is flushed there quietly at exit.
    """
    import sys

    out = sys.stdout
    if out is None:  # started with stdout closed: nobody to tell
        return
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        _quiet_stdout()
        raise OutputClosed("") from None
    except ValueError:  # closed
        raise OutputClosed("") from None
    except OSError as exc:
        _quiet_stdout()
        raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None


def _quiet_stdout() -> None:
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno() if sys.stdout is not None else 1)
        os.close(devnull)
    except (OSError, ValueError):
        pass
