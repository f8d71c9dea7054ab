"""The interface every event source offers to the UI and the JSON writer.

A source owns its I/O (a reader thread for the kernel, a file for replay).
Threads, the contract every source keeps and every consumer relies on:

* ``start``, ``close``: the thread that made the source (the CLI's main thread);
  ``close`` may also be called from another thread and is idempotent.
* ``poll`` and ``ancestry``: the consumer thread only (the UI's reader
  worker, or the ``--json``/``--summary``/``--record`` loop). Enrichment runs
  there and the process table (``proctop.model.proctable``) is its alone:
  the UI asks for an ancestry by handing the question to that thread.
* ``set_mask``, ``shows``, ``describe``, ``finished``, ``stats``,
  ``error``, ``command_status``: any thread (the UI's event loop
  calls them while the worker polls); they only read or write a word or send
  one message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Required, TypedDict

from proctop.model.events import Event


class SourceDescription(TypedDict, total=False):
    """What ``describe()`` returns: the ``--json`` header's source part, also read by the
    UI header, ``--summary`` and ``--metrics``. Every source names itself; the rest is per source.
    """

    source: Required[str]
    label: Required[str]
    kernel: str  # connector: the running kernel's release
    kernel_filters: bool  # connector: the kernel applies the mask (6.6+), not proctop
    rcvbuf: int  # connector: the socket's receive buffer in effect
    names: bool  # connector: exec (and fork) are read for names even when the mask lacks them
    reader: str  # connector: "c" (the compiled socket reader) or "python" (its twin)
    file: str  # replay: the capture read
    recorded_from: str | None  # replay: the source named in the capture's own header
    command: list[str]  # command tree: the watched command's argv


@dataclass
class SourceStats:
    """Counters shown in the UI header and the bench reports."""

    received: int = 0  # messages decoded
    delivered: int = 0  # events handed to the consumer
    lost: int = 0  # at least this many events lost: kernel overruns (ENOBUFS, one or more
    # events each) plus events dropped from our own full queue (exactly one each)
    malformed: int = 0  # messages that could not be decoded or did not come from the kernel (sender port 0)
    filtered: int = 0  # dropped by the user-space mask or as thread events
    names_only: int = 0  # taken for names only (fork/exec the mask lacks): never shown nor counted above
    by_type: dict[str, int] = field(default_factory=dict)


class Source(ABC):
    """Something that produces ``Event`` batches."""

    #: "native", "userspace", "kmod" or "replay".
    kind: str = "?"
    #: Human-readable name of the source for the header.
    label: str = "?"
    #: True when the events are a recording (a replay): the mask is then a view
    #: over events already delivered (``shows``), not a choice of what is sent.
    recorded: bool = False
    #: Set (one line) when the source failed and will deliver nothing more, or
    #: when a mask change could not be sent; shown in the header and by ``--json``.
    error: str | None = None

    def __init__(self, mask: int) -> None:
        self.mask = mask
        self._stats = SourceStats()
        #: Mask bits this source can deliver at all (the kmod may lack some).
        self.supported = 0xFFFFFFFF

    @abstractmethod
    def start(self) -> None:
        """Begin producing events (subscribe, start reader threads)."""

    @abstractmethod
    def poll(self, timeout: float) -> list[Event]:
        """Every event ready now, waiting at most ``timeout`` seconds for the first."""

    def set_mask(self, mask: int) -> None:
        """Change which events are delivered, without a gap."""
        self.mask = mask

    def shows(self, ev: Event) -> bool:
        """Whether the current mask shows ``ev``.

        Live sources are filtered by the kernel (or their reader), so all they
        deliver is shown. A replay delivers every recorded event and decides here.
        """
        return True

    @property
    def stats(self) -> SourceStats:
        """The counters, for the header and the bench: read by any thread, written by the source's own."""
        return self._stats

    def count_lost(self, count: int) -> None:
        """Events lost after the source (an output that could not keep up); the consumer thread's."""
        self._stats.lost += count

    @property
    def command_status(self) -> int | None:
        """With ``-- COMMAND``: the command's exit status once it ended, which proctop exits with.

        None for every source that watches no command of its own.
        """
        return None

    @property
    def finished(self) -> bool:
        """True when no event will ever come again (end of a replay)."""
        return False

    def close(self) -> None:  # noqa: B027 - sources without resources need nothing here
        """Release sockets and threads. Idempotent."""

    def describe(self) -> SourceDescription:
        """The first line of ``--json`` and the UI header's source part."""
        return {"source": self.kind, "label": self.label}

    def ancestry(self, ev: Event) -> list[tuple[int, str]]:
        """``[(pid, command), ...]``: the parent, grandparent, ... of ``ev``'s process, as known.

        For the UI's details panel; called on the consumer thread (see above),
        which owns the process table. The commands are raw (untrusted) text.
        A source that keeps no table knows nothing: ``[]``.
        """
        return []


class SourceDecorator(Source):
    """A source around another (``inner``): by default every question is the inner source's.

    ``CommandTree`` (only a command's tree) and ``Tee`` (every batch also to the
    sinks) override what they change; everything else, the counters, the error,
    the end, the ancestry, passes through here once rather than in each of them.
    """

    def __init__(self, inner: Source) -> None:
        super().__init__(inner.mask)
        self.inner = inner
        self.kind = inner.kind
        self.label = inner.label
        self.recorded = inner.recorded

    @property  # the inner source's error is this source's
    def error(self) -> str | None:
        return self.inner.error

    @error.setter
    def error(self, value: str | None) -> None:
        self.inner.error = value

    def start(self) -> None:
        self.inner.start()

    def poll(self, timeout: float) -> list[Event]:
        return self.inner.poll(timeout)

    def set_mask(self, mask: int) -> None:
        self.mask = mask
        self.inner.set_mask(mask)

    def shows(self, ev: Event) -> bool:
        return self.inner.shows(ev)

    @property
    def stats(self) -> SourceStats:
        """The inner source's counters: they are the ones that mean something."""
        return self.inner.stats

    def count_lost(self, count: int) -> None:
        self.inner.count_lost(count)

    @property
    def command_status(self) -> int | None:
        return self.inner.command_status

    @property
    def finished(self) -> bool:
        return self.inner.finished

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> SourceDescription:
        return self.inner.describe()

    def ancestry(self, ev: Event) -> list[tuple[int, str]]:
        return self.inner.ancestry(ev)
