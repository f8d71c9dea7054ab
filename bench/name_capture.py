"""How many failed processes get a name (comm or argv), per mask and per lifetime.

Under ``--only nonzero-exit`` the kernel sends nothing when a process starts
unless names are on (the default: exec and fork are subscribed for names
only); ``--names off`` is measured beside it. Prints a Markdown table.
Run as root or any user on Linux 6.6+:

    python bench/name_capture.py [N]
"""

from __future__ import annotations

import subprocess
import sys
import time

from proctop.kernel.probe import probe
from proctop.kernel.protocol import PROC_EVENT_NONZERO_EXIT
from proctop.model.kinds import DEFAULT_MASK
from proctop.sources.connector import ConnectorSource

WORKLOADS = {
    "instant (`sh -c 'exit 3'`, ~1 ms)": "exit 3",
    "50 ms (`sleep 0.05; exit 3`)": "sleep 0.05; exit 3",
    "1.5 s (`sleep 1.5; exit 3`)": "sleep 1.5; exit 3",
}


def measure(mask: int, script: str, n: int, names: bool = True) -> tuple[int, int]:
    """Fail ``n`` processes from a shell loop (which reaps each at once) while polling."""
    src = ConnectorSource(probe(), mask, names=names)
    src.start()
    loop = f'i=0; while [ $i -lt {n} ]; do sh -c "{script}" & sh -c "{script}"; wait; i=$((i+2)); done'
    try:
        spawner = subprocess.Popen(["sh", "-c", loop])
        mine = {}
        quiet_until = None
        while quiet_until is None or time.monotonic() < quiet_until:
            for ev in src.poll(0.1):
                if ev.event == "exit" and ev.ppid == spawner.pid:
                    mine[ev.tgid] = ev
            if quiet_until is None and spawner.poll() is not None:
                quiet_until = time.monotonic() + 1.0
        named = sum(1 for ev in mine.values() if ev.comm or ev.cmdline)
        return named, len(mine)
    finally:
        src.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    masks = {
        "`--only nonzero-exit`": (PROC_EVENT_NONZERO_EXIT, True),
        "`--only nonzero-exit --names off`": (PROC_EVENT_NONZERO_EXIT, False),
        "default (`fork,exec,nonzero-exit`)": (DEFAULT_MASK, True),
    }
    print("| failing process lives | " + " | ".join(masks) + " |")
    print("|---|" + "---|" * len(masks))
    for label, script in WORKLOADS.items():
        cells = []
        for mask, names in masks.values():
            named, seen = measure(mask, script, n, names)
            cells.append(f"{named}/{seen} ({100 * named / max(seen, 1):.0f}%)")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
