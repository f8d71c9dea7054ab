"""Where proctop writes files (the config's theme, the recorder's segments), and only there.

proctop often runs as root, and the paths it writes to come from the command
line or the environment. So a file is written only when it is new or a
regular file of ours, never through a symlink that another user planted, and
never into a directory another user controls (owned by them, or writable by
everyone without the sticky bit): a theme change must not replace
``/dev/null``, and a recorder must not follow ``/tmp/rec -> /etc``.

The directory is opened once and everything inside it goes through its file
descriptor (``dir_fd=``, openat), so a directory renamed or swapped for a
symlink after the checks cannot redirect a write. Directories and files
proctop creates get fixed modes (``os.umask`` is not asked: ``umask 0`` made
the recorder's directory 0777).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafePathError(OSError):
    """A path proctop will not write through; ``str()`` is one line for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.strerror = message


def trusted_owner(uid: int) -> bool:
    """Ours, or root's (root's directories are as trusted as the system itself)."""
    return uid in (os.geteuid(), 0)


def check_owner(st: os.stat_result, name: object, *, what: str = "") -> None:
    """Raise ``UnsafePathError`` if another user controls ``st`` (a directory or a symlink)."""
    if not trusted_owner(st.st_uid):
        raise UnsafePathError(f"{what}{name} is owned by another user")
    if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
        raise UnsafePathError(f"{what}{name} is writable by other users")


def check_symlinks(path: Path) -> None:
    """Every existing component of ``path`` that is a symlink belongs to us or root.

    A symlink in a world-writable directory (``/tmp/rec -> /etc``) is another
    user's word about where proctop writes.
    """
    current = Path(path.anchor)
    for part in path.parts[1:]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            check_owner(st, current, what="symlink ")


def open_directory(path: str | Path, mode: int) -> int:
    """A file descriptor of directory ``path``, created (with its parents) with ``mode`` if missing.

    Raises ``UnsafePathError`` where another user controls the path (see the
    module docstring) and ``OSError`` as ``os.open`` does otherwise.
    """
    path = Path(os.path.abspath(path))
    check_symlinks(path)
    missing = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:  # made meanwhile: checked below like any other
            continue
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, mode)  # the umask took bits away
        finally:
            os.close(fd)
    check_symlinks(path)  # again: a component made meanwhile
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        check_owner(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return fd
