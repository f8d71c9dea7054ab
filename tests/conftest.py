"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from helpers import NonrootSubscribe, nonroot_subscribe_answer


@pytest.fixture(autouse=True, scope="session")
def _no_user_config(tmp_path_factory):
    """No test reads or writes the real ~/.config/proctop: every proctop the tests start,
    in process or as a subprocess, looks in an empty XDG_CONFIG_HOME of its own."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))


@pytest.fixture
def nonroot_child():
    """Run ``fn`` in a forked child that dropped to uid/gid 65534; returns its result.

    A forked child, not another interpreter: /root (where the venv lives on CI)
    is not readable by nobody. The result travels back through a pipe as repr.
    """

    def call(fn: Callable[[], object]):
        import pickle

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            status = 0
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                result = ("ok", fn())
            except BaseException as exc:  # report everything to the parent
                result = ("error", f"{type(exc).__name__}: {exc}")
                status = 1
            with os.fdopen(w, "wb") as f:
                pickle.dump(result, f)
            os._exit(status)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        kind, value = pickle.loads(data)
        if kind == "error":
            raise AssertionError(f"non-root child failed: {value}")
        return value

    return call


@pytest.fixture
def nonroot_subscribe() -> NonrootSubscribe:
    return nonroot_subscribe_answer()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``nonroot`` subscribe as uid 65534: skipped, with the kernel's answer, where it refuses
    (marked at collection, so the skip is reported at the test, not here)."""
    marked = [item for item in items if item.get_closest_marker("nonroot") is not None]
    if marked:
        answer = nonroot_subscribe_answer()
        if not answer.allowed:
            for item in marked:
                item.add_marker(pytest.mark.skip(reason=answer.reason))


@pytest.fixture(params=["python", "c"])
def reader_kind(request, monkeypatch) -> str:
    """Run the test over both socket readers, the Python twin and the compiled one (issue 20).

    Without the compiled reader the "c" run is skipped on a laptop and fails under .ci/run
    (PROCTOP_REQUIRE_TOOLS=1), which builds it: the twin tests are never silently halved there.
    """
    from proctop.sources.choice import compiled

    if request.param == "c" and not compiled():
        message = "the compiled reader is not built (pip install . needs gcc and python3-dev)"
        if os.environ.get("PROCTOP_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.setenv("PROCTOP_READER", request.param)
    return str(request.param)
