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
