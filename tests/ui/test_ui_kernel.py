"""The TUI on the real proc connector: the mask keys change what the kernel sends."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
from ui_helpers import details_body, screen_text, wait_for

from proctop.kernel.probe import probe
from proctop.kernel.protocol import PROC_EVENT_NONZERO_EXIT
from proctop.model.enrich import Enricher
from proctop.model.kinds import DEFAULT_MASK
from proctop.sinks.ui.app import ProctopApp
from proctop.sources.connector import ConnectorSource

pytestmark = pytest.mark.kernel


def failed_exits(app, pid: int) -> list:
    rows = list(app.timeline.rows) + list(app.pending)
    return [r for r in rows if r.ev.event == "exit" and r.ev.tgid == pid]


def run_failing(code: int) -> int:
    proc = subprocess.Popen(["sh", "-c", f"exit {code}"])
    assert proc.wait() == code
    return proc.pid


@pytest.fixture
def connector():
    source = ConnectorSource(probe(), DEFAULT_MASK)
    source.start()
    yield source
    source.close()


async def test_nonzero_exit_key_turns_kernel_delivery_off_and_on(connector):
    app = ProctopApp(connector, rate_interval=None)
    async with app.run_test(size=(130, 30)) as pilot:  # wide: the header lists the toggles that are off too
        # the UI is live: a failing command shows up with its status
        first = run_failing(7)
        assert await wait_for(pilot, lambda: failed_exits(app, first), timeout=5), "failed exit never arrived"
        row = failed_exits(app, first)[0]
        assert row.detail.startswith("exit 7")
        # the details panel: this test process is the parent, with its own ancestors from /proc
        app.view_filter = f"event:exit pid:{first}"  # the exit row, not `sh -c exit 7`'s exec row
        await pilot.press("end", "enter")
        body = await details_body(pilot, app)
        assert [r.ev.pid for r in app.timeline.view] == [first]
        assert "status    exit 7" in body
        me = os.getpid()
        chain = [line.strip() for line in body.split("ancestry", 1)[1].splitlines()]
        assert any(line.startswith(f"\u2514 {me} ") and "pytest" in line for line in chain[:1]), body
        assert len(chain) >= 2, body  # and beyond it, whatever started pytest
        await pilot.press("escape")
        app.view_filter = ""

        await pilot.press("x")
        await pilot.pause()
        assert not connector.mask & PROC_EVENT_NONZERO_EXIT
        assert "x[ ]nonzero-exit" in screen_text(app)
        hidden = run_failing(7)
        # give the kernel and the reader ample time to deliver what they would deliver
        marker = run_failing(0)  # exec of a marker command: proof the reader is still live
        assert await wait_for(
            pilot, lambda: any(r.ev.tgid == marker and r.ev.event == "exec" for r in app.timeline.rows), timeout=5
        )
        await pilot.pause(0.5)
        assert failed_exits(app, hidden) == []

        await pilot.press("x")
        await pilot.pause()
        assert connector.mask & PROC_EVENT_NONZERO_EXIT
        assert "x[x]nonzero-exit" in screen_text(app)
        shown = run_failing(7)
        assert await wait_for(pilot, lambda: failed_exits(app, shown), timeout=5), "failed exit did not come back"
        assert failed_exits(app, shown)[0].detail.startswith("exit 7")
        assert failed_exits(app, hidden) == []


async def test_the_process_table_is_touched_by_the_reader_thread_only(connector, monkeypatch):
    """Enrichment and the details panel's ancestry run on one thread, the reader's, never the UI's."""
    threads: dict[str, set[int]] = {"enrich": set(), "ancestry": set()}

    def spy(name, method):
        def spied(*args, **kwargs):
            threads[name].add(threading.get_ident())
            return method(*args, **kwargs)

        return spied

    monkeypatch.setattr(connector.enricher, "enrich", spy("enrich", connector.enricher.enrich))
    threads["table"] = set()
    table_of = Enricher.procs.fget

    def procs(enricher):  # every use of the live table, whichever method it comes from
        threads["table"].add(threading.get_ident())
        return table_of(enricher)

    monkeypatch.setattr(Enricher, "procs", property(procs, Enricher.procs.fset))
    monkeypatch.setattr(connector, "ancestry", spy("ancestry", connector.ancestry))
    app = ProctopApp(connector, rate_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        pid = run_failing(5)
        assert await wait_for(pilot, lambda: failed_exits(app, pid), timeout=5), "failed exit never arrived"
        app.view_filter = f"event:exit pid:{pid}"
        await pilot.press("end", "enter")
        body = await details_body(pilot, app)
        assert f"\u2514 {os.getpid()} " in body  # the ancestry was answered
    assert threads["ancestry"] and threads["enrich"]
    assert threads["ancestry"] == threads["enrich"] == threads["table"], threads  # not the socket reader's either
    assert threading.main_thread().ident not in threads["enrich"]
