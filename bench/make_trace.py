"""A broken build under each mask: how many failing compiles proctop traces to their file.

``make -k -j2`` over ``FILES`` broken C files (and one good one) runs under
``proctop --json [--only nonzero-exit] -- make -k -j2``; each broken file gives
two failing processes, the compiler driver (``gcc``) and its ``cc1``. A failing
compile is *traced* when its identity (``proctop.model.identity``, what the
board, ``--summary`` and ``id:`` use) names its file, ``gcc a.c`` / ``cc1 a.c``;
a file is *listed* when ``--summary -- make -k -j2`` has a row naming it.
Prints a Markdown table. Run as root on Linux 6.6+ with gcc and make:

    python bench/make_trace.py [ROUNDS] [FILES]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from proctop.model.events import Event
from proctop.model.identity import identity

MASKS = {"`--only nonzero-exit`": ["--only", "nonzero-exit"], "default (`fork,exec,nonzero-exit`)": []}
#: What each broken file includes: nothing (cc1 fails within a few ms), or three headers (tens of ms).
SOURCES = {"bare": "", "3 headers": "".join(f"#include <{h}.h>\n" for h in ("stdio", "stdlib", "string"))}


def broken_build(where: Path, files: int, headers: str) -> list[str]:
    names = [f"f{i}.c" for i in range(files)]
    for name in names:
        (where / name).write_text(f"{headers}int {name[:-2]}(void) {{ return undeclared; }}\n")
    (where / "ok.c").write_text("int ok(void) { return 0; }\n")
    objects = " ".join(name.replace(".c", ".o") for name in (*names, "ok.c"))
    (where / "Makefile").write_text(f"all: {objects}\n%.o: %.c\n\tgcc -c $< -o $@\n")
    return names


def proctop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    argv = [sys.executable, "-m", "proctop", *args, "--", "make", "-k", "-j2"]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def json_round(mask: list[str], files: int, headers: str) -> tuple[int, int, int]:
    """(failing compiles seen, traced to their file, files traced) in one build."""
    with tempfile.TemporaryDirectory() as tmp:
        names = broken_build(Path(tmp), files, headers)
        done = proctop("--json", *mask, cwd=Path(tmp))
    events = [Event.from_dict(json.loads(line)) for line in done.stdout.splitlines()[1:]]
    failed = [ev for ev in events if ev.failed]
    make = [ev for ev in failed if identity(ev).name == "make"]
    compiles = [ev for ev in failed if ev not in make]
    traced = {ev.pid: name for ev in compiles for name in names if identity(ev).name.endswith(f" {name}")}
    return len(compiles), len(traced), len(set(traced.values()))


def summary_round(mask: list[str], files: int, headers: str) -> int:
    """Files listed by ``--summary -- make -k -j2``."""
    with tempfile.TemporaryDirectory() as tmp:
        names = broken_build(Path(tmp), files, headers)
        done = proctop("--summary", *mask, cwd=Path(tmp))
    table = done.stderr[done.stderr.find("proctop: ") :]
    return sum(1 for name in names if f" {name}" in table)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    files = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(f"make -k -j2, {files} broken files (2 failing compiles each: gcc and cc1), {rounds} rounds\n")
    columns = ("sources", "mask", "failing compiles seen", "traced to their file", "files traced (JSON)")
    print("| " + " | ".join(columns) + " | files listed (--summary) |")
    print("|---|---|---|---|---|---|")
    for kind, headers in SOURCES.items():
        for label, mask in MASKS.items():
            seen = traced = files_traced = listed = 0
            for _ in range(rounds):
                s, t, f = json_round(mask, files, headers)
                seen, traced, files_traced = seen + s, traced + t, files_traced + f
                listed += summary_round(mask, files, headers)
            expected = 2 * files * rounds
            print(
                f"| {kind} | {label} | {seen}/{expected} | {traced}/{expected} ({100 * traced / expected:.0f}%) "
                f"| {files_traced}/{files * rounds} | {listed}/{files * rounds} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
