"""A Python pidfd watcher (bench case 3): pidfd_open every pid in a file, epoll until all exited.

Prints ``ready N`` once every pidfd is registered, then one JSON line with the
CPU spent on setup and on waiting. Run as ``python bench/pidfd_watch.py PIDFILE``.
"""

from __future__ import annotations

import json
import os
import resource
import select
import sys
import time


def main(path: str) -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            limit = int(f.read())
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    except (OSError, ValueError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(path) as f:
        pids = [int(line) for line in f if line.strip()]
    c0 = time.process_time()
    ep = select.epoll()
    fds = {}
    failed = 0
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            failed += 1
            continue
        ep.register(fd, select.EPOLLIN)
        fds[fd] = pid
    c1 = time.process_time()
    print(f"ready {len(fds)}", flush=True)
    seen = 0
    while fds:
        events = ep.poll(30.0)
        if not events:
            break
        for fd, _mask in events:
            ep.unregister(fd)
            os.close(fd)
            fds.pop(fd, None)
            seen += 1
    c2 = time.process_time()
    result = {
        "watched": seen + len(fds),
        "open_failed": failed,
        "seen": seen,
        "cpu_setup": c1 - c0,
        "cpu_wait": c2 - c1,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
