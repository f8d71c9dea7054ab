"""The failures board: what fails, how often, why and where, one group per command.

A command is its identity (``proctop.model.identity``): a script, not its
shell; a compile, with its file; and never two units in one group.

A stream of exits answers "what just happened"; the board answers the
question users bring to ``--only nonzero-exit``: *what keeps failing*. It is
fed every failed exit and keeps, per group, the count, the statuses seen,
a per-minute history for the rate and the sparkline, and the latest command
line, user, unit and reason.

Time is the events' own (the kernel's timestamps, or a capture's), so a
replay's rates and crash loops read as they did live.

Bounded: at most ``max_groups`` groups; past that the least recently failing
group is folded into one ``other`` row, so a storm of unique command names
(an attacker's, or a fuzzer's) cannot grow memory.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from proctop.model.events import Event
from proctop.model.identity import KEY_LIMIT, Identity, identity

#: systemd's defaults for StartLimitBurst / StartLimitIntervalSec: 5 starts in 10 s
#: there; a failure loop here is 5 failures within 60 s (both configurable).
LOOP_BURST = 5
LOOP_INTERVAL = 60.0
#: Minutes of history kept per group, for the sparkline.
HISTORY_MINUTES = 10
MAX_GROUPS = 1000
OTHER = "other"
#: Failure times kept per group for the rate and the loop mark.
RECENT_MAX = 10_000


def command_key(ev: Event) -> str:
    """What a failure is grouped by: its identity's key (``proctop.model.identity``), unit included."""
    return identity(ev).key


def unit_key(ev: Event) -> str:
    """Grouping "by unit": the systemd unit or container, ``-`` when unknown."""
    return (ev.unit or "-")[:KEY_LIMIT]


@dataclass(slots=True)
class FailureGroup:
    """What is known of one command's failures (or, grouped by unit, one unit's)."""

    key: str
    count: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    #: failures per minute, keyed by ``int(ts // 60)``; only the last HISTORY_MINUTES are kept.
    minutes: dict[int, int] = field(default_factory=dict)
    #: Failure times within the loop interval (and the last minute) of the latest one;
    #: at most RECENT_MAX, so a storm's rate reads as "at least".
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_MAX))
    first_seen: float = 0.0
    last_seen: float = 0.0
    #: The identity of the latest failure named by argv (else by what was known): its text is what
    #: the board and the summary show.
    identity: Identity | None = None
    user: str | None = None
    unit: str | None = None
    reason: str | None = None
    last_pid: int = 0

    def in_window(self, now: float, interval: float) -> int:
        """Failures within ``interval`` seconds before ``now`` (newest first: stops at the first older one)."""
        cutoff = now - interval
        n = 0
        for ts in reversed(self.recent):
            if ts <= cutoff:
                break
            n += 1
        return n

    def sparkline(self, now: float, minutes: int = HISTORY_MINUTES) -> list[int]:
        """Failures per minute over the last ``minutes`` minutes, oldest first."""
        current = int(now // 60)
        return [self.minutes.get(m, 0) for m in range(current - minutes + 1, current + 1)]

    def statuses_text(self, limit: int = 3) -> str:
        """``exit 1 ×12, SIGSEGV ×2`` (most frequent first)."""  # noqa: RUF002
        common = self.statuses.most_common()
        parts = [f"{status} \u00d7{n}" for status, n in common[:limit]]
        if len(common) > limit:
            parts.append(f"+{len(common) - limit} more")
        return ", ".join(parts)


class FailureBoard:
    """Failed exits grouped by command (or unit), bounded in size."""

    def __init__(
        self,
        *,
        by: str = "command",
        max_groups: int = MAX_GROUPS,
        loop_burst: int = LOOP_BURST,
        loop_interval: float = LOOP_INTERVAL,
    ) -> None:
        self.by = by
        self.max_groups = max_groups
        self.loop_burst = loop_burst
        self.loop_interval = loop_interval
        self.groups: OrderedDict[str, FailureGroup] = OrderedDict()  # least recently failing first
        self.other = FailureGroup(OTHER)
        self.total = 0
        self.now = 0.0  # the latest event time seen: the board's clock

    def add(self, ev: Event) -> FailureGroup | None:
        """Count ``ev`` if it is a failed exit; returns its group."""
        if not ev.failed:
            return None
        self.now = max(self.now, ev.ts)
        self.total += 1
        ident = identity(ev)
        key = unit_key(ev) if self.by == "unit" else ident.key
        group = self.groups.get(key)
        if group is None:
            if len(self.groups) >= self.max_groups:
                self._fold_oldest()
            group = self.groups[key] = FailureGroup(key, first_seen=ev.ts)
        else:
            self.groups.move_to_end(key)
        _count(group, ev, ident, max(self.loop_interval, 60.0))
        return group

    def _fold_oldest(self) -> None:
        _, gone = self.groups.popitem(last=False)
        other = self.other
        other.count += gone.count
        other.statuses.update(gone.statuses)
        for minute, n in gone.minutes.items():
            other.minutes[minute] = other.minutes.get(minute, 0) + n
        _trim_minutes(other, self.now)
        other.last_seen = max(other.last_seen, gone.last_seen)

    def is_loop(self, group: FailureGroup) -> bool:
        """``loop_burst`` or more failures within ``loop_interval`` seconds, up to now."""
        recent = group.recent
        if group is self.other or len(recent) < self.loop_burst:
            return False
        return recent[-self.loop_burst] > self.now - self.loop_interval

    def rate(self, group: FailureGroup) -> float:
        """Failures per minute over the last minute (the board's clock)."""
        if group is self.other:
            return float(self.other.minutes.get(int(self.now // 60), 0))
        return float(group.in_window(self.now, 60.0))

    def rows(self, sort: str = "count") -> list[FailureGroup]:
        """The groups, crash loops first, then by ``count``, ``rate`` or ``recent``; ``other`` last."""
        keys: Callable[[FailureGroup], tuple[float, float]] = {
            "count": lambda g: (g.count, g.last_seen),
            "rate": lambda g: (self.rate(g), g.count),
            "recent": lambda g: (g.last_seen, g.count),
        }[sort]
        groups = sorted(self.groups.values(), key=lambda g: (self.is_loop(g), keys(g)), reverse=True)
        if self.other.count:
            groups.append(self.other)
        return groups


def _count(group: FailureGroup, ev: Event, ident: Identity, interval: float) -> None:
    ts = ev.ts
    group.count += 1
    group.statuses[ev.status_text] += 1
    minute = int(ts // 60)
    group.minutes[minute] = group.minutes.get(minute, 0) + 1
    _trim_minutes(group, ts)
    recent = group.recent
    recent.append(ts)
    while recent and recent[0] <= ts - interval:
        recent.popleft()
    if ts >= group.last_seen:
        group.last_seen = ts
        if ev.cmdline or group.identity is None:  # an exit named by comm alone keeps the last argv shown
            group.identity = ident
        group.user = ev.user or group.user
        group.unit = ev.unit or group.unit
        group.reason = ev.reason
        group.last_pid = ev.pid


def _trim_minutes(group: FailureGroup, now: float) -> None:
    oldest = int(now // 60) - HISTORY_MINUTES
    for minute in [m for m in group.minutes if m <= oldest]:
        del group.minutes[minute]
