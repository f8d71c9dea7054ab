"""``failed`` on exit rows, and the README's jq one-liners run for real with jq on proctop's
own output from real failing processes."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import REPO, need_tool, proctop_cmd

NEUTRAL = "/"  # run the installed proctop, not ./proctop from the source tree

#: A tree with successes and failures of every kind. The failing processes live 0.1 s so that
#: their names are read before they go (a process that dies at once may have comm null).
TREE = (
    "/bin/true; sh -c 'exit 3'; sh -c 'kill -KILL $$'; /bin/false; "
    "for i in 1 2 3; do sh -c 'sleep 0.1; exit 3'; done; sh -c 'sleep 0.1; kill -TERM $$'; "
    "for i in 1 2; do bash -c 'sleep 0.1; exit 4'; done; exit 0"
)


def watch_tree(only: str | None) -> list[dict]:
    """``proctop --json [--only ONLY] -- sh -c TREE``: the events of that tree only."""
    mask = ["--only", only] if only else []
    proc = subprocess.run(
        proctop_cmd("--json", *mask, "--", "sh", "-c", TREE), capture_output=True, text=True, cwd=NEUTRAL, timeout=60
    )
    assert proc.returncode == 0, proc.stderr  # the tree's own status
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return lines[1:]  # after the header


@pytest.mark.kernel
@pytest.mark.parametrize("only", [None, "all", "exit", "nonzero-exit", "fork,nonzero-exit"])
def test_every_exit_row_says_whether_it_failed_in_every_mask(only):
    events = watch_tree(only)
    exits = [ev for ev in events if ev["event"] == "exit"]
    for ev in events:
        if ev["event"] == "exit":
            assert ev["failed"] is (ev["exit_code"] != 0), ev  # a signal's exit_code is null: failed too
        else:
            assert "failed" not in ev, ev
    failures = [ev for ev in exits if ev["failed"]]
    statuses = Counter(ev["signal"] or ev["exit_code"] for ev in failures)
    assert statuses == {3: 4, 1: 1, 4: 2, "SIGKILL": 1, "SIGTERM": 1}, statuses
    succeeded = [ev for ev in exits if not ev["failed"]]
    if only in ("all", "exit"):  # /bin/true, the sleeps and the tree's sh: every exit is there
        assert len(succeeded) >= 1 + 4 + 2 + 1 and all(ev["exit_code"] == 0 for ev in succeeded)
    else:  # the kernel sent failures only
        assert succeeded == []


def readme_one_liner(comment: str) -> str:
    """The command on the line after ``# <comment>`` in README.md's jq block."""
    lines = (REPO / "README.md").read_text().splitlines()
    command = lines[lines.index(f"# {comment}") + 1]
    assert command.startswith("jq ") and command.endswith(" capture.jsonl"), command
    return command


def jq(comment: str, capture: Path) -> str:
    need_tool("jq")
    command = readme_one_liner(comment).removesuffix(" capture.jsonl") + " " + shlex.quote(str(capture))
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    """A real capture, as ``proctop --json --only all > capture.jsonl`` writes it (header included)."""
    path = tmp_path_factory.mktemp("jq") / "capture.jsonl"
    proc = subprocess.run(
        proctop_cmd("--json", "--only", "all", "--", "sh", "-c", TREE),
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    path.write_text(proc.stdout)
    return path


@pytest.mark.kernel
def test_readme_what_failed_in_the_last_30_s(capture):
    events = [json.loads(line) for line in capture.read_text().splitlines()[1:]]
    failed = [ev for ev in events if ev["event"] == "exit" and ev["exit_code"] != 0]
    assert len(failed) == 9
    # one real failure, as if it had happened a minute ago: the window leaves it out
    old = dict(failed[0], ts=time.time() - 60, pid=failed[0]["pid"] + 1_000_000)
    with capture.open("a") as out:
        out.write(json.dumps(old) + "\n")
    try:
        shown = [json.loads(line) for line in jq("what failed in the last 30 s", capture).splitlines()]
    finally:
        capture.write_text("".join(capture.read_text().splitlines(keepends=True)[:-1]))
    expected = [{key: ev[key] for key in ("ts", "pid", "comm", "exit_code", "signal")} for ev in failed]
    assert shown == expected


@pytest.mark.kernel
def test_readme_failures_per_command(capture):
    events = [json.loads(line) for line in capture.read_text().splitlines()[1:]]
    counted = Counter(ev["comm"] or "?" for ev in events if ev["event"] == "exit" and ev["exit_code"] != 0)
    rows = [line.split("\t") for line in jq("failures per command, most first", capture).splitlines()]
    assert {name: int(n) for n, name in rows} == counted
    assert [int(n) for n, _ in rows] == sorted((int(n) for n, _ in rows), reverse=True)
    # the slow failures always have their names: sh 3+1 (and the quick ones when read in time), bash 2
    assert counted["bash"] == 2 and counted["sh"] >= 4
    assert rows[0][1] == "sh"
