"""The always-on options (issue 12) wired onto a source: ``--record``, ``--metrics``, ``--since``/``--until``.

Kept out of cli.py so that the command line only adds the options, calls
``check`` before the probe and ``attach`` on the source it made. Both the
recorder and the metrics see events through ``record.observe`` (a wrapper
on the source's ``poll``), so the UI, ``--json`` and the headless recorder
feed them alike, and closing the source closes them too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: cli.py imports this module at startup; the rest is imported lazily
    from proctop.sources.base import Source


def add_options(p: argparse.ArgumentParser) -> None:
    """``--record``, ``--metrics`` and ``--replay DIR``'s time window (proctop/sinks/record.py, metrics.py)."""
    from proctop.sinks.record import parse_duration, parse_size, parse_time

    g = p.add_argument_group("always on")
    g.add_argument("--record", metavar="DIR", help="no UI: keep the --json stream in DIR as rotating gzip segments")
    g.add_argument(
        "--record-max-size",
        metavar="SIZE",
        type=parse_size,
        default=parse_size("100M"),
        help="total size of DIR's segments; the oldest go first (default 100M)",
    )
    g.add_argument("--record-max-age", metavar="AGE", type=parse_duration, help="delete older segments (e.g. 30d)")
    g.add_argument("--metrics", metavar="ADDR:PORT", help="serve Prometheus metrics there (e.g. 127.0.0.1:9785)")
    g.add_argument("--since", metavar="TIME", type=parse_time, help="--replay from TIME (ISO time, or 2h ago)")
    g.add_argument("--until", metavar="TIME", type=parse_time, help="--replay up to TIME (ISO time, or 30m ago)")


def attach(source: Source, args: argparse.Namespace) -> Source:
    """Open the recorder and the metrics server on ``source`` as ``args`` ask (errors carry status 2)."""
    from proctop.sinks.record import SegmentWriter, observe
    if args.metrics:
        from proctop.sinks.metrics import Metrics

        metrics = Metrics()
        metrics.describe_source(source.describe())
        metrics.serve(*args.metrics_address)
        observe(source, metrics)
        also_close(source, metrics.close)
    if args.record:  # the header is written at the first poll, once the source has started
        from proctop.sinks.headless import header

        writer = SegmentWriter(
            args.record, max_size=args.record_max_size, max_age=args.record_max_age, header=lambda: header(source)
        )
        observe(source, writer)
        also_close(source, writer.close)
    return source


def check(args: argparse.Namespace) -> None:
    """Argument errors of these options, before the probe (raises errors with ``status`` 2)."""
    from proctop.sinks.record import RecordError, check_directory

    if (args.since is not None or args.until is not None) and not args.replay:
        raise RecordError("--since and --until need --replay")
    if args.record:
        check_directory(args.record)
    if args.metrics:
        from proctop.sinks.metrics import parse_address

        args.metrics_address = parse_address(args.metrics)


def also_close(source: Source, close: Callable[[], None]) -> None:
    """Make ``source.close()`` also call ``close`` (after the source's own, even if that raised)."""
    inner = source.close

    def both() -> None:
        try:
            inner()
        finally:
            close()

    source.close = both  # type: ignore[method-assign]  # wraps this one object's close, as documented
