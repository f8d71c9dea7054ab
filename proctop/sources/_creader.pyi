"""Types of the compiled reader thread (proctop/sources/_creader.c)."""

from proctop.kernel.protocol import RawEvent

#: (when the reads ended, monotonic ns; cmdline, exe link, stat, owner uid, cgroup: None where a read failed;
#: when argv was read, monotonic ns, 0 at an exit)
Reads = tuple[int, bytes | None, bytes | None, bytes | None, int | None, bytes | None, int]
#: A shown event with its reads and whether they were unsaid; an introduction (reader.Intro: pid, start_ns,
#: ppid, the names' reads, own, uid, cgroup); or None for an overrun.
RawIntro = tuple[int, int, int | None, Reads | None, bool, int | None, bytes | None]
RawBatch = list[tuple[RawEvent, Reads | None, bool] | RawIntro | None]

class CReader:
    error: str | None
    stopped: bool
    empty: bool
    def __init__(
        self,
        fd: int,
        idx: int,
        mask: int,
        names_bits: int,
        threads: bool,
        queue_max: int,
        wire: tuple[tuple[int, ...], ...],
        all_mask: int,
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def set_filter(self, mask: int, names_bits: int, /) -> None: ...
    def take_raw(self, timeout: float, most: int, /) -> list[tuple[RawBatch, int]]: ...
    def counters(self) -> dict[str, int]: ...
