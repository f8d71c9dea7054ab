"""The always-on options (issue 12): ``--record``, ``--metrics``, ``--since``/``--until``, and their sinks.

The command line adds the options (``add_options``), calls ``check`` before
the probe and ``attach`` on the source it made. The recorder and the metrics
are sinks on a ``Tee`` of the source (``proctop.sinks.stream``), so the UI and
every headless mode feed them alike, and closing the source closes them too.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: main.py imports this module at startup; the rest is imported lazily
    from proctop.cli.options import Options
    from proctop.sinks.stream import Sink
    from proctop.sources.base import Source

#: Where ``--metrics`` listens: host and port, parsed and resolved by ``check``.
Address = tuple[str, int]


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


def check(options: Options) -> Address | None:
    """Errors of these options, before the probe (raised with ``status`` 2); where ``--metrics`` listens."""
    from proctop.sinks.record import RecordError, check_directory

    if (options.since is not None or options.until is not None) and not options.replay:
        raise RecordError("--since and --until need --replay")
    if options.record:
        check_directory(options.record)
    if options.metrics:
        from proctop.sinks.metrics import parse_address

        return parse_address(options.metrics)
    return None


def attach(source: Source, options: Options, metrics_address: Address | None) -> Source:
    """``source`` teed to the metrics server and the recorder ``options`` ask for (errors carry status 2).

    The metrics first, then the recorder: the server listens (and a port in use
    is said) before anything is written; closing the source closes both.
    """
    from proctop.sinks.stream import Tee

    sinks: list[Sink] = []
    if metrics_address is not None:
        from proctop.sinks.metrics import Metrics

        metrics = Metrics()
        metrics.describe_source(source.describe())
        metrics.serve(*metrics_address)
        sinks.append(metrics)
    if options.record:  # the header is written when the source has started (Tee.start)
        from proctop.sinks.record import SegmentWriter

        try:
            sinks.append(
                SegmentWriter(options.record, max_size=options.record_max_size, max_age=options.record_max_age)
            )
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
    return Tee(source, sinks) if sinks else source
