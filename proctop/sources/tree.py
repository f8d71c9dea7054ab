"""``proctop -- CMD``: one command and its descendants, for CI jobs and builds.

The command is started after the kernel subscription, so its first fork is
already seen, and as the user would have run it: at the priority proctop had
before the source raised its own, with no signal blocked, in a process group of
its own, which proctop's end (a signal, ``q``, or the command's own end) ends
too; every process forked by a member becomes a member (followed by
fork events, not by parentage in /proc, so a daemon that double-forks and is
reparented to init stays followed). Exit events take members out again, so a
reused pid is never mistaken for one. The source underneath is asked for
forks, execs (the names) and every exit, whatever the user's mask; the
user's mask then decides what is shown.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from typing import IO, TYPE_CHECKING, TypedDict

from proctop.errors import ProctopError
from proctop.kernel.protocol import PROC_EVENT_EXEC, PROC_EVENT_EXIT, PROC_EVENT_FORK
from proctop.model.events import Event
from proctop.model.kinds import event_passes
from proctop.sources.base import Source, SourceDecorator, SourceDescription

if TYPE_CHECKING:  # the annotation only: the inner source owns the enricher, if it has one
    pass

#: What following a tree needs from the kernel, whatever is shown.
FOLLOW = PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_EXIT

#: Seconds to wait for the command's own exit event after it was reaped.
_EXIT_GRACE = 1.0


#: Seconds the tree gets after SIGTERM before SIGKILL, at proctop's end.
_TERM_GRACE = 2.0


def _nice() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:
        return 0


def _as_the_user_would(nice: int) -> None:
    """In the child, before exec: the priority proctop had before it raised its own, and no
    signal blocked (the process group is ``Popen(process_group=0)``'s). Async-signal-safe
    system calls only: the parent has threads."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # the group is empty, or only a setuid member is left
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class CommandError(ProctopError):
    """The command could not be started: 127 not found, 126 not executable (as a shell says)."""


class _Streams(TypedDict):
    """The command's standard streams, as ``subprocess.Popen`` takes them."""

    stdin: int | IO[bytes] | None
    stdout: int | IO[bytes] | None
    stderr: int | IO[bytes] | None


class CommandTree(SourceDecorator):
    """The events of ``argv`` and its descendants; ``status`` is the command's exit status."""

    def __init__(
        self,
        inner: Source,
        argv: list[str],
        *,
        stdout: int | IO[bytes] | None = None,
        stdin: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
    ) -> None:
        super().__init__(inner)
        self.argv = argv
        self.label = f"{inner.label}; watching: {' '.join(argv)}"
        self.supported = inner.supported
        self.members: set[int] = set()
        self.proc: subprocess.Popen[bytes] | None = None
        self.status: int | None = None
        self._streams: _Streams = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        self._exit_seen = False
        self._reaped_at: float | None = None

    def start(self) -> None:
        # Read before the source starts: the connector raises its own priority (nice -10,
        # as root), and the command must run at the user's.
        nice = _nice()
        self.inner.set_mask(self.mask | FOLLOW)
        self.inner.start()
        try:
            self.proc = subprocess.Popen(
                self.argv, process_group=0, preexec_fn=functools.partial(_as_the_user_would, nice), **self._streams
            )
        except FileNotFoundError:
            self.inner.close()
            raise CommandError(f"{self.argv[0]}: command not found", status=127) from None
        except (PermissionError, IsADirectoryError, OSError) as exc:
            self.inner.close()
            raise CommandError(f"{self.argv[0]}: cannot run it: {exc.strerror}", status=126) from None
        self.members.add(self.proc.pid)

    def set_mask(self, mask: int) -> None:
        self.mask = mask
        self.inner.set_mask(mask | FOLLOW)

    def poll(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        members = self.members
        root = self.proc.pid if self.proc else 0
        for ev in self.inner.poll(timeout):
            if ev.event == "lost":
                out.append(ev)
                continue
            pid = ev.tgid or ev.pid
            if ev.event == "fork" and ev.ppid in members:
                members.add(pid)
            if pid not in members:
                continue
            if ev.event == "exit" and ev.pid == ev.tgid:
                members.discard(pid)
                if pid == root:
                    self._exit_seen = True
            if event_passes(self.mask, ev):
                out.append(ev)
        self._check_command()
        return out

    def _check_command(self) -> None:
        if self.proc is None or self._reaped_at is not None:
            return
        code = self.proc.poll()
        if code is not None:
            self.status = 128 - code if code < 0 else code  # a death by signal N reads 128+N, as in a shell
            self._reaped_at = time.monotonic()

    @property
    def command_status(self) -> int | None:
        return self.status

    @property
    def finished(self) -> bool:
        """The command has exited and its exit event was read (or a second passed: events may be lost)."""
        if self.inner.finished:
            return True
        if self._reaped_at is None:
            return False
        return self._exit_seen or time.monotonic() - self._reaped_at > _EXIT_GRACE

    def close(self) -> None:
        """End the tree proctop started (its process group), then the source.

        The command's own process group holds it and every descendant that did
        not leave it: SIGTERM to the group, SIGKILL after ``_TERM_GRACE``. Sent
        also when the command already ended on its own (``sh -c 'sleep 301 &'``
        leaves a sleep behind): proctop's end is the tree's end.
        """
        proc = self.proc
        if proc is not None:
            running = proc.poll() is None
            _signal_group(proc.pid, signal.SIGTERM)  # proctop ends first (a signal, q): the tree gets the same word
            if running:
                try:
                    proc.wait(timeout=_TERM_GRACE)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
                self._check_command()
            if _group_alive(proc.pid):
                deadline = time.monotonic() + _TERM_GRACE
                while _group_alive(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                _signal_group(proc.pid, signal.SIGKILL)
        self.inner.close()

    def describe(self) -> SourceDescription:
        return {**self.inner.describe(), "command": list(self.argv)}
