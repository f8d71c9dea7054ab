"""The config file, ``$XDG_CONFIG_HOME/proctop/config.toml``: defaults a user sets once.

What htoprc and btop.conf are to those tools::

    theme = "dark"                      # a short or full theme name (--theme)
    events = "fork,exec,nonzero-exit"   # or a list; the --only vocabulary
    history = 100000                    # --history
    names = false                       # --names off: no exec/fork read for names alone
    [keys]                              # binding id = key string (Textual's keymap)
    pause = "z"
    quit = "q,ctrl+q"

Command-line options win over the file (``proctop.cli.options.build`` merges
the two into the run's one frozen ``Options``). The file is read with ``tomllib``
and checked whole before anything starts: a wrong file is one line naming the
file and the key, exit status 2 (``ConfigError``), never a half-applied config.
``events`` sets the kernel filter of a live run only: a replay still shows
everything it recorded unless ``--only`` says otherwise (README, "Using it").
The default path under a home we may not enter (``setpriv`` keeps HOME=/root)
is no config at all; a file named by ``--config`` must be readable.

``[keys]`` is read for its shape here (a binding id, a comma list of key
names), then ``options.build`` checks it against the table of keys (``proctop.sinks.ui.keys``:
the ids, and no key two live bindings share) in every mode, so ``--json``
refuses a bad ``[keys]`` as the UI does. The app applies it with Textual's
``App.set_keymap``.

The UI remembers the theme chosen in its command palette with ``save_theme``:
the one ``theme = ...`` line is rewritten in place, so the user's other
settings and comments stay, and the file is replaced atomically. Saving never
raises: a read-only or missing home is reported, not fatal.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proctop import safefile
from proctop.errors import ProctopError
from proctop.model.kinds import MaskError, parse_mask

#: The top-level keys a config file may have, and what each one is (for error messages).
KEYS = {
    "theme": "a theme name",
    "events": "an --only event list",
    "history": "a whole number of rows",
    "names": "true or false (--names on/off)",
    "keys": "a table of binding id = key string",
}

#: The largest --history / history: rows of ~1 KiB each in the UI, so 10 GB is already too many.
MAX_HISTORY = 10_000_000
#: Rows the UI keeps when neither --history nor the file says.
DEFAULT_HISTORY = 100_000

#: A config file is a few lines; anything this big is a mistake (``--config /dev/zero``).
MAX_SIZE = 1 << 20

#: Modes of what ``save_theme`` creates, whatever the umask (``umask 0`` must not make them
#: writable by everyone): a config file is no secret, and only its owner changes it.
NEW_FILE_MODE = 0o644
NEW_DIR_MODE = 0o755

#: Modifier prefixes of a Textual key string (``ctrl+shift+up``).
MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_KEY_NAME = re.compile(r"[A-Za-z0-9_]+")
_BINDING_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_THEME_LINE = re.compile(r"\s*theme\s*=")
_TABLE_LINE = re.compile(r"\s*\[")


class ConfigError(ProctopError):
    """The config file cannot be read or says something wrong (bad input: status 2)."""

    status = 2


@dataclass
class Config:
    """A config file's settings, checked; ``None`` where the file says nothing."""

    path: Path | None = None  # the file read, or None (no file, or --no-config)
    theme: str | None = None  # full theme name (``proctop-dark``), resolved
    events: str | None = None  # an --only specification, normalised to a comma list
    history: int | None = None
    names: bool | None = None
    keymap: dict[str, str] = field(default_factory=dict)


def default_path() -> Path | None:
    """``$XDG_CONFIG_HOME/proctop/config.toml``, else ``~/.config/proctop/config.toml``.

    The XDG spec says a relative ``XDG_CONFIG_HOME`` is to be ignored. None when
    there is no home to look in (no ``HOME`` and no passwd entry).
    """
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "proctop" / "config.toml"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        return None
    return home / ".config" / "proctop" / "config.toml"


def load(path: Path | None, *, required: bool = False) -> Config:
    """Read and check ``path``; a missing file is an empty config unless ``required`` (``--config``)."""
    if path is None:
        return Config()
    try:
        raw = _read_regular(path)
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        # The default path under a home that is not ours (setpriv, su without -, HOME=/root kept)
        # is no config of ours: run without one. A file named on the command line must be read.
        if required:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SIZE:
        raise ConfigError(f"config file {path}: larger than {MAX_SIZE // 1024} KiB, not a config file")
    import tomllib  # here, not at the top: most runs have no config file (and --json starts sooner)

    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses per nested array or table: 5,000 [ are a stack
        raise ConfigError(f"config file {path}: not valid TOML (nested too deeply)") from None
    config = parse(data, str(path))
    config.path = path
    return config


def _read_regular(path: Path) -> bytes:
    """The first ``MAX_SIZE + 1`` bytes of ``path``; ``ConfigError`` unless it is a regular file.

    Checked before it is opened, and again on what was opened, without blocking:
    a FIFO at the path (``--config FIFO``, or at the default path) blocked
    ``open`` for ever, and a device is no config file.
    """
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not stat.S_ISREG(mode):
        raise ConfigError(f"config file {path}: not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat
            raise ConfigError(f"config file {path}: not a regular file")
        return file.read(MAX_SIZE + 1)  # --config of a huge file must not fill memory


def parse(data: dict[str, Any], origin: str) -> Config:
    """Check a parsed config table; ``origin`` names the file in errors."""

    def fail(message: str) -> ConfigError:
        return ConfigError(f"config file {origin}: {message}")

    config = Config()
    for key in data:
        if key not in KEYS:
            raise fail(f"unknown key {key!r} (choose from: {', '.join(KEYS)})")
    if "theme" in data:
        config.theme = _theme(data["theme"], fail)
    if "events" in data:
        config.events = _events(data["events"], fail)
    if "history" in data:
        config.history = _history(data["history"], fail)
    if "names" in data:
        if not isinstance(data["names"], bool):
            raise fail(f"names must be true or false, got {_kind(data['names'])}")
        config.names = data["names"]
    if "keys" in data:
        config.keymap = _keymap(data["keys"], fail)
    return config


def _theme(value: object, fail: Any) -> str:
    from proctop.sinks.ui.themes import ThemeError, resolve_theme_name

    if not isinstance(value, str):
        raise fail(f"theme must be a string (a theme name), got {_kind(value)}")
    try:
        return resolve_theme_name(value)
    except ThemeError as exc:
        raise fail(f"theme: {exc}") from None


def _events(value: object, fail: Any) -> str:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        spec = ",".join(value)
    elif isinstance(value, str):
        spec = value
    else:
        raise fail(f"events must be a string or a list of strings (as --only takes), got {_kind(value)}")
    try:
        parse_mask(spec)
    except MaskError as exc:
        raise fail(f"events: {exc}") from None
    return ",".join(part.strip().lower() for part in spec.split(","))


def _history(value: object, fail: Any) -> int:
    if type(value) is not int:  # exact: TOML's true is no number of rows
        raise fail(f"history must be a whole number, got {_kind(value)}")
    if not 1 <= value <= MAX_HISTORY:
        raise fail(f"history must be from 1 to {MAX_HISTORY}, got {value}")
    return value


def _keymap(value: object, fail: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise fail(f"keys must be a table ([keys]), got {_kind(value)}")
    keymap = {}
    for binding_id, keys in value.items():
        if not _BINDING_ID.fullmatch(binding_id):
            raise fail(f"keys: {binding_id!r} is not a binding id (letters, digits, _ . -)")
        if not isinstance(keys, str):
            raise fail(f'keys.{binding_id} must be a key string such as "p" or "ctrl+p,f5", got {_kind(keys)}')
        parts = [part.strip() for part in keys.split(",")]
        for part in parts:
            if not _is_key(part):
                raise fail(f'keys.{binding_id}: {part!r} is not a key (examples: "p", "ctrl+p", "f5", "?")')
        keymap[binding_id] = ",".join(parts)
    return keymap


def _is_key(text: str) -> bool:
    """A Textual key string: modifiers joined by ``+`` to one printable character or a key name."""
    if len(text) == 1:
        return text.isprintable() and not text.isspace()
    *modifiers, name = text.split("+")
    if not all(modifier in MODIFIERS for modifier in modifiers):
        return False
    return bool(_KEY_NAME.fullmatch(name)) or (len(name) == 1 and name.isprintable() and not name.isspace())


def _kind(value: object) -> str:
    """What a TOML value is, in TOML's words, for an error message."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


# --- the command line ---------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--config PATH`` and ``--no-config``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--config",
        metavar="PATH",
        help="the config file to read (default: $XDG_CONFIG_HOME/proctop/config.toml, "
        "else ~/.config/proctop/config.toml)",
    )
    group.add_argument("--no-config", action="store_true", help="read no config file (nor save the theme in one)")


# --- saving the theme ---------------------------------------------------------


def save_theme(path: Path | None, theme: str) -> str | None:
    """Remember ``theme`` in the config file at ``path``; None when saved, else one line saying why not.

    Never raises: the UI calls it when the palette changes the theme, and a
    read-only or missing home must not end the session. The file's other
    settings and comments are kept (only the ``theme`` line is rewritten); a
    file that does not parse is left alone. Proctop's themes are written by
    their short name.
    """
    import tomllib

    from proctop.sinks.ui.themes import short_name

    if path is None:
        return "theme not saved: no config file (--no-config, or no home directory)"
    try:
        directory, name = _theme_target(path)
        dir_fd = safefile.open_directory(directory, NEW_DIR_MODE)
        try:
            old, mode = _read_old(dir_fd, name, path)
            data = tomllib.loads(old)
            new = _with_theme(old, data, short_name(theme))
            if new == old:
                return None
            _replace(dir_fd, name, new, mode)
        finally:
            os.close(dir_fd)
    except safefile.UnsafePathError as exc:
        return f"theme not saved: {exc}"
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"theme not saved in {path}: {reason}"
    except (tomllib.TOMLDecodeError, RecursionError):
        return f"theme not saved: config file {path} is not valid TOML"
    except ValueError as exc:  # a value _dump cannot write (a date, in a file edited meanwhile)
        return f"theme not saved in {path}: {exc}"
    return None


def _with_theme(text: str, data: dict[str, Any], theme: str) -> str:
    """``text`` with its top-level ``theme`` set to ``theme``, everything else as it was.

    Rewrites the one ``theme = ...`` line before the first table (or adds one at
    the top) and checks the result parses to the same settings with only the
    theme changed. A file where a line edit cannot be sure of that (a ``theme``
    hidden in a multi-line string, say) is written out whole instead: the
    settings are kept, the comments are not.
    """
    import tomllib

    line = f"theme = {_toml_string(theme)}\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    edited = None
    for number, old in enumerate(lines):
        if _TABLE_LINE.match(old):
            break
        if _THEME_LINE.match(old):
            edited = [*lines[:number], line, *lines[number + 1 :]]
            break
    if edited is None:
        edited = [line, *lines]
    new = "".join(edited)
    expected = {**data, "theme": theme}
    try:
        if tomllib.loads(new) == expected:
            return new
    except tomllib.TOMLDecodeError:
        pass
    return _dump(expected)


def _dump(data: dict[str, Any]) -> str:
    """The settings ``parse`` accepts, as TOML (strings, integers, lists of strings, one table)."""
    out = []
    tables = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            out.append(f"{_toml_key(key)} = {_toml_value(value)}\n")
    for name, table in tables:
        out.append(f"\n[{_toml_key(name)}]\n")
        out.extend(f"{_toml_key(key)} = {_toml_value(value)}\n" for key, value in table.items())
    return "".join(out)


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML has no ``\\/``."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _theme_target(path: Path) -> tuple[Path, str]:
    """The directory and file name the theme is written to: a symlinked config (dotfiles) stays
    a symlink and its target is written, but only a symlink of ours (or root's) is followed."""
    path = Path(os.path.abspath(path))
    safefile.check_symlinks(path)
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        is_link = False
    if is_link:
        path = Path(os.path.realpath(path))
        safefile.check_symlinks(path)
    return path.parent, path.name


def _read_old(dir_fd: int, name: str, shown: Path) -> tuple[str, int]:
    """The config's text ("" if new) and the mode to write it with; refuses what is not a
    regular file of ours (a device, a FIFO, a symlink swapped in, another user's file)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=dir_fd)
    except FileNotFoundError:
        return "", NEW_FILE_MODE
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EWOULDBLOCK):  # a symlink swapped in; a socket
            raise safefile.UnsafePathError(f"{shown} is not a regular file") from None
        raise
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise safefile.UnsafePathError(f"{shown} is not a regular file")
        if st.st_uid != os.geteuid():
            raise safefile.UnsafePathError(f"{shown} is owned by another user")
        raw = file.read(MAX_SIZE + 1)
    if len(raw) > MAX_SIZE:
        raise safefile.UnsafePathError(f"{shown} is larger than {MAX_SIZE // 1024} KiB, not a config file")
    return raw.decode("utf-8"), stat.S_IMODE(st.st_mode)


def _replace(dir_fd: int, name: str, text: str, mode: int) -> None:
    """Write ``name`` in ``dir_fd`` atomically: a new file beside it, flushed, renamed over it.

    A crash or a full disk leaves the old file whole; the mode of the old file
    is kept (a new one gets ``NEW_FILE_MODE``, whatever the umask).
    """
    import secrets

    temporary = f".config.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except OSError:
            pass
        raise
