"""``proctop -- CMD`` and ``--summary``: real commands, real failures, real exit statuses."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import REPO, proctop_cmd

pytestmark = pytest.mark.kernel


def proctop(*args: str, cwd, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(proctop_cmd(*args), capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_only_the_tree_is_watched_and_proctop_exits_with_its_status(tmp_path):
    """A failure inside the tree, one that double-forked out of it, and one outside at the same time."""
    script = (
        "sh -c 'exit 4';"
        " (sh -c 'sleep 0.3; exit 5' &);"  # double-forked: reparented away, still followed
        " sleep 0.8; exit 2"
    )
    outside = subprocess.Popen(["sh", "-c", "sleep 0.4; exit 9"])  # at the same time, not in the tree
    done = proctop("--json", "--only", "nonzero-exit", "--", "sh", "-c", script, cwd=tmp_path)
    outside.wait()
    assert done.returncode == 2, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()[1:]]
    assert sorted(e["exit_code"] for e in events) == [2, 4, 5]
    assert outside.pid not in {e["pid"] for e in events}
    header = json.loads(done.stdout.splitlines()[0])
    assert header["command"] == ["sh", "-c", script]


def test_the_commands_output_goes_to_stderr_under_json(tmp_path):
    done = proctop("--json", "--", "sh", "-c", "echo from-the-command; exit 0", cwd=tmp_path)
    assert done.returncode == 0
    assert "from-the-command" in done.stderr
    assert all(json.loads(line) for line in done.stdout.splitlines())


def test_a_death_by_signal_reads_as_a_shell_would(tmp_path):
    done = proctop("--summary", "--", "sh", "-c", "kill -TERM $$", cwd=tmp_path)
    assert done.returncode == 128 + 15
    assert "SIGTERM" in done.stdout


@pytest.mark.parametrize(
    ("command", "status", "words"),
    [(["/no/such/program"], 127, "command not found"), (["/etc/passwd"], 126, "cannot run it")],
)
def test_a_command_that_cannot_start(tmp_path, command, status, words):
    done = proctop("--json", "--", *command, cwd=tmp_path)
    assert done.returncode == status
    assert done.stderr.count("\n") == 1 and words in done.stderr and "Traceback" not in done.stderr


def test_usage_errors_around_the_command(tmp_path):
    for args in (["--"], ["--replay", str(REPO / "tests/data/sample.jsonl"), "--", "true"]):
        done = proctop(*args, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr


def test_summary_of_a_real_crash_loop(tmp_path):
    """Six quick failures of one command within a minute: the board marks it `loop` and sorts it first."""
    crashy = tmp_path / "crashy"
    os.symlink("/bin/sh", crashy)
    script = (
        f"for i in 1 2 3 4 5 6; do {crashy} -c 'sleep 0.05; exit 3'; done;"
        f" {crashy} -c 'sleep 0.05; exit 127'; exit 1"
    )
    done = proctop("--summary", "--", "sh", "-c", script, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("proctop: 8 failures")
    top = lines[2]
    assert top.startswith("loop 7") and "exit 3 \u00d76, exit 127 \u00d71" in top, done.stdout
    assert "crashy" in top and "(command not found (127))" in top


def test_summary_of_a_replay(tmp_path):
    done = proctop("--summary", "--replay", str(REPO / "tests/data/sample.jsonl"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "4 failures" in out.splitlines()[0]
    assert "crashme --now" in out and "SIGSEGV (core dumped) \u00d71" in out
    assert r"\x1b" in out and "\x1b" not in out  # hostile strings made safe on stdout too
