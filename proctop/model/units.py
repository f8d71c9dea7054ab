"""Where a process runs: its systemd unit or container, from /proc/PID/cgroup.

systemd puts every service in a cgroup named after its unit
(``0::/system.slice/nginx.service``), every login session in a scope, and
container engines name theirs after the container
(``docker-<64 hex>.scope``, ``libpod-…``, ``cri-containerd-…``). The unit is
the deepest such name in the path; on hybrid hierarchies (cgroup v1 with
systemd's own ``name=systemd`` tree) that tree is read when the unified one
says nothing.
"""

from __future__ import annotations

import functools
import re

_CONTAINER = re.compile(r"(docker|libpod|crio|cri-containerd)-([0-9a-f]{12})[0-9a-f]*\.scope")
_UNIT_SUFFIXES = (".service", ".scope", ".slice", ".socket", ".mount", ".timer", ".swap")


def cgroup_paths(text: str) -> dict[str, str]:
    """``{controller: path}`` from /proc/PID/cgroup; the unified (v2) hierarchy is ``""``."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            paths[""] = path
        for name in controllers.split(","):
            if name:
                paths[name] = path
    return paths


@functools.lru_cache(maxsize=4096)  # asked at every exec and exit; a machine has few distinct cgroups
def unit_of(cgroup_text: str | None) -> str | None:
    """``nginx.service``, ``session-3.scope``, ``docker:0123456789ab``; None when none is named."""
    if not cgroup_text:
        return None
    paths = cgroup_paths(cgroup_text)
    for path in (paths.get(""), paths.get("name=systemd")):
        if path and path != "/":
            unit = _unit_in(path)
            if unit:
                return unit
    return None


def _unit_in(path: str) -> str | None:
    for part in reversed([p for p in path.split("/") if p]):
        container = _CONTAINER.fullmatch(part)
        if container:
            engine = {"libpod": "podman", "cri-containerd": "containerd"}.get(container[1], container[1])
            return f"{engine}:{container[2]}"
        if part.endswith(_UNIT_SUFFIXES):
            return part
    return None
