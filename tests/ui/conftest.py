"""Fixtures for the UI tests: a fixed time zone, replay sources and a running app."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_helpers import SAMPLE

from proctop.kernel.protocol import PROC_EVENT_ALL
from proctop.sources.replay import ReplaySource


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """The time column in UTC, so screens and snapshots do not depend on the machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def sample_source():
    source = ReplaySource(SAMPLE, PROC_EVENT_ALL)
    source.start()
    yield source
    source.close()


@pytest.fixture
def no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")


def pytest_configure(config):
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
