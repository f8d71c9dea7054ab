"""The event every layer above the kernel works with, and its JSON Lines form.

The JSON keys are a public contract (README, "JSON schema"): monitors parse
them and ``--replay`` reads them back, so ``Event.to_json`` and
``Event.from_json`` must stay each other's inverse.
"""

from __future__ import annotations

import json
import math
import operator
import signal as _signal
from dataclasses import dataclass, fields
from typing import Any, TypeGuard

import orjson

from proctop.model.kinds import EVENT_KINDS as EVENT_KINDS  # values of the ``event`` key


def decode_wait_status(status: int) -> tuple[int | None, str | None, bool]:
    """Split a wait status (as the kernel reports ``exit_code``) into its parts.

    Returns ``(exit_code, signal_name, core_dumped)``: a normal exit gives
    ``(code, None, False)``; a death by signal gives ``(None, "SIGSEGV", True)``.
    """
    sig = status & 0x7F
    if sig == 0:
        return (status >> 8) & 0xFF, None, False
    return None, signal_name(sig), bool(status & 0x80)


def signal_name(sig: int) -> str:
    """``SIGSEGV`` for 11; real-time and unknown numbers still get a stable name."""
    try:
        return _signal.Signals(sig).name
    except ValueError:
        if _signal.SIGRTMIN <= sig <= _signal.SIGRTMAX:
            return f"SIGRTMIN+{sig - _signal.SIGRTMIN}"
        return f"SIG{sig}"


def command_line(cmdline: list[str] | None, comm: str | None) -> str:
    """What to call a process in one line: its argv, else its comm, else ``?``."""
    if cmdline:
        return " ".join(cmdline)
    return comm or "?"


def encode_line(obj: dict[str, Any]) -> bytes:
    """``obj`` as one line of ASCII JSON, strict RFC 8259: the one encoder of every line written.

    orjson when its bytes are ASCII: 0.6 us against 6.0 us for ``json.dumps`` on an
    exit event (timeit, here, load 1.6; the whole line 3.7 against 8.8 us),
    the largest share of the consumer's CPU under ``--only all`` (cProfile: to_dict
    + dumps were half of the main thread). orjson
    writes non-ASCII as UTF-8 and refuses the lone surrogates of undecodable argv
    bytes (``\\udcXX``), and the output is a contract (pure ASCII): those lines, rare,
    go through ``json.dumps``. Both write the same keys, order and values; only a
    number's spelling may differ (orjson 0.00005, json 5e-05), as JSON allows
    (tests/core/test_events.py holds the two equal). Neither escapes DEL (0x7f, ASCII
    but a control character to a terminal): it can only be inside a string, so a
    byte replace after one ``in`` scan (memchr speed) spells it ``\\u007f``.
    """
    try:
        line = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
        if line.isascii():
            return line.replace(b"\x7f", b"\\u007f") if b"\x7f" in line else line
    except TypeError:  # a lone surrogate (orjson.JSONEncodeError is a TypeError)
        pass
    line = (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode("ascii")
    return line.replace(b"\x7f", b"\\u007f")


@dataclass(slots=True)
class Event:
    """One process event as shown and serialised.

    ``pid`` is the kernel's thread id of the subject and ``tgid`` its process
    id; at process level (the default) they are equal. For exits ``ppid`` is
    the parent the kernel reported. ``cmdline``/``comm``/``user`` come from
    enrichment and are ``None`` when the process was gone before they could
    be read.
    """

    ts: float
    event: str
    pid: int = 0
    tgid: int = 0
    ppid: int | None = None
    comm: str | None = None
    cmdline: list[str] | None = None
    user: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    core_dumped: bool = False
    lifetime: float | None = None
    count: int | None = None
    #: Set when ``lifetime`` counts from /proc's start time (clock ticks), not a kernel timestamp.
    lifetime_resolution: float | None = None
    # Extra detail per type; in JSON only when set.
    reason: str | None = None  # why a failed exit failed, in words (proctop.model.reasons)
    unit: str | None = None  # the systemd unit or container (proctop.model.units)
    exe: str | None = None
    uid: int | None = None
    ruid: int | None = None
    euid: int | None = None
    rgid: int | None = None
    egid: int | None = None
    tracer_pid: int | None = None
    parent_cmdline: list[str] | None = None
    parent_comm: str | None = None
    cpu: int | None = None

    @property
    def failed(self) -> bool:
        """An exit with a non-zero code or by a signal (what ``nonzero-exit`` passes)."""
        return self.event == "exit" and (bool(self.exit_code) or self.signal is not None)

    @property
    def command(self) -> str:
        """What to call the process in one line (see ``command_line``)."""
        return command_line(self.cmdline, self.comm)

    @property
    def status_text(self) -> str:
        """``exit 3``, ``SIGSEGV (core dumped)``, or empty for non-exit events."""
        if self.event != "exit":
            return ""
        if self.signal:
            return self.signal + (" (core dumped)" if self.core_dumped else "")
        return f"exit {self.exit_code}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every key in declaration order, optional keys only when set.

        Lists are copied, so the dict can be changed without changing the event.
        """
        d = self._fields()
        for key in _LIST_KEYS:
            if d.get(key) is not None:
                d[key] = list(d[key])
        return d

    def _fields(self) -> dict[str, Any]:
        # Not dataclasses.asdict(): its recursive deep copy was a quarter of the CPU
        # of `proctop --json --only all` under a fork+exec storm (bench/). One C-level
        # attrgetter + zip and deleting the unset optional keys: 2.7 us, the same as a
        # getattr per field (2.5 us, an exit event, timeit, load 1.6); what it saves is
        # the copies of the argv lists that to_dict makes for its callers.
        d = dict(zip(_FIELD_NAMES, _get_fields(self), strict=True))
        for key in [key for key in _OPTIONAL_KEYS if d[key] is None]:
            del d[key]
        if self.event == "exit":
            # Derived, for jq: under --only all a failure is not just `event == "exit"`, and
            # `exit_code != 0` misses deaths by signal (exit_code null). from_dict ignores it.
            d["failed"] = self.failed
        return d

    def to_line(self) -> bytes:
        """One JSON Lines record, newline included (see ``encode_line``)."""
        if not (math.isfinite(self.ts) and (self.lifetime is None or math.isfinite(self.lifetime))):
            raise ValueError("an event time is not a finite number")  # strict RFC 8259: never NaN
        return encode_line(self._fields())

    def to_json(self) -> str:
        # ASCII: argv may hold undecodable bytes. Strict RFC 8259: a NaN would raise, never be written.
        return self.to_line()[:-1].decode("ascii")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """Build from a parsed JSON object; raises ``ValueError`` naming what is wrong.

        Captures are untrusted (they arrive attached to bug reports), so every
        key gets its type *and* its range: what the kernel can report, finite,
        never negative where a count or an id is meant. An unknown key is ignored.
        """
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        kind = d.get("event")
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event {_short(kind)}")
        ts = d.get("ts")
        if not _is_number(ts) or not TS_RANGE[0] <= ts <= TS_RANGE[1]:  # False for NaN too
            low, high = TS_RANGE
            raise ValueError(f"'ts' must be a number from {low} to {high} (epoch seconds), got {_short(ts)}")
        kwargs: dict[str, Any] = {}
        for name, value in d.items():
            spec = _SPECS.get(name)
            if spec is None:  # ts, event, or a key this version does not know
                continue
            types, nullable, bounds = spec
            if value is None:
                if not nullable:
                    raise ValueError(f"{name!r} has the wrong type")
            elif type(value) not in types:  # exact types, as json makes them: True is no int here
                raise ValueError(f"{name!r} has the wrong type")
            elif bounds is not None:
                if not bounds[0] <= value <= bounds[1]:  # False for NaN too
                    raise ValueError(f"{name!r} must be from {bounds[0]} to {bounds[1]}, got {_short(value)}")
            elif types is _LIST and not all(type(a) is str for a in value):
                raise ValueError(f"{name!r} must be a list of strings")
            kwargs[name] = value
        return cls(ts=float(ts), event=kind, **kwargs)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    """A value for an error message: its repr, cut (a capture can hold a 1 MiB string)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: Accepted ``ts``: the epoch up to 2106 (an unsigned 32-bit seconds count), as any real capture.
TS_RANGE = (0, 2**32)
_PID = (0, 2**31 - 1)  # pid_t
_ID = (0, 2**32 - 1)  # uid_t/gid_t (2**32 - 1 is the kernel's "no change")
#: Range of every numeric key but ``ts`` (see ``from_dict``).
_RANGES: dict[str, tuple[int, int]] = {
    "pid": _PID,
    "tgid": _PID,
    "ppid": _PID,
    "tracer_pid": _PID,
    "exit_code": (0, 255),  # a normal exit's status byte (decode_wait_status)
    "lifetime": (0, 2**32),
    "lifetime_resolution": (0, 1),
    "count": (0, 2**63 - 1),
    "uid": _ID,
    "ruid": _ID,
    "euid": _ID,
    "rgid": _ID,
    "egid": _ID,
    "cpu": _PID,
}


_OPTIONAL_KEYS = (
    "lifetime_resolution",
    "reason",
    "unit",
    "exe",
    "uid",
    "ruid",
    "euid",
    "rgid",
    "egid",
    "tracer_pid",
    "parent_cmdline",
    "parent_comm",
    "cpu",
    "count",
)

_INT = (int,)
_LIST = (list,)
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "pid": (_INT, False),
    "tgid": (_INT, False),
    "ppid": (_INT, True),
    "comm": ((str,), True),
    "cmdline": (_LIST, True),
    "user": ((str,), True),
    "exit_code": (_INT, True),
    "signal": ((str,), True),
    "core_dumped": ((bool,), False),
    "lifetime": ((int, float), True),
    "count": (_INT, True),
    "lifetime_resolution": ((int, float), True),
    "reason": ((str,), True),
    "unit": ((str,), True),
    "exe": ((str,), True),
    "uid": (_INT, True),
    "ruid": (_INT, True),
    "euid": (_INT, True),
    "rgid": (_INT, True),
    "egid": (_INT, True),
    "tracer_pid": (_INT, True),
    "parent_cmdline": (_LIST, True),
    "parent_comm": ((str,), True),
    "cpu": (_INT, True),
}
assert set(_FIELD_TYPES) | {"ts", "event"} == {f.name for f in fields(Event)}
assert set(_RANGES) == {name for name, (types, _) in _FIELD_TYPES.items() if int in types}
#: What ``from_dict`` checks per key: (exact types, may be null, (low, high) or None).
_SPECS = {name: (types, nullable, _RANGES.get(name)) for name, (types, nullable) in _FIELD_TYPES.items()}

_FIELD_NAMES = tuple(f.name for f in fields(Event))  # declaration order: the JSON key order
_LIST_KEYS = ("cmdline", "parent_cmdline")
_get_fields = operator.attrgetter(*_FIELD_NAMES)
