"""``proctop -- CMD`` and ``--summary``: real commands, real failures, real exit statuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

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


# --- the command runs as the user would have run it (issue 23 item 9) ----------------------


def test_the_command_gets_the_users_priority_signals_and_its_own_group(tmp_path):
    """As root proctop raises its own priority (nice -10) before it starts the command: the command
    runs at the nice proctop was started with, with no signal blocked or ignored, in its own group."""
    probe = (
        'echo "nice=$(nice) pgrp=$(cut -d" " -f5 /proc/$$/stat) pid=$$";'
        ' grep -E "^Sig(Blk|Ign)" /proc/self/status'
    )
    done = subprocess.run(
        ["nice", "-n", "3", *proctop_cmd("--json", "--", "sh", "-c", probe)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("nice=")]
    facts = dict(word.split("=") for word in line.split())
    # nice -n 3 from this test's own priority (-10 once an in-process test boosted it)
    assert int(facts["nice"]) == min(os.getpriority(os.PRIO_PROCESS, 0) + 3, 19), done.stderr
    assert facts["pgrp"] == facts["pid"], done.stderr  # a process group of its own
    masks = dict(line.split(":\t") for line in done.stderr.splitlines() if line.startswith("Sig"))
    assert int(masks["SigBlk"], 16) == 0 and int(masks["SigIgn"], 16) == 0, masks


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("mode", ["--json", "--summary"])
def test_proctops_end_ends_the_whole_tree(tmp_path, sig, mode):
    """``proctop --json -- sh -c 'sleep 301 & sleep 302'`` then ``kill -INT``: both sleeps survived."""
    marker = f"{os.getpid() % 1000}{sig}"
    script = f"sleep 3{marker}1 & sleep 3{marker}2"
    proc = subprocess.Popen(
        proctop_cmd(mode, "--", "sh", "-c", script), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )

    def sleeps() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        argv = f.read().split(b"\0")
                except OSError:
                    continue
                if argv[0] == b"sleep" and argv[1:2] in ([f"3{marker}1".encode()], [f"3{marker}2".encode()]):
                    found.append(int(entry))
        return found

    try:
        deadline = time.monotonic() + 20
        while len(sleeps()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sleeps()) == 2
        proc.send_signal(sig)
        proc.communicate(timeout=20)
        deadline = time.monotonic() + 5
        while sleeps() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleeps() == []
    finally:
        for pid in sleeps():
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
