"""Which socket reader runs: the compiled one (proctop.sources.creader) where built, or its Python twin.

Light on purpose: ``--version`` and ``--help`` say which reader runs without
importing the socket layer (pyroute2).
"""

from __future__ import annotations

import os
from typing import Literal

from proctop.errors import ProctopError

__all__ = ["READER_ENV", "ReaderChoiceError", "ReaderKind", "compiled", "describe_reader", "extension", "reader_kind"]

try:
    import proctop.sources._creader as extension
except ImportError:  # built without a compiler or Python.h: the Python reader alone
    extension = None  # type: ignore[assignment]

ReaderKind = Literal["c", "python"]
#: PROCTOP_READER=python runs the Python twin although the compiled reader is built.
READER_ENV = "PROCTOP_READER"


class ReaderChoiceError(ProctopError):
    """PROCTOP_READER names a reader that is not here (bad input: status 2)."""

    status = 2


def compiled() -> bool:
    """The compiled reader was built and imports."""
    return extension is not None


def reader_kind() -> ReaderKind:
    """The reader that runs: the compiled one where built, unless PROCTOP_READER says otherwise."""
    want = os.environ.get(READER_ENV, "")
    if want == "python":
        return "python"
    if want == "c" and not compiled():
        raise ReaderChoiceError(f"{READER_ENV}=c: the compiled reader is not built (it needs gcc and python3-dev)")
    if want not in ("", "c"):
        raise ReaderChoiceError(f"{READER_ENV}={want!r}: choose c or python")
    return "c" if compiled() else "python"


def describe_reader() -> str:
    """What ``--version`` says of the reader (never raises: a bad PROCTOP_READER is said, not fatal here)."""
    try:
        kind = reader_kind()
    except ReaderChoiceError as exc:
        return str(exc)
    if kind == "python" and not compiled():
        return "python (the compiled reader is not built)"
    return kind
