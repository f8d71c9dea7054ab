"""The config file (theme, events, history, [keys]), theme names on the command line, and
saving the palette's theme: as the CLI really behaves, run as a subprocess where the
exit status and stderr are the point."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import REPO, proctop_cmd

from proctop.cli import config
from proctop.cli import main as cli
from proctop.cli.config import ConfigError, save_theme
from proctop.cli.options import Options
from proctop.model.kinds import DEFAULT_MASK, parse_mask

NEUTRAL = "/"  # run the installed proctop, not ./proctop from the source tree
SAMPLE = REPO / "tests" / "data" / "sample.jsonl"


def proctop(*args: str, xdg: Path | None = None, home: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")  # --help unwrapped
    if xdg is not None:
        env["XDG_CONFIG_HOME"] = str(xdg)
    if home is not None:
        env.pop("XDG_CONFIG_HOME", None)
        env["HOME"] = home
    return subprocess.run(proctop_cmd(*args), capture_output=True, text=True, cwd=NEUTRAL, env=env, timeout=60)


def write_config(xdg: Path, text: str) -> Path:
    path = xdg / "proctop" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def header(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[0])


def assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("proctop: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    assert proc.stdout == ""


# --- reading ------------------------------------------------------------------


@pytest.mark.kernel
def test_config_events_set_the_kernel_mask_and_the_command_line_wins(tmp_path):
    write_config(tmp_path, 'events = ["exec", "nonzero-exit"]\n')
    live = ("--json", "--duration", "0")
    assert header(proctop(*live, xdg=tmp_path))["mask"] == ["exec", "nonzero-exit"]
    assert header(proctop(*live, "--only", "fork", xdg=tmp_path))["mask"] == ["fork"]
    assert header(proctop(*live, "--no-config", xdg=tmp_path))["mask"] == ["fork", "exec", "nonzero-exit"]
    # a replay shows everything recorded unless --only says otherwise: the config's events are the live default
    assert header(proctop("--json", "--replay", str(SAMPLE), xdg=tmp_path))["mask"] == ["all"]


@pytest.mark.kernel
def test_config_option_reads_another_file_and_home_is_the_fallback(tmp_path):
    other = tmp_path / "elsewhere.toml"
    other.write_text('events = "exit"\n')
    assert header(proctop("--json", "--duration", "0", "--config", str(other)))["mask"] == ["exit"]
    # without XDG_CONFIG_HOME: ~/.config/proctop/config.toml
    write_config(tmp_path / ".config", 'events = "fork"\n')
    assert header(proctop("--json", "--duration", "0", home=str(tmp_path)))["mask"] == ["fork"]


@pytest.mark.kernel
def test_names_are_on_unless_the_file_or_the_command_line_turns_them_off(tmp_path):
    """The JSON header says which is in force; --names wins over the file."""
    off = write_config(tmp_path, "names = false\n")
    assert header(proctop("--json", "--duration", "0", "--no-config"))["names"] is True
    assert header(proctop("--json", "--duration", "0", "--config", str(off)))["names"] is False
    assert header(proctop("--json", "--duration", "0", "--config", str(off), "--names", "on"))["names"] is True
    assert header(proctop("--json", "--duration", "0", "--no-config", "--names", "off"))["names"] is False


def test_config_fills_what_the_command_line_left_unset(tmp_path):
    path = write_config(tmp_path, 'theme = "light"\nhistory = 5000\n[keys]\npause = "z"\nquit = "q, ctrl+q"\n')
    opts = cli.parse_options(["--config", str(path)])
    assert (opts.theme, opts.history, opts.mask) == ("proctop-light", 5000, DEFAULT_MASK)
    assert opts.keymap == {"pause": "z", "quit": "q,ctrl+q"}  # App.set_keymap's form
    assert opts.save_theme is not None and opts.config_path == path
    with pytest.raises(dataclasses.FrozenInstanceError):  # built once: nothing changes it afterwards
        opts.history = 1  # type: ignore[misc]

    opts = cli.parse_options(["--config", str(path), "--theme", "cb-safe", "--history", "7"])
    assert (opts.theme, opts.history) == ("proctop-cb-safe", 7)

    opts = cli.parse_options(["--no-config"])
    assert (opts.theme, opts.history, opts.keymap, opts.save_theme) == (None, cli.DEFAULT_HISTORY, {}, None)
    assert opts == Options(), "a bare run's options are the defaults"


def test_no_config_file_is_no_error(tmp_path):
    assert config.load(tmp_path / "absent.toml") == config.Config()
    with pytest.raises(ConfigError, match="No such file"):  # but --config PATH must exist
        config.load(tmp_path / "absent.toml", required=True)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('theme = "dark\n', ["not valid TOML", "line 1"]),
        ("colour = 1\n", ["unknown key 'colour'", "choose from: theme, events, history, names, keys"]),
        ("[theme]\nname = 'dark'\n", ["theme must be a string", "a table"]),
        ("theme = 3\n", ["theme must be a string", "an integer"]),
        ('theme = "nope"\n', ["theme: unknown theme 'nope'", "dark"]),
        ('events = "fork,forks"\n', ["events: unknown event 'forks'"]),
        ("events = 5\n", ["events must be a string or a list"]),
        ('events = ["fork", 1]\n', ["events must be a string or a list"]),
        ('events = ""\n', ["events: empty event list"]),
        ('history = "lots"\n', ["history must be a whole number, got a string"]),
        ("history = true\n", ["history must be a whole number, got a boolean"]),
        ("history = 0\n", ["history must be from 1 to 10000000, got 0"]),
        ('names = "no"\n', ["names must be true or false, got a string"]),
        ('keys = "p"\n', ["keys must be a table"]),
        ("[keys]\npause = 1\n", ["keys.pause must be a key string"]),
        ('[keys]\npause = "ctrl+"\n', ["keys.pause: 'ctrl+' is not a key"]),
        ('[keys]\npause = "p,,q"\n', ["keys.pause: '' is not a key"]),
        ('[keys]\npause = "hyperspace+p"\n', ["keys.pause: 'hyperspace+p' is not a key"]),
        ('[keys]\n"pau se" = "p"\n', ["keys: 'pau se' is not a binding id"]),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_key_exit_2(tmp_path, text, needles):
    path = write_config(tmp_path, text)
    assert_one_line(proctop("--json", xdg=tmp_path), f"proctop: config file {path}: ", *needles)


@pytest.mark.parametrize("mode", [["--summary", "--replay", str(SAMPLE)], ["--record", "/nonexistent/rec"], []])
def test_a_bad_file_is_refused_in_every_mode(tmp_path, mode):
    """Before anything starts: the UI (no terminal here) says so before it looks for one."""
    path = write_config(tmp_path, "history = -1\n")
    assert_one_line(proctop(*mode, xdg=tmp_path), f"proctop: config file {path}: history must be from 1")


def test_unreadable_files_are_one_line(tmp_path):
    path = write_config(tmp_path, "")
    path.write_bytes(b'theme = "\xff"\n')
    assert_one_line(proctop("--json", xdg=tmp_path), f"config file {path}: not UTF-8")
    path.unlink()
    path.mkdir()  # a directory where the file should be
    assert_one_line(proctop("--json", xdg=tmp_path), f"cannot read config file {path}: Is a directory")
    assert_one_line(proctop("--json", "--config", str(tmp_path / "nope.toml")), "nope.toml: No such file")
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as f:
        f.truncate(2 << 20)
    assert_one_line(proctop("--json", "--config", str(huge)), f"config file {huge}: larger than 1024 KiB")
    assert_one_line(proctop("--config", "x", "--no-config"), "not allowed with argument")


def test_a_default_path_nobody_may_read_is_no_config(tmp_path, nonroot_child, monkeypatch):
    """``setpriv`` keeps HOME=/root: uid 65534 cannot reach root's config, and runs without one
    rather than refusing to start (the tmux tests run proctop so). A file it is told to read with
    --config is another matter. (In a forked child: nobody cannot run the venv under /root.)"""
    path = write_config(tmp_path, 'events = "exit"\n')  # under tmp_path, which nobody cannot enter

    def as_nobody():
        os.environ["XDG_CONFIG_HOME"] = str(tmp_path)
        default = cli.parse_options(["--json"])
        try:
            cli.parse_options(["--config", str(path)])
        except ConfigError as exc:
            return default.mask == DEFAULT_MASK, str(exc)
        return None

    assert nonroot_child(as_nobody) == (True, f"cannot read config file {path}: Permission denied")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert cli.parse_options(["--json"]).mask == parse_mask("exit")  # root reads it


# --- theme names ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "--replay", str(SAMPLE)],
        ["--json"],
        ["--summary", "--replay", str(SAMPLE)],
        ["--record", "/nonexistent/rec"],
        ["--replay", str(SAMPLE)],  # the UI: refused before it looks for a terminal
    ],
)
def test_theme_is_checked_in_every_mode(args):
    proc = proctop("--theme", "nope", *args)
    assert_one_line(proc, "unknown theme 'nope' (choose from: cb-safe, dark, high-contrast, light")


@pytest.mark.parametrize("name", ["dark", "proctop-dark", "cb-safe", "high-contrast", "nord"])
def test_short_full_and_textual_theme_names_are_accepted(name):
    proc = proctop("--theme", name, "--json", "--replay", str(SAMPLE))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_help_lists_the_themes_by_short_name():
    proc = proctop("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "UI theme: cb-safe, dark, high-contrast, light (default dark)" in text
    assert "themes/" not in text
    assert "--config PATH" in text and "--no-config" in text


# --- saving the theme -------------------------------------------------------------


def test_save_theme_creates_the_file_and_its_directories(tmp_path):
    path = tmp_path / "a" / "proctop" / "config.toml"
    assert save_theme(path, "proctop-light") is None
    assert path.read_text() == 'theme = "light"\n'
    assert config.load(path).theme == "proctop-light"
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temporary file left behind
    assert stat.S_IMODE(path.stat().st_mode) == config.NEW_FILE_MODE


@pytest.mark.parametrize("mask", [0, 0o077])
def test_save_theme_modes_do_not_depend_on_the_umask(tmp_path, mask):
    """Under ``umask 0`` a created directory was 0777 and the file 0666: now fixed modes."""
    path = tmp_path / "a" / "proctop" / "config.toml"
    old = os.umask(mask)
    try:
        assert save_theme(path, "proctop-light") is None
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == config.NEW_FILE_MODE
    for directory in (path.parent, path.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == config.NEW_DIR_MODE


def test_save_theme_never_replaces_a_device_file(tmp_path):
    """Issue 23 item 1: ``mknod fn c 1 3; proctop --config fn``, palette -> light made fn a 0666 file."""
    device = tmp_path / "fn"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    problem = save_theme(device, "proctop-light")
    assert problem == f"theme not saved: {device} is not a regular file"
    assert stat.S_ISCHR(device.lstat().st_mode)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert save_theme(fifo, "proctop-light") == f"theme not saved: {fifo} is not a regular file"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    link = tmp_path / "link.toml"  # a symlink to a device is the device
    link.symlink_to(device)
    assert "is not a regular file" in (save_theme(link, "proctop-light") or "")
    assert stat.S_ISCHR(device.lstat().st_mode) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "fn", "link.toml"]  # no temporary left


def test_save_theme_refuses_a_directory_another_user_controls(tmp_path):
    """A world-writable directory without the sticky bit, or one owned by another user: not written."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    problem = save_theme(shared / "config.toml", "proctop-light")
    assert problem is not None and "writable by other users" in problem, problem
    assert list(shared.iterdir()) == []
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    problem = save_theme(theirs / "config.toml", "proctop-light")
    assert problem is not None and "owned by another user" in problem, problem
    assert list(theirs.iterdir()) == []


def test_save_theme_refuses_a_symlink_another_user_planted(tmp_path):
    """A symlink is followed only when it is the user's own (dotfiles), never another user's."""
    target = tmp_path / "victim"
    target.write_text("precious\n")
    home = tmp_path / "home"
    home.mkdir()
    link = home / "config.toml"
    link.symlink_to(target)
    os.lchown(link, 65534, 65534)
    problem = save_theme(link, "proctop-light")
    assert problem is not None and "owned by another user" in problem, problem
    assert target.read_text() == "precious\n" and link.is_symlink()


# --- reading what is not a regular file --------------------------------------------


def test_config_fifo_is_refused_at_once(tmp_path):
    """Issue 23 item 13: ``--config FIFO`` blocked for ever (also at the default XDG path)."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    proc = proctop("--json", "--replay", str(SAMPLE), "--config", str(fifo))
    assert_one_line(proc, f"config file {fifo}: not a regular file")
    xdg = tmp_path / "xdg"
    (xdg / "proctop").mkdir(parents=True)
    os.mkfifo(xdg / "proctop" / "config.toml")
    proc = proctop("--json", "--replay", str(SAMPLE), xdg=xdg)
    assert_one_line(proc, "config.toml: not a regular file")


def test_config_device_is_refused(tmp_path):
    proc = proctop("--json", "--replay", str(SAMPLE), "--config", "/dev/zero")
    assert_one_line(proc, "config file /dev/zero: not a regular file")


def test_save_theme_keeps_every_other_setting_and_comment(tmp_path):
    original = (
        "# my proctop\n"
        'events = ["fork", "exec"]  # no exits\n'
        'theme = "dark"   # was dark\n'
        "history = 500\n"
        "\n"
        "[keys]\n"
        'pause = "p"\n'
        'theme = "t"  # a binding id, not the top-level theme\n'
    )
    path = write_config(tmp_path, original)
    path.chmod(0o600)
    assert save_theme(path, "nord") is None
    assert path.read_text() == original.replace('theme = "dark"   # was dark\n', 'theme = "nord"\n')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a private file stays private
    read = config.load(path)
    assert (read.theme, read.events, read.history) == ("nord", "fork,exec", 500)
    # no theme line yet: one is added at the top, before any table
    path.write_text('[keys]\npause = "p"\n')
    assert save_theme(path, "proctop-high-contrast") is None
    assert path.read_text() == 'theme = "high-contrast"\n[keys]\npause = "p"\n'


def test_save_theme_writes_through_a_symlink(tmp_path):
    dotfiles = tmp_path / "dotfiles" / "proctop.toml"
    dotfiles.parent.mkdir()
    dotfiles.write_text("history = 9\n")
    link = tmp_path / "proctop" / "config.toml"
    link.parent.mkdir()
    link.symlink_to(dotfiles)
    assert save_theme(link, "proctop-light") is None
    assert link.is_symlink() and dotfiles.read_text() == 'theme = "light"\nhistory = 9\n'


def test_save_theme_rewrites_whole_when_a_line_edit_cannot_be_sure(tmp_path):
    """A ``theme =`` line inside a multi-line string must not be taken for the setting."""
    path = write_config(tmp_path, 'events = """fork,\ntheme = "x",\nexec"""\n')
    assert save_theme(path, "proctop-light") is None
    assert tomllib_load(path) == {"events": 'fork,\ntheme = "x",\nexec', "theme": "light"}


def tomllib_load(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def test_save_theme_never_raises(tmp_path, nonroot_child):
    broken = write_config(tmp_path, "theme = \n")
    assert save_theme(broken, "proctop-light") == f"theme not saved: config file {broken} is not valid TOML"
    assert broken.read_text() == "theme = \n"  # left alone
    file_as_dir = tmp_path / "plain-file"
    file_as_dir.write_text("")
    problem = save_theme(file_as_dir / "config.toml", "proctop-light")
    assert problem == f"theme not saved in {file_as_dir / 'config.toml'}: Not a directory"
    assert save_theme(None, "proctop-light") is not None

    # as uid 65534: a home that does not exist, and a directory it may read but not write
    read_only = Path(tempfile.mkdtemp(prefix="proctop-ro-"))  # not under tmp_path: nobody cannot reach that
    try:
        read_only.chmod(0o755)
        (read_only / "config.toml").write_text('theme = "dark"\n')

        def as_nobody():
            return (
                save_theme(Path("/nonexistent/.config/proctop/config.toml"), "proctop-light"),
                save_theme(read_only / "config.toml", "proctop-light"),
            )

        missing_home, denied = nonroot_child(as_nobody)
        assert (read_only / "config.toml").read_text() == 'theme = "dark"\n'
        assert os.listdir(read_only) == ["config.toml"]
    finally:
        shutil.rmtree(read_only)
    assert missing_home.startswith("theme not saved in /nonexistent/.config/proctop/config.toml: ")
    # root's file is not replaced by nobody's (a rename would have needed write access anyway)
    assert denied == f"theme not saved: {read_only / 'config.toml'} is owned by another user"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[keys]\nnope = "p"\n', "[keys] unknown key binding id 'nope'; choose from board, board-group,"),
        ('[keys]\npuase = "p"\n', "unknown key binding id 'puase' (did you mean 'pause'?); choose from "),
        ('[keys]\npause = "p"\n', "key 'p' is also toggle-ptrace's"),  # would silently steal ptrace's toggle
    ],
)
@pytest.mark.parametrize("mode", [[], ["--json"], ["--summary"], ["--record", "/nonexistent"]], ids=" ".join)
def test_every_mode_checks_the_keymap_against_the_bindings_before_it_starts(tmp_path, text, needle, mode):
    """The UI (no terminal here) and every headless mode refuse a [keys] table the bindings cannot take: one
    line, status 2, before anything else is looked at (a terminal, the kernel, the record directory)."""
    path = write_config(tmp_path, text)
    assert_one_line(proctop(*mode, xdg=tmp_path), f"proctop: config file {path}: ", needle)
