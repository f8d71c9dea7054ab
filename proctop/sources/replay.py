"""Events read back from a JSON Lines capture written by ``proctop --json``.

For demos, bug reports and deterministic UI tests. The whole file is read and
validated up front, so a malformed line is reported before anything is shown.
"""

from __future__ import annotations

import json
from pathlib import Path

from proctop.kernel.probe import SOURCE_LABELS
from proctop.kernel.protocol import MASK_BITS, PROC_EVENT_EXIT, mask_accepts
from proctop.model.events import Event
from proctop.sources.base import Source


class ReplayError(Exception):
    """The capture cannot be read; the message names the file and line."""

    status = 2


def load_capture(path: str | Path) -> tuple[dict, list[Event]]:
    """The capture's header (``{}`` if it has none) and its events."""
    path = Path(path)
    from proctop.record import CaptureLines, RecordError  # a file (plain or gzip) or a --record DIR

    lines = CaptureLines(path)
    header: dict = {}
    events: list[Event] = []
    try:
        for raw in lines:
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReplayError(f"{lines.where()}: not valid JSON ({exc.msg})") from None
            if isinstance(obj, dict) and "proctop" in obj and "event" not in obj:
                header = header or obj  # a record directory has one per segment: keep the first
                continue
            try:
                events.append(Event.from_dict(obj))
            except ValueError as exc:
                raise ReplayError(f"{lines.where()}: {exc}") from None
    except RecordError as exc:
        raise ReplayError(str(exc)) from None
    except FileNotFoundError:
        raise ReplayError(f"replay file not found: {path}") from None
    except IsADirectoryError:
        raise ReplayError(f"replay file is a directory: {path}") from None
    except UnicodeDecodeError:
        raise ReplayError(f"replay file is not UTF-8 text: {lines.where()}") from None
    except OSError as exc:
        raise ReplayError(f"cannot read replay file {path}: {exc.strerror}") from None
    return header, events


class ReplaySource(Source):
    """Delivers a capture's events, in order, in batches."""

    kind = "replay"
    label = SOURCE_LABELS["replay"]

    def __init__(self, path: str | Path, mask: int, batch: int = 1000) -> None:
        super().__init__(mask)
        self.path = Path(path)
        self.header, self.events = load_capture(self.path)
        self.batch = batch
        self._pos = 0

    def start(self) -> None:
        self._pos = 0

    def poll(self, timeout: float) -> list[Event]:
        chunk = self.events[self._pos : self._pos + self.batch]
        self._pos += len(chunk)
        out = [ev for ev in chunk if event_passes(self.mask, ev)]
        self.stats.filtered += len(chunk) - len(out)
        self.stats.delivered += len(out)
        for ev in out:
            self.stats.by_type[ev.event] = self.stats.by_type.get(ev.event, 0) + 1
            if ev.event == "lost":
                self.stats.lost += ev.count or 1
        return out

    @property
    def finished(self) -> bool:
        return self._pos >= len(self.events)

    def describe(self) -> dict:
        recorded = self.header.get("source")
        return {"source": "replay", "label": self.label, "file": str(self.path), "recorded_from": recorded}


def event_passes(mask: int, ev: Event) -> bool:
    """The kernel's filter applied to a recorded event (``lost`` always passes)."""
    if ev.event == "lost":
        return True
    if not mask:
        return False
    what = PROC_EVENT_EXIT if ev.event == "exit" else MASK_BITS.get(ev.event, 0)
    return mask_accepts(mask, what, 1 if ev.failed else 0)
