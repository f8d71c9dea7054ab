"""Event sources behind one small interface: the kernel connector (native,
userspace-filtered or kmod) and a replayed JSON Lines capture."""

from proctop.sources.base import Source, SourceStats

__all__ = ["Source", "SourceStats"]
