"""Shell completions and the man page: generated from the parser, and working in the real tools.

Each shell loads the script ``proctop --completion SHELL`` prints and is asked
what it completes; ``man`` and ``groff`` render the page. bash, zsh, fish,
man-db and groff-base are installed by .ci/run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from helpers import need_tool, proctop_cmd

from proctop.cli.main import build_parser
from proctop.cli.manual import SHELLS, manpage
from proctop.model.kinds import MASK_NAMES
from proctop.sinks.ui.keys import IDS

ROOT = Path(__file__).resolve().parent.parent.parent
NEUTRAL = "/"  # run the installed proctop, not ./proctop from the source tree


def long_options() -> set[str]:
    return {opt for action in build_parser()._actions for opt in action.option_strings if opt.startswith("--")}


def printed(*args: str) -> str:
    proc = subprocess.run(proctop_cmd(*args), capture_output=True, text=True, cwd=NEUTRAL, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def script_file(tmp_path: Path, shell: str) -> Path:
    path = tmp_path / f"proctop.{shell}"
    path.write_text(printed("--completion", shell))
    return path


def tool(name: str) -> str:
    return need_tool(name)


def run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": "/"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_option_is_a_known_shell_and_the_parser_lists_them():
    assert long_options() >= {"--completion", "--manpage", "--json", "--replay", "--only"}
    assert set(SHELLS) == {"bash", "zsh", "fish"}


def test_an_unknown_shell_is_one_line_and_exit_2():
    proc = subprocess.run(proctop_cmd("--completion", "tcsh"), capture_output=True, text=True, cwd=NEUTRAL)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "invalid choice: 'tcsh'" in proc.stderr


@pytest.mark.parametrize("option", [("--completion", "bash"), ("--manpage",)])
def test_a_reader_that_went_away_is_no_error(option):
    """``proctop --completion bash | head -1``: exit 0 and nothing on stderr, as for the other outputs."""
    r, w = os.pipe()
    os.close(r)  # gone before proctop writes
    try:
        proc = subprocess.run(
            proctop_cmd(*option), stdout=w, stderr=subprocess.PIPE, text=True, cwd=NEUTRAL, timeout=60
        )
    finally:
        os.close(w)
    assert (proc.returncode, proc.stderr) == (0, "")
    closed = subprocess.run(
        [*proctop_cmd(*option)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=NEUTRAL,
        timeout=60,
        text=True,
        preexec_fn=lambda: os.close(1),
    )
    assert (closed.returncode, closed.stderr) == (0, "")


def test_bash_completes_every_option_and_the_choices(tmp_path):
    script = script_file(tmp_path, "bash")

    def complete(*words: str) -> set[str]:
        line = " ".join(f"'{w}'" for w in words)
        out = run(
            tool("bash"),
            "--norc",
            "-c",
            f'source "{script}"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE="${{COMP_WORDS[*]}}";'
            ' _shtab_proctop; printf "%s\\n" "${COMPREPLY[@]}"',
        )
        return set(out.split())

    registered = run(tool("bash"), "--norc", "-c", f'source "{script}"; complete -p proctop')
    assert "-F _shtab_proctop proctop" in registered
    assert complete("proctop", "--") >= long_options()
    assert complete("proctop", "--re") == {"--replay", "--record", "--record-max-size", "--record-max-age"}
    assert complete("proctop", "--source", "") == {"auto", "native", "kmod", "userspace"}
    assert complete("proctop", "--completion", "") == set(SHELLS)
    assert complete("proctop", "mod") == {"module"}
    assert complete("proctop", "module", "") == {"install", "remove", "status"}
    assert complete("proctop", "--only", "") == set(MASK_NAMES)
    assert complete("proctop", "--only", "nonz") == {"nonzero-exit"}
    assert complete("proctop", "--theme", "") >= {"dark", "light", "cb-safe", "high-contrast", "nord"}
    assert complete("proctop", "--theme", "high") == {"high-contrast"}
    (tmp_path / "capture.jsonl").write_text("")
    assert complete("proctop", "--replay", str(tmp_path / "capt")) == {str(tmp_path / "capture.jsonl")}


def test_fish_completes_every_option_and_the_choices(tmp_path):
    script = script_file(tmp_path, "fish")

    def complete(line: str) -> set[str]:
        out = run(tool("fish"), "--no-config", "-c", f'source "{script}"; complete -C "{line}"')
        return {entry.split("\t")[0] for entry in out.splitlines()}

    assert complete("proctop --") >= long_options()
    assert complete("proctop --source ") >= {"auto", "native", "kmod", "userspace"}
    assert complete("proctop --completion ") >= set(SHELLS)
    assert complete("proctop module ") == {"install", "remove", "status"}
    assert complete("proctop --only ") >= set(MASK_NAMES)
    assert complete("proctop --theme ") >= {"dark", "light", "cb-safe", "high-contrast", "nord"}


def test_zsh_completes_in_a_terminal_and_knows_every_option(tmp_path):
    """Installed as zsh expects (``_proctop`` on ``fpath``), the script completes at a real prompt."""
    script = script_file(tmp_path, "zsh")
    functions = tmp_path / "functions"
    functions.mkdir()
    script.rename(functions / "_proctop")
    run(tool("zsh"), "-n", str(functions / "_proctop"))  # parses
    # Sourced outside completion it stops at its last line (compadd needs a completion), after the option table.
    table = f'source "{functions}/_proctop" 2>/dev/null; print -rl -- "${{_shtab_proctop_options[@]}}"'
    proc = subprocess.run([tool("zsh"), "-f", "-c", table], capture_output=True, text=True, timeout=60)
    named = {m for spec in proc.stdout.splitlines() for m in re.findall(r"(--[a-z][a-z-]*)\[", spec)}
    assert named >= long_options() - {"--help"} and "--help" in proc.stdout
    assert r"--metrics[serve Prometheus metrics there (e.g. 127.0.0.1\:9785)]:ADDR\:PORT:" in proc.stdout
    socket = f"proctop-zsh-{os.getpid()}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "xterm", "LANG": "C.UTF-8"}

    def tmux(*args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10, env=env, check=True
        ).stdout

    def wait_for(needle: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pane = tmux("capture-pane", "-p", "-t", "zsh")
            if needle in pane:
                return pane
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} never shown; the pane:\n{pane}")

    tool("tmux")
    tmux("new-session", "-d", "-s", "zsh", "-x", "120", "-y", "30", f"{tool('zsh')} -f")
    try:
        tmux(
            "send-keys",
            "-t",
            "zsh",
            f"fpath=({functions} $fpath); autoload -U compinit; compinit -u -D; PS1='> '",
            "Enter",
        )
        wait_for("> ")
        tmux("send-keys", "-t", "zsh", "proctop --sou", "Tab")
        wait_for("> proctop --source")  # the option completed
        tmux("send-keys", "-t", "zsh", "Tab")
        pane = wait_for("userspace")  # its choices listed
        assert all(choice in pane for choice in ("auto", "native", "kmod"))
        tmux("send-keys", "-t", "zsh", "C-u", "proctop --only nonz", "Tab")
        wait_for("> proctop --only nonzero-exit")  # a value completed
        tmux("send-keys", "-t", "zsh", "C-u", "proctop --theme high", "Tab")
        wait_for("> proctop --theme high-contrast")
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=10)


def test_the_man_page_renders_and_lists_every_option(tmp_path):
    page = tmp_path / "proctop.1"
    page.write_text(printed("--manpage"))
    warnings = subprocess.run(
        [tool("groff"), "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60
    )
    assert warnings.returncode == 0 and warnings.stderr == ""  # e.g. "...within" read as a macro
    text = subprocess.run(
        [tool("man"), "-P", "cat", "-l", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "MANWIDTH": "100", "LANG": "C.UTF-8"},
    )
    assert text.returncode == 0, text.stderr
    rendered = text.stdout
    for option in long_options() - {"--help"}:  # argparse-manpage leaves out argparse's own -h
        assert option in rendered, option
    for heading in ("NAME", "SYNOPSIS", "OPTIONS", "VIEW FILTER", "KEYS", "CONFIG FILE", "EXIT STATUS", "EXAMPLES"):
        assert f"\n{heading}\n" in rendered, heading
    keys_part = rendered.split("\nKEYS\n")[1].split("\nCONFIG FILE\n")[0]
    for binding_id in IDS:  # every key with the id a config file remaps it by
        assert f"({binding_id})" in keys_part, binding_id
    assert "up or k  (cursor-up)" in keys_part
    assert "~/.config/proctop/config.toml" in rendered and "[keys]" in rendered
    statuses = rendered.split("\nEXIT STATUS\n")[1].split("\nEXAMPLES\n")[0]
    assert re.findall(r"^ +(\d|N) ", statuses, re.MULTILINE) == ["0", "1", "2", "3", "4", "N"]
    assert "...within this many seconds" in rendered  # help text that starts with a dot survives
    synopsis = rendered.split("\nSYNOPSIS\n")[1].split("\nDESCRIPTION\n")[0].split()
    assert " ".join(synopsis) == "proctop [options] [-- COMMAND [ARG ...]] proctop module {install,remove,status}"
    commands = rendered.split("\nCOMMANDS\n")[1].split("\nVIEW FILTER\n")[0]
    for action in ("install", "remove", "status"):  # the module command, each action with its help
        assert f"proctop module {action}\n" in commands, action


@pytest.mark.parametrize("columns", ["40", "300"])
def test_the_shipped_man_page_is_the_generated_one(monkeypatch, columns):
    """Whatever the terminal's width: roff fills lines itself (argparse's wrapping broke "nonzero-exit")."""
    monkeypatch.setenv("COLUMNS", columns)
    shipped = (ROOT / "man" / "proctop.1").read_text()
    assert shipped == manpage(build_parser()), "stale: run `proctop --manpage > man/proctop.1`"
    assert "fork,exec,nonzero\\-exit)" in shipped


def test_the_wheel_installs_the_man_page(tmp_path):
    """``pip install .`` puts proctop.1 in <prefix>/share/man/man1, beside <prefix>/bin."""
    source = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = wheels.glob("proctop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    page = [name for name in names if name.endswith("/data/share/man/man1/proctop.1")]
    assert page, names
    assert zipfile.ZipFile(wheel).read(page[0]).decode() == manpage(build_parser())
