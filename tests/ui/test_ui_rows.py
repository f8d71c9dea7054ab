"""Untrusted strings made safe, and the text of the timeline's columns."""

from __future__ import annotations

from proctop.model.events import Event
from proctop.sinks.text.cells import format_time
from proctop.sinks.text.rows import Row, detail_of, format_lifetime
from proctop.sinks.text.sanitize import safe, safe_argv


def test_safe_escapes_every_terminal_control():
    assert safe("plain /usr/bin/ls -l") == "plain /usr/bin/ls -l"
    assert safe("a\x1b]0;pwned\x07b") == r"a\x1b]0;pwned\x07b"
    assert safe("tab\there\nnew\rcr\x00nul") == r"tab\x09here\x0anew\x0dcr\x00nul"
    assert safe("del\x7f") == r"del\x7f"
    assert safe("csi\x9b2J c1\x85") == r"csi\x9b2J c1\x85"  # C1 controls as characters
    assert safe("bad\udcffbyte") == r"bad\xffbyte"  # surrogateescape of an undecodable byte
    assert safe("lone\ud800") == r"lone\ud800"
    assert safe("rtl\u202eevil") == r"rtl\u202eevil"  # bidi override reorders the display
    assert safe("[bold red]x[/]") == "[bold red]x[/]"  # markup is not ours to interpret
    assert safe("ünïcödé 漢字") == "ünïcödé 漢字"
    assert safe(None) == ""
    assert safe_argv(["sh", "-c", "echo \x1b[2J"]) == r"sh -c echo \x1b[2J"


def test_format_time_and_lifetime(utc):
    assert format_time(1700000000.0) == "22:13:20.000"
    assert format_time(1700000000.9996) == "22:13:21.000"
    assert format_lifetime(0.0123) == "12ms"
    assert format_lifetime(1.5) == "1.50s"
    assert format_lifetime(75) == "1m15s"
    assert format_lifetime(7300) == "2h01m"
    assert format_lifetime(None) == ""
    assert format_lifetime(0.0004) == "0.4ms"  # kernel timestamps: sub-millisecond is real
    assert format_lifetime(0.003, 0.01) == "<10ms"  # /proc clock ticks: no finer than one
    assert format_lifetime(0.12, 0.01) == "~120ms"


def test_detail_column():
    assert detail_of(Event(ts=0, event="exit", exit_code=3, lifetime=0.2)) == "exit 3 after 200ms"
    assert detail_of(Event(ts=0, event="exit", exit_code=3, lifetime=0.2), short=True) == "exit 3"
    segv = Event(ts=0, event="exit", signal="SIGSEGV", core_dumped=True)
    assert detail_of(segv) == "SIGSEGV (core dumped)"
    assert detail_of(Event(ts=0, event="uid", uid=1000, ruid=0, euid=0)) == "uid 1000\u21920"
    assert detail_of(Event(ts=0, event="uid", uid=1000, ruid=0, euid=1000)) == "uid 1000\u21920 euid 1000"
    assert detail_of(Event(ts=0, event="gid", rgid=100, egid=100)) == "gid \u2192100"
    assert Row(Event(ts=0, event="comm", comm="x\x1by")).detail == "comm \u2192 x\\x1by"  # made safe in the row
    assert detail_of(Event(ts=0, event="ptrace", tracer_pid=42)) == "traced by 42"
    assert detail_of(Event(ts=0, event="ptrace", tracer_pid=0)) == "detached"
    assert detail_of(Event(ts=0, event="lost", count=1)) == "1+ event lost"


def test_row_command_falls_back_to_comm_then_question_mark():
    assert Row(Event(ts=0, event="exec", cmdline=["a", "b"], comm="c")).command == "a b"
    assert Row(Event(ts=0, event="exec", comm="c\x1b")).command == r"c\x1b"
    assert Row(Event(ts=0, event="exec")).command == "?"
    assert Row(Event(ts=0, event="exit", exit_code=1)).cls == "failed"
    assert Row(Event(ts=0, event="exit", signal="SIGKILL")).cls == "signal"
    assert Row(Event(ts=0, event="exit", exit_code=0)).cls == "exit"


def test_a_nameless_row_names_what_is_known():
    ev = Event(ts=0, event="exit", pid=5, tgid=5, exit_code=2, parent_cmdline=["make", "-k", "-j2"])
    assert Row(ev).command == "? (child of make -k -j2)"
    assert Row(Event(ts=0, event="exit", pid=5, tgid=5, parent_comm="cron")).command == "? (child of cron)"
    assert Row(Event(ts=0, event="exit", pid=5, tgid=5)).command == "?"
