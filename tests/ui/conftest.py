"""Fixtures for the UI tests: a fixed time zone, replay sources and a running app."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import need_tool

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_helpers import SAMPLE

from proctop.kernel.protocol import PROC_EVENT_ALL
from proctop.sources.replay import ReplaySource

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"


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


@pytest.fixture(scope="session")
def proctop_bin():
    """``proctop`` installed from this checkout into a venv that uid 65534 can run."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run proctop as uid 65534 with setpriv (CI runs as root)")
    for tool in ("tmux", "setpriv"):
        need_tool(tool)
    root = tempfile.mkdtemp(prefix="proctop-e2e-")
    try:
        os.chmod(root, 0o755)
        venv = Path(root) / "venv"
        subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", str(REPO)],
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        yield venv / "bin" / "proctop"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pytest_configure(config):
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
