"""The failures board under a storm of unique command names: memory stays bounded.

    python bench/board_storm.py [FAILURES]

Feeds FAILURES failed exits, each with a command name never seen before (the
worst case: an attacker's or a fuzzer's), into one ``FailureBoard`` with its
default bound, and into one without a bound for comparison, and prints the
peak traced memory and the cost per failure of each, as ratios from one run.
"""

from __future__ import annotations

import sys
import time
import tracemalloc

from proctop.model.events import Event
from proctop.model.failures import MAX_GROUPS, FailureBoard


def storm(n: int) -> list[Event]:
    return [
        Event(ts=1e9 + i / 1000, event="exit", pid=i, tgid=i, exit_code=1, cmdline=[f"/tmp/unique-{i}", "--x"])
        for i in range(n)
    ]


def feed(max_groups: int, n: int) -> tuple[float, int]:
    """Seconds per failure (untraced run) and peak traced bytes (a second, traced run)."""
    events = storm(n)
    board = FailureBoard(max_groups=max_groups)
    started = time.perf_counter()
    for ev in events:
        board.add(ev)
    board.rows()
    elapsed = time.perf_counter() - started
    board = FailureBoard(max_groups=max_groups)
    tracemalloc.start()
    for ev in events:
        board.add(ev)
    board.rows()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed / n, peak


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    bounded_cost, bounded_peak = feed(MAX_GROUPS, n)
    unbounded_cost, unbounded_peak = feed(n + 1, n)
    print(f"{n} failures, each a new command name; board bound {MAX_GROUPS} groups")
    print(f"bounded:   {bounded_peak / 1e6:8.1f} MB peak, {bounded_cost * 1e6:6.2f} us per failure")
    print(f"unbounded: {unbounded_peak / 1e6:8.1f} MB peak, {unbounded_cost * 1e6:6.2f} us per failure")
    print(f"memory ratio bounded/unbounded: {bounded_peak / unbounded_peak:.3f}")


if __name__ == "__main__":
    main()
