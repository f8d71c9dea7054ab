"""``--metrics ADDR:PORT``: Prometheus metrics of the events proctop receives.

Served by ``prometheus_client``'s HTTP server thread; the counters are fed
from the consumer path (a sink on the source's ``Tee``, ``proctop.sinks.stream``),
so the UI and every headless mode count alike. Exposed:

- ``proctop_events_total{kind}``: events received, by kind (fork, exec, exit, lost, ...);
- ``proctop_failures_total{command,status,unit}``: exits with a non-zero status
  or by a signal; ``command`` is the process name (comm, as ``ps -o comm``
  shows it), ``status`` the exit code (``"3"``) or the signal (``"SIGSEGV"``),
  ``unit`` the systemd unit when the event knows it (else empty);
- ``proctop_lost_events_total``: events the kernel or proctop's queue lost (at least);
- ``proctop_info{version,source,kernel}``: always 1;
- the ``process_*`` metrics of proctop itself (CPU, memory).

Cardinality is bounded: at most ``MAX_FAILURE_SERIES`` failure series exist.
A new (command, status, unit) takes the place of the series that has been
idle longest if that one has not moved for ``IDLE_SECONDS`` (its series
disappears, as a restarted exporter's would); when every series moved
recently, the failure counts as ``command="other"``. So the commands failing
now always have their own series, and a flood of distinct names cannot grow
the scrape.
"""

from __future__ import annotations

import platform
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from socket import socket as Socket
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, Counter, Info, ProcessCollector, disable_created_metrics
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

from proctop import __version__
from proctop.errors import ProctopError
from proctop.model.events import EVENT_KINDS, Event
from proctop.model.identity import identity, printable
from proctop.sinks.stream import Sink
from proctop.sources.base import SourceDescription

#: Seconds a connection may take to send its request and take the answer: an idle or
#: slow client (1,000 half-open connections) must not hold a thread for ever.
CONNECTION_TIMEOUT = 5.0
#: Connections served at once (a thread each); more wait in the listen backlog.
MAX_CONNECTIONS = 128
#: The listen backlog (``socketserver``'s default of 5 refused clients at 100 at once).
BACKLOG = 128

MAX_FAILURE_SERIES = 200
IDLE_SECONDS = 3600.0
OTHER = "other"
_LABEL_MAX = 64


class MetricsError(ProctopError):
    """A bad ``--metrics`` address or a port that cannot be bound; one line for the user."""

    status = 2


def parse_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:9785``, ``[::1]:9785``, ``:9785`` (every address) -> (host, port); checks the host resolves."""
    host, sep, port_text = text.rpartition(":")
    # ASCII digits, at most 5, before int(): "²" is a digit to str.isdigit, and 5,000 digits
    # are a ValueError (and quadratic) for int().
    if (
        not sep
        or not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5)
        or not 0 < int(port_text) < 65536
    ):
        shown = text if len(text) <= 60 else text[:40] + "..."
        raise MetricsError(f"--metrics: not ADDR:PORT: {shown!r} (example: 127.0.0.1:9785, the README's port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host or "0.0.0.0"
    try:
        socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_NUMERICSERV)
    except (socket.gaierror, UnicodeError):
        raise MetricsError(f"--metrics: cannot resolve address {host!r}") from None
    return host, int(port_text)


def label(value: str | None, default: str = "unknown") -> str:
    """A label value from an untrusted process string: printable, short, valid UTF-8, unambiguous
    (``proctop.model.identity.printable``: a backslash doubled, every other escape of fixed width)."""
    if not value:
        return default
    return printable(value[: _LABEL_MAX * 10])[:_LABEL_MAX]


def command_label(ev: Event) -> str:
    """The command's identity's name (``proctop.model.identity``: the board's and the summary's),
    as a label; the unit is a label of its own. The name is already printable and unambiguous."""
    name = identity(ev).name
    return name[:_LABEL_MAX] if name != "?" else "unknown"  # nothing known: "unknown", as ever


class Metrics(Sink):
    """The counters, their own registry, and the HTTP server that serves them: a sink
    (``proctop.sinks.stream``) that counts every batch polled."""

    def __init__(
        self,
        *,
        max_series: int = MAX_FAILURE_SERIES,
        idle: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # No *_created series: half the scrape, and nothing alerts on them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.events = Counter("proctop_events", "Process events received, by kind.", ["kind"], registry=self.registry)
        self.failures = Counter(
            "proctop_failures",
            "Processes that exited with a non-zero status or by a signal, by command, status and unit.",
            ["command", "status", "unit"],
            registry=self.registry,
        )
        self.lost = Counter(
            "proctop_lost_events", "Events lost by the kernel or proctop (at least).", registry=self.registry
        )
        self.info = Info("proctop", "The proctop version, event source and kernel.", registry=self.registry)
        for kind in EVENT_KINDS:  # every kind shows from the start, at 0
            self.events.labels(kind)
        self.max_series = max_series
        self.idle = idle
        self.clock = clock
        self._series: OrderedDict[tuple[str, str, str], float] = OrderedDict()  # key -> last move, oldest first
        self.server: WSGIServer | None = None

    def describe_source(self, described: SourceDescription) -> None:
        self.info.info(
            {
                "version": __version__,
                "source": str(described.get("source", "?")),
                "kernel": str(described.get("kernel") or platform.release()),
            }
        )

    def write(self, events: list[Event]) -> None:
        for ev in events:
            self.events.labels(ev.event).inc()
            if ev.event == "lost":
                self.lost.inc(ev.count or 1)
            elif ev.failed:
                self._failure(ev)

    def _failure(self, ev: Event) -> None:
        status = ev.signal if ev.signal else str(ev.exit_code)
        key = (command_label(ev), label(status), label(ev.unit, ""))
        now = self.clock()
        if key not in self._series and len(self._series) >= self.max_series:
            oldest, moved = next(iter(self._series.items()))
            if now - moved < self.idle:
                self.failures.labels(OTHER, OTHER, "").inc()
                return
            del self._series[oldest]
            self.failures.remove(*oldest)
        self._series[key] = now
        self._series.move_to_end(key)
        self.failures.labels(*key).inc()

    def serve(self, host: str, port: int) -> None:
        """Start the HTTP server thread; a port in use is a ``MetricsError``."""
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            server = _type_for(family)((host, port), _QuietHandler)
        except OSError as exc:
            raise MetricsError(f"--metrics: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        server.set_app(make_wsgi_app(self.registry))
        threading.Thread(target=server.serve_forever, name="proctop-metrics", daemon=True).start()
        self.server = server

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# --- the HTTP server ---------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """Logs nothing (a scrape every 15 s is not news)."""

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        pass


class _MetricsServer(ThreadingWSGIServer):
    """prometheus_client's threading server, bounded: a real backlog, a timeout per
    connection, at most ``MAX_CONNECTIONS`` threads (the next connection waits in the
    backlog until one ends), and no traceback on stderr for a client that went away."""

    request_queue_size = BACKLOG
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closing = False
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[Socket, Any]:
        conn, address = super().get_request()
        conn.settimeout(CONNECTION_TIMEOUT)
        return conn, address

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.2):  # all busy: wait, and let shutdown() in
            if self._closing:
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or hung up: nothing to tell."""

    def shutdown(self) -> None:
        self._closing = True
        super().shutdown()


class _MetricsServer6(_MetricsServer):
    address_family = socket.AF_INET6


def _type_for(family: int) -> type[_MetricsServer]:
    return _MetricsServer6 if family == socket.AF_INET6 else _MetricsServer
