"""Why a process failed, in a few words, when it can be known.

Only what the status or the system proves is said: 126 and 127 are what
shells and ``execvp`` wrappers return when a command cannot run or is not
found; 128+N is a shell reporting that its child died of signal N; a SIGKILL
is called the OOM killer's only with evidence (the kernel log where readable,
else a rise of the cgroup's ``oom_kill`` count); a core dump says where the
core went, from ``/proc/sys/kernel/core_pattern``.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import signal
from collections import deque
from pathlib import Path

from proctop.model.events import Event
from proctop.model.units import cgroup_paths

NOT_EXECUTABLE = 126
NOT_FOUND = 127
SHELL_SIGNAL_BASE = 128


def exit_reason(ev: Event, *, oom: bool = False, core: str | None = None) -> str | None:
    """The reason of a failed exit in words, or None when nothing can be said."""
    if not ev.failed:
        return None
    if ev.signal:
        if ev.signal == "SIGKILL" and oom:
            return "killed by the OOM killer"
        text = f"killed by {ev.signal}"
        description = _describe(ev.signal)
        if description:
            text += f" ({description})"
        if ev.core_dumped:
            text += f", core dumped: {core}" if core else ", core dumped"
        return text
    code = ev.exit_code or 0
    if code == NOT_EXECUTABLE:
        return "not executable or permission denied (126)"
    if code == NOT_FOUND:
        return "command not found (127)"
    if SHELL_SIGNAL_BASE < code <= SHELL_SIGNAL_BASE + 64:
        from proctop.model.events import signal_name

        sig = code - SHELL_SIGNAL_BASE
        return f"a child died of {signal_name(sig)} (shell status 128+{sig})"
    return None


def _describe(name: str) -> str | None:
    try:
        number = signal.Signals[name]
    except KeyError:
        return None
    text = signal.strsignal(number)
    return text.lower() if text else None


def core_location(pattern: str, pid: int, comm: str | None, uses_pid: bool = False) -> str:
    """Where a core of ``pid`` went under ``core_pattern`` (``core(5)``), for a person to find it."""
    pattern = pattern.strip()
    if pattern.startswith("|"):
        program = os.path.basename(pattern[1:].split()[0]) if pattern[1:].split() else "?"
        if "systemd-coredump" in program:
            return f"coredumpctl info {pid}"
        if "apport" in program:
            return "apport, /var/crash"
        return f"piped to {program}"
    values = {"p": str(pid), "P": str(pid), "e": comm or "?", "%": "%"}
    name = re.sub(r"%(.)", lambda m: values.get(m[1], m[0]), pattern)
    if uses_pid and "%p" not in pattern:
        name += f".{pid}"
    return name if name.startswith("/") else f"{name} in its working directory"


class SystemFacts:
    """What the reasons need from the system, read lazily and cheaply.

    The kernel log (``/dev/kmsg``, root or ``dmesg_restrict=0``) is opened at
    its end and read only when a SIGKILL exit asks, so the cost is paid per
    SIGKILL, not per event. Without it, a cgroup whose ``oom_kill`` count
    rose since it was first seen (at exec) is the evidence.
    """

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._kmsg: int | None = self._open_kmsg()
        self._oom_pids: deque[int] = deque(maxlen=1024)
        self._oom_counts: dict[str, int] = {}  # memory cgroup file -> oom_kill count last read

    @staticmethod
    def _open_kmsg() -> int | None:
        try:
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            os.lseek(fd, 0, os.SEEK_END)
        except OSError:
            os.close(fd)
            return None
        return fd

    def close(self) -> None:
        if self._kmsg is not None:
            os.close(self._kmsg)
            self._kmsg = None

    def core_location(self, pid: int, comm: str | None) -> str | None:
        try:
            pattern = Path(self.proc, "sys/kernel/core_pattern").read_text()
            uses_pid = Path(self.proc, "sys/kernel/core_uses_pid").read_text().strip() == "1"
        except OSError:
            return None
        return core_location(pattern, pid, comm, uses_pid)

    def note_cgroup(self, cgroup_text: str | None) -> None:
        """Remember the ``oom_kill`` count of a memory cgroup the first time it is seen."""
        path = _oom_file(cgroup_text)
        if path is not None and path not in self._oom_counts:
            count = _read_oom_kills(path)
            if count is not None:
                if len(self._oom_counts) >= 4096:  # bounded: a storm of cgroups forgets the oldest
                    self._oom_counts.pop(next(iter(self._oom_counts)))
                self._oom_counts[path] = count

    def killed_by_oom(self, pid: int, cgroup_text: str | None) -> bool:
        """Evidence that the SIGKILL of ``pid`` came from the OOM killer."""
        self._read_kmsg()
        if pid in self._oom_pids:
            return True
        path = _oom_file(cgroup_text)
        if path is None or path not in self._oom_counts:
            return False
        count = _read_oom_kills(path)
        if count is None:
            return False
        rose = count > self._oom_counts[path]
        self._oom_counts[path] = count
        return rose

    def _read_kmsg(self) -> None:
        fd = self._kmsg
        while fd is not None:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten before we read them: go on
                    continue
                self.close()
                return
            if not record:
                return
            match = _OOM_LINE.search(record)
            if match:
                self._oom_pids.append(int(match[1]))


_OOM_LINE = re.compile(rb"Killed process (\d+) \(")


@functools.lru_cache(maxsize=4096)  # asked at every exec (note_cgroup); a machine has few distinct cgroups
def _oom_file(cgroup_text: str | None) -> str | None:
    """The file whose ``oom_kill`` counts OOM kills in the process's memory cgroup (v2, else v1)."""
    if not cgroup_text:
        return None
    paths = cgroup_paths(cgroup_text)
    if "memory" in paths:
        return f"/sys/fs/cgroup/memory{paths['memory'].rstrip('/')}/memory.oom_control"
    if "" in paths:
        return f"/sys/fs/cgroup{paths[''].rstrip('/')}/memory.events"
    return None


def _read_oom_kills(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
