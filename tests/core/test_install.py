"""The README's first command, run as a new user would: it must leave a ``proctop`` on PATH (issue 22 item 6).

Run for real into a fresh home (but for its ``apt-get``, which needs root and the
network, and its last step, which starts the UI): then a login shell with Debian's
default ``~/.profile`` (/etc/skel) finds ``proctop``, as every example in the README
writes it, and it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO

SKEL_PROFILE = Path("/etc/skel/.profile")


def install_command() -> list[str]:
    """The README's install line, split at its ``&&``."""
    lines = (REPO / "README.md").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("# install and run"))
    return [step.strip() for step in lines[at + 1].split(" && ")]


def test_the_readme_install_puts_proctop_on_path(tmp_path):
    if not SKEL_PROFILE.exists():
        pytest.skip("no /etc/skel/.profile: not a Debian-like system")
    steps = install_command()
    assert steps[0].endswith("apt-get install -y python3-venv gcc python3-dev")
    assert steps[-1] == "~/.local/bin/proctop"  # the first run, by the path the link just made
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(SKEL_PROFILE, home / ".profile")
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    subprocess.run(
        ["sh", "-c", " && ".join(steps[1:-1])],
        cwd=REPO,
        env=env,
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )
    found = subprocess.run(
        ["bash", "-l", "-c", "command -v proctop && proctop --version"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    where, version = found.stdout.splitlines()
    assert where == f"{home}/.local/bin/proctop"
    assert os.path.realpath(where) == f"{home}/.local/proctop/bin/proctop"
    assert version.startswith("proctop ")
