"""What a run was asked for: one frozen, typed ``Options``, built once from the command line and the config file.

``build`` takes argparse's namespace (what the command line said) and the
config file (``proctop.cli.config``: what the user set once), checks them
together, and returns the options every later step reads: the source is made
from them, the sinks and the UI are given their fields. Nothing writes to them
afterwards, and nothing reads the namespace again.

Command-line options win over the file. The config's ``events`` set the kernel
filter of a live run only: a replay shows everything it recorded unless
``--only`` says otherwise (README, "Using it"). A ``--theme`` given on the
command line is resolved and checked here, and a ``[keys]`` table against the
real bindings, in every mode: ``--json`` refuses a bad ``[keys]`` as the UI does.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar

from proctop.cli import config
from proctop.cli.config import DEFAULT_HISTORY, ConfigError
from proctop.errors import ProctopError
from proctop.model.failures import LOOP_BURST, LOOP_INTERVAL
from proctop.model.kinds import DEFAULT_MASK, PROC_EVENT_ALL, parse_mask
from proctop.sinks.record import DEFAULT_MAX_SIZE

T = TypeVar("T")
SourceChoice = Literal["auto", "native", "kmod", "userspace"]


class UsageError(ProctopError):
    """Bad command-line input."""

    status = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Everything a run was asked for, checked. Defaults are a bare ``proctop``'s with no config file."""

    # what to watch
    mask: int = DEFAULT_MASK  # the kernel filter: --only, else the config's events (live), else the default
    replay: str | None = None  # --replay FILE or DIR
    command: tuple[str, ...] = ()  # -- COMMAND [ARG ...]
    source: SourceChoice = "auto"
    threads: bool = False
    names: bool = True  # read each exec for names even when the mask lacks exec
    since: float | None = None  # --replay's time window (epoch seconds)
    until: float | None = None
    # for how long
    duration: float | None = None
    count: int | None = None
    # where the events go
    json: bool = False
    summary: bool = False
    record: str | None = None
    record_max_size: int = DEFAULT_MAX_SIZE
    record_max_age: float | None = None
    metrics: str | None = None  # ADDR:PORT as given (parsed before the probe, proctop/cli/always_on.py)
    # the failures board (UI and --summary)
    loop_burst: int = LOOP_BURST
    loop_interval: float = LOOP_INTERVAL
    # the UI
    theme: str | None = None  # full theme name (``proctop-dark``), resolved; None: the default
    history: int = DEFAULT_HISTORY
    keymap: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # binding id -> keys
    config_path: Path | None = None  # where the palette's theme is saved; None under --no-config

    @property
    def headless(self) -> bool:
        """No UI: ``--json``, ``--summary`` or ``--record``."""
        return self.json or self.summary or self.record is not None

    @property
    def save_theme(self) -> Callable[[str], str | None] | None:
        """Remembers the theme chosen in the UI's palette in the config file; None with nowhere to save.

        A callable, not the module: the UI layer does not import the command line (tests/test_layers.py).
        """
        return None if self.config_path is None else functools.partial(config.save_theme, self.config_path)


def build(args: argparse.Namespace, command: Sequence[str] = ()) -> Options:
    """The options of a run: ``args`` (the parser's, proctop/cli/main.py) over the config file; checked.

    Raises ``UsageError`` or ``ConfigError`` (status 2), in the order the user
    reads the command line: empty paths, then what cannot go together, then the
    config file, then the event list.
    """
    given = {"replay": args.replay, "record": args.record, "metrics": args.metrics, "config": args.config}
    for option, value in given.items():
        if value == "":  # a path or address left empty (an unset variable): not "none"
            raise UsageError(f"--{option}: must not be empty")
    if command and args.replay:
        raise UsageError("-- COMMAND watches a live command; it cannot go with --replay")
    read, config_path = _read_config(args)
    theme = read.theme
    if args.theme is not None:  # imported only then: the themes module is the UI's
        from proctop.sinks.ui.themes import resolve_theme_name

        theme = resolve_theme_name(args.theme)
    keymap = dict(read.keymap)
    if keymap:  # checked against the real bindings in every mode
        from proctop.sinks.ui.keys import check_keymap

        problem = check_keymap(keymap)
        if problem:
            raise ConfigError(f"config file {config_path}: [keys] {problem}")
    # A replay shows everything it recorded unless --only says otherwise: the file's events are a live filter.
    only = args.only if args.only is not None or args.replay else read.events
    mask = parse_mask(only) if only is not None else PROC_EVENT_ALL if args.replay else DEFAULT_MASK
    history = _first(args.history, read.history, default=DEFAULT_HISTORY)
    names = _first(None if args.names is None else args.names == "on", read.names, default=True)  # --names on/off wins
    return Options(
        mask=mask,
        replay=args.replay,
        command=tuple(command),
        source=args.source,
        threads=args.threads,
        names=names,
        since=args.since,
        until=args.until,
        duration=args.duration,
        count=args.count,
        json=args.json,
        summary=args.summary,
        record=args.record,
        record_max_size=args.record_max_size,
        record_max_age=args.record_max_age,
        metrics=args.metrics,
        loop_burst=args.loop_burst,
        loop_interval=args.loop_interval,
        theme=theme,
        history=history,
        keymap=MappingProxyType(keymap),
        config_path=config_path,
    )


def _first(*values: T | None, default: T) -> T:
    """The first value that is not None: the command line's, else the file's, else ``default``."""
    return next((value for value in values if value is not None), default)


def _read_config(args: argparse.Namespace) -> tuple[config.Config, Path | None]:
    """The config file ``--config``/``--no-config`` name (else the default one), read and checked; and its path."""
    if args.no_config:
        return config.Config(), None
    if args.config is not None:
        path = Path(args.config)
        return config.load(path, required=True), path
    path_or_none = config.default_path()
    return config.load(path_or_none), path_or_none
