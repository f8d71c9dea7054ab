"""Names under every mask, and never a wrong one (issue 19, items 1 and 2), against the real kernel.

Under ``--only nonzero-exit`` proctop still subscribes to exec and fork for
names alone: the failing exit is named from its exec's /proc read, the extra
events are never shown nor counted. The torture test makes pids be reused as
fast as the kernel allows (``ns_last_pid`` set back before every run, so each
run's processes take the pids of the run before) and execs through ``sh -c``,
``env`` and ``python -c``; every failing exit that proctop names must carry the
argv (and comm) of the image that really failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import collect, proctop_cmd

from proctop.kernel.probe import probe
from proctop.kernel.protocol import PROC_EVENT_NONZERO_EXIT
from proctop.sources.connector import ConnectorSource

#: Every test here runs over both socket readers, which must give the same events (issue 20).
pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("reader_kind")]

FAIL_C = r"""
#include <stdlib.h>
/* ptfail MARKER CODE: exit with CODE; the marker makes its argv unique */
int main(int argc, char **argv) { return argc > 2 ? atoi(argv[2]) : 1; }
"""


@pytest.fixture(scope="module")
def ptfail(tmp_path_factory) -> str:
    """A static binary that fails at once (it lives well under a millisecond)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the failing helper")
    d = tmp_path_factory.mktemp("ptfail")
    (d / "ptfail.c").write_text(FAIL_C)
    exe = d / "ptfail"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(exe), str(d / "ptfail.c")], check=True)
    os.chmod(d, 0o755)
    return str(exe)


def _open(mask: int, **kw) -> ConnectorSource:
    src = ConnectorSource(probe(), mask, **kw)
    src.start()
    return src


def _one_failure(src):
    """A shell that lives 50 ms and exits 3, watched by ``src`` (closed after): its exit, every event."""
    try:
        proc = subprocess.Popen(["sh", "-c", "sleep 0.05; exit 3", "names-probe"])
        proc.wait()
        events = collect(src, lambda evs: any(e.event == "exit" and e.pid == proc.pid for e in evs))
    finally:
        src.close()
    (ev,) = [e for e in events if e.pid == proc.pid]
    return ev, events


def test_nonzero_exit_names_a_failure_from_its_exec_and_shows_nothing_else():
    src = _open(PROC_EVENT_NONZERO_EXIT)
    ev, events = _one_failure(src)
    assert src.describe()["names"] is True
    assert ev.exit_code == 3 and ev.cmdline == ["sh", "-c", "sleep 0.05; exit 3", "names-probe"]
    assert {e.event for e in events} <= {"exit", "lost"}  # no fork, no exec shown
    assert set(src.stats.by_type) <= {"exit", "lost"} and src.stats.names_only > 0
    assert src.stats.delivered == len(events)


def test_names_off_subscribes_to_the_mask_alone():
    src = _open(PROC_EVENT_NONZERO_EXIT, names=False)
    ev, _ = _one_failure(src)
    assert src.describe()["names"] is False
    assert ev.cmdline is None  # reaped at once: nothing read it in time, and nothing else named it
    assert src.stats.names_only == 0


def _variants(fail: str, marker: str) -> tuple[list[str], dict[int, list[str] | None]]:
    """Commands that fail through shells, env and interpreters, and the argv each exit code must carry.

    ``None``: that exit is a fork of a shell that never exec'd; it may be named
    after the shell (it is one) or not at all.
    """
    py = sys.executable
    sh_c = f"{fail} {marker} 3; exit 4"
    return [  # type: ignore[return-value]
        ([fail, marker, "3"], {3: [fail, marker, "3"]}),
        (["sh", "-c", f"exec {fail} {marker} 3"], {3: [fail, marker, "3"]}),
        (["sh", "-c", sh_c], {3: [fail, marker, "3"], 4: ["sh", "-c", sh_c]}),
        (["sh", "-c", f"exec env {fail} {marker} 3"], {3: [fail, marker, "3"]}),
        (["env", fail, marker, "3"], {3: [fail, marker, "3"]}),
        (
            [py, "-c", "import os, sys; os.execv(sys.argv[1], sys.argv[1:])", fail, marker, "3"],
            {3: [fail, marker, "3"]},
        ),
        ([py, "-c", "import sys; sys.exit(5)", marker], {5: [py, "-c", "import sys; sys.exit(5)", marker]}),
        (["sh", "-c", "(exit 6); exit 7", marker], {6: None, 7: ["sh", "-c", "(exit 6); exit 7", marker]}),
    ]


def _comm(argv: list[str]) -> str:
    return os.path.basename(argv[0])[:15]


def test_torture_no_failure_is_ever_named_after_another_image(ptfail, tmp_path):
    """Pids reused run after run, execs through sh -c, env and python -c: 0 wrong names."""
    last_pid = Path("/proc/sys/kernel/ns_last_pid")
    if not os.access(last_pid, os.W_OK):
        pytest.skip("needs root (ns_last_pid) to reuse pids on purpose")
    base = 40_000 if int(Path("/proc/sys/kernel/pid_max").read_text()) > 45_000 else 20_000
    proc = subprocess.Popen(
        proctop_cmd("--json", "--only", "nonzero-exit", "--no-config"),
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    header = json.loads(proc.stdout.readline())
    assert header["names"] is True
    runs = []  # (start, end, top pid, expected {code: argv})
    try:
        for i in range(240):
            marker = f"PTMARK-{os.getpid()}-{i}"
            argv, expected = _variants(ptfail, marker)[i % 8]
            last_pid.write_text(str(base - 1))  # the next fork takes `base`: the last run's pids again
            t0 = time.time()
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            child.wait()
            runs.append((t0, time.time(), child.pid, expected, marker))
            time.sleep(0.003)  # runs never overlap in time: an exit's stamp says which run it was
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    reused = len(runs) - len({r[2] for r in runs})
    assert reused > len(runs) // 2, "the runs were meant to reuse pids"
    exits = [json.loads(line) for line in out.splitlines()]
    exits = [e for e in exits if e.get("event") == "exit"]
    checked = named = argv_named = expected_exits = missed = 0
    wrong = []
    for t0, t1, top, expected, marker in runs:
        # the run's own: its top process (a child of this test) and that one's children; the pid may have
        # been another process's just before the run, so the parent says whose it is
        me = os.getpid()
        ours = [
            e
            for e in exits
            if t0 - 0.001 <= e["ts"] <= t1 + 0.001
            and ((e["pid"] == top and e.get("ppid") == me) or e.get("ppid") == top)
        ]
        for e in ours:
            checked += 1
            want = expected[e["exit_code"]]
            cmdline, comm = e.get("cmdline"), e.get("comm")
            if want is None:  # a shell's fork: named after that shell, or not at all
                top_argv = next(a for a in expected.values() if a is not None)
                ok = cmdline in (None, top_argv) and comm in (None, _comm(top_argv))
            else:
                ok = cmdline in (None, want) and comm in (None, _comm(want))
            if cmdline is not None or comm is not None:
                named += 1
            argv_named += cmdline is not None
            if not ok:
                wrong.append((marker, e["exit_code"], cmdline, comm))
        expected_exits += len(expected)
        missed += len(set(expected) - {e["exit_code"] for e in ours})
    assert wrong == [], f"{len(wrong)} wrong names of {checked}: {wrong[:5]}"
    # the failures were caught (what a loaded machine may cost: a lost event or a clock step)
    lost = sum(1 for line in out.splitlines() if '"event":"lost"' in line.replace(" ", ""))
    assert missed <= expected_exits // 50, (missed, expected_exits, lost)
    assert checked >= 240 and named >= checked // 2, (checked, named, argv_named)
