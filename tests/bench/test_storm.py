"""The bench's storm generator reports exactly what it produced (bench/storm.c)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def storm(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("storm") / "storm"
    src = str(BENCH / "storm.c")
    if subprocess.run(["gcc", "-O2", "-static", "-pthread", "-o", str(exe), src], capture_output=True).returncode:
        subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), src], check=True)
    return exe


def spawn(storm: Path, tmp_path: Path, n: int, *args: str) -> tuple[dict, list[tuple[int, int, int]]]:
    gt = tmp_path / "gt.txt"
    res = subprocess.run([str(storm), "spawn", str(n), str(gt), *args], capture_output=True, text=True, check=True)
    rows = [tuple(int(x) for x in line.split()) for line in gt.read_text().splitlines()]
    return json.loads(res.stdout), rows


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--exec",),
        ("--parallel", "3"),
        ("--exec", "--parallel", "2", "--sleep-us", "100"),
        ("--threads", "2"),
    ],
)
def test_ground_truth_counts_and_statuses(storm, tmp_path, args):
    info, rows = spawn(storm, tmp_path, 300, "--fail", "0.1", *args)
    assert info["n"] == len(rows) == 300
    assert sorted(idx for _, _, idx in rows) == list(range(300))  # each child once
    assert len({pid for pid, _, _ in rows}) == 300
    failing = [(st, idx) for _, st, idx in rows if st]
    assert info["nonzero"] == len(failing) == 30
    for st, idx in failing:  # a normal exit with code 1 + index % 250
        assert st & 0x7F == 0
        assert (st >> 8) & 0xFF == 1 + idx % 250
    assert info["parallel"] == (int(args[args.index("--parallel") + 1]) if "--parallel" in args else 1)


def test_exec_children_carry_their_tag(storm, tmp_path):
    """An exec'd child's argv ends with TAG-INDEX: the bench matches cmdlines on it."""
    gt = tmp_path / "gt.txt"
    script = f"{storm} spawn 3 {gt} --exec --sleep-us 300000 --tag TAGX & sleep 0.15; "
    script += 'cat /proc/[0-9]*/cmdline | tr "\\0" " "'
    out = subprocess.run(["sh", "-c", script + "; wait"], capture_output=True, text=True).stdout
    for i in range(3):
        assert f"storm child 0 300000 0 TAGX-{i}" in out
