"""One identity of a command: the rules on real argv shapes, the unit in the key, and hostile argv."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctop.model.events import Event
from proctop.model.failures import FailureBoard, command_key
from proctop.model.identity import (
    KEY_LIMIT,
    NAME_LIMIT,
    PROGRAMS,
    TEXT_LIMIT,
    Identity,
    Role,
    filter_term,
    identity,
    of_argv,
)
from proctop.sinks.metrics import command_label

CC1 = "/usr/lib/gcc/x86_64-linux-gnu/12/cc1"


@pytest.mark.parametrize(
    ("argv", "key", "name"),
    [
        # plain programs: argv[0]'s name, whatever path ran it
        (["/usr/bin/make", "-k", "-j2"], "make", "make"),
        (["./crashme", "--now"], "crashme", "crashme"),
        (["-bash"], "bash", "bash"),  # a login shell
        # interpreters: the script (its path in the key), -m module, or inline code, marked
        (["/bin/sh", "/usr/local/bin/flaky-job", "--retry"], "/usr/local/bin/flaky-job", "flaky-job"),
        (["bash", "-e", "-o", "pipefail", "./build.sh"], "./build.sh", "build.sh"),
        (["python3.11", "-u", "-W", "ignore", "/opt/job.py", "x"], "/opt/job.py", "job.py"),
        (["python3", "-m", "http.server", "8000"], "python3 -m http.server", "python3 -m http.server"),
        (["python3", "-mpytest", "-q"], "python3 -m pytest", "python3 -m pytest"),
        (["sh", "-c", "exit 3"], "sh -c exit", "sh -c 'exit \u2026'"),
        (["dash", "-ec", "false"], "dash -c false", "sh -c 'false'".replace("sh", "dash")),
        (["bash", "--norc", "-c", "make all; echo"], "bash -c make", "bash -c 'make \u2026'"),
        (["python3", "-c", "import sys; sys.exit(2)"], "python3 -c import", "python3 -c 'import \u2026'"),
        (["perl", "-e", "die"], "perl -e die", "perl -e 'die'"),
        (["node", "--eval=process.exit(1)"], "node --eval process.exit", "node --eval 'process.exit \u2026'"),
        (["sh"], "sh", "sh"),  # reads its script from stdin: nothing more to say
        (["python3", "-"], "python3", "python3"),
        (["sh", ""], "sh", "sh"),
        # launchers: what they launch, options and operands skipped, chains followed
        (["env", "-i", "A=1", "nice", "-n", "5", "timeout", "-s", "KILL", "5", "python3", "x.py"], "x.py", "x.py"),
        (["sudo", "-u", "root", "--", "/bin/bash", "/root/s.sh"], "/root/s.sh", "s.sh"),
        (["setpriv", "--reuid", "1000", "--clear-groups", "stdbuf", "-oL", "nohup", "job"], "job", "job"),
        (["env"], "env", "env"),  # nothing launched
        # tools: their own name, with the file they worked on (never a temporary one)
        ([CC1, "-quiet", "b.c", "-dumpbase", "b.c", "-dumpdir", "b-", "-o", "/tmp/c.s"], "cc1 b.c", "cc1 b.c"),
        (["gcc", "-c", "src/a.c", "-o", "a.o"], "gcc src/a.c", "gcc a.c"),
        (["x86_64-linux-gnu-gcc-12", "-c", "a.c"], "x86_64-linux-gnu-gcc-12 a.c", "x86_64-linux-gnu-gcc-12 a.c"),
        (["as", "--64", "-o", "a.o", "/tmp/ccq2.s"], "as a.o", "as a.o"),
        ([CC1.replace("cc1", "collect2"), "-plugin", "p.so", "-o", "prog", "a.o"], "collect2 prog", "collect2 prog"),
        (["gcc", "-o", "/tmp/ccXYZ", "x.o"], "gcc", "gcc"),
    ],
)
def test_what_a_command_is(argv, key, name):
    assert of_argv(argv)[:2] == (key, name)


def test_the_arguments_after_what_was_resolved_are_shown_not_grouped():
    ident = identity(Event(ts=0, event="exit", cmdline=["/bin/sh", "/usr/local/bin/flaky-job", "--retry"]))
    assert ident == Identity("/usr/local/bin/flaky-job", "flaky-job", "flaky-job --retry")
    inline = identity(Event(ts=0, event="exit", cmdline=["sh", "-c", "exit 3"]))
    assert inline == Identity("sh -c exit", "sh -c 'exit \u2026'", "sh -c 'exit 3'")  # the code shown whole
    other = identity(Event(ts=0, event="exit", cmdline=["/bin/sh", "/usr/local/bin/flaky-job", "--once"]))
    assert other.key == ident.key


def test_without_argv_the_executable_then_comm_then_the_parent():
    assert identity(Event(ts=0, event="exit", exe="/usr/bin/python3.11 (deleted)")).key == "python3.11"
    assert identity(Event(ts=0, event="exit", comm="kworker")).key == "kworker"
    parent = ["/bin/sh", "/usr/local/bin/flaky-job"]
    assert identity(Event(ts=0, event="exit", parent_cmdline=parent)).key == "child of flaky-job"
    assert identity(Event(ts=0, event="exit", parent_comm="cron")).key == "child of cron"
    assert identity(Event(ts=0, event="exit")).key == "?"


def test_the_unit_is_part_of_the_key_and_never_borrowed():
    """A script in a unit and an unrelated inline loop outside it: two groups, each with its own unit."""
    board = FailureBoard()
    flaky = ["/bin/sh", "/usr/local/bin/flaky-job", "--retry"]
    for i in range(6):
        board.add(Event(ts=100 + i, event="exit", pid=10 + i, cmdline=flaky, exit_code=1, unit="uxflaky.service"))
        board.add(Event(ts=100.5 + i, event="exit", pid=50 + i, cmdline=["sh", "-c", "exit 3"], exit_code=3))
    board.add(Event(ts=200, event="exit", pid=99, cmdline=flaky, exit_code=1))  # the same script, outside the unit
    groups = {g.key: g for g in board.rows()}
    assert set(groups) == {"/usr/local/bin/flaky-job @uxflaky.service", "sh -c exit", "/usr/local/bin/flaky-job"}
    assert groups["sh -c exit"].unit is None and groups["sh -c exit"].statuses_text() == "exit 3 \u00d76"
    assert groups["/usr/local/bin/flaky-job @uxflaky.service"].unit == "uxflaky.service"
    assert groups["/usr/local/bin/flaky-job"].unit is None
    assert command_key(Event(ts=0, event="exit", cmdline=["make"], unit="a.service")) == "make @a.service"


def test_a_group_shows_the_last_argv_it_saw():
    board = FailureBoard()
    board.add(Event(ts=1, event="exit", pid=1, cmdline=["make", "-k", "-j2"], exit_code=2))
    board.add(Event(ts=2, event="exit", pid=2, comm="make", exit_code=2))  # argv not read: the same group
    (group,) = board.rows()
    assert group.count == 2 and group.identity is not None and group.identity.text == "make -k -j2"


def test_the_metrics_label_is_the_identitys_name():
    ev = Event(ts=0, event="exit", comm="cc1", cmdline=[CC1, "-quiet", "a.c", "-o", "/tmp/cc1.s"], exit_code=1)
    assert command_label(ev) == "cc1 a.c"
    assert command_label(Event(ts=0, event="exit", comm="sh", cmdline=["sh", "-c", "exit 3"])) == "sh -c 'exit \u2026'"
    assert command_label(Event(ts=0, event="exit", comm="x\x1b")) == "x\\x1b"


def test_the_filter_term_quotes_what_a_key_holds():
    assert filter_term("sh -c exit @a.service") == 'id:"sh -c exit @a.service"'
    assert filter_term('x "y" \\z') == 'id:"x \\"y\\" \\\\z"'


def test_one_table_says_what_each_program_is():
    assert PROGRAMS["python"].role is Role.INTERPRETER and PROGRAMS["dash"].shell
    assert PROGRAMS["timeout"].role is Role.LAUNCHER and PROGRAMS["timeout"].operands == 1
    assert PROGRAMS["cc1"].role is Role.TOOL and ".c" in PROGRAMS["cc1"].sources


_TEXT = st.text(st.characters(exclude_categories=()), max_size=40) | st.sampled_from(
    ["", "-", "--", "-c", "-m", "-o", "-e", "-u", "=", "a=b", "/", "sh", "env", "timeout", "gcc", "python3", "a.c"]
)


@settings(max_examples=400, deadline=None)
@given(
    argv=st.lists(_TEXT, max_size=12) | st.none(),
    comm=st.none() | _TEXT,
    exe=st.none() | _TEXT,
    unit=st.none() | _TEXT,
    parent=st.none() | st.lists(_TEXT, max_size=4),
)
def test_identity_never_raises_and_is_bounded_and_printable(argv, comm, exe, unit, parent):
    ev = Event(ts=0, event="exit", cmdline=argv, comm=comm, exe=exe, unit=unit, parent_cmdline=parent)
    ident = identity(ev)
    assert 0 < len(ident.key) <= KEY_LIMIT and len(ident.name) <= NAME_LIMIT
    assert ident.key.isprintable() and ident.name.isprintable() and ident.text.isprintable()
    assert len(ident.text) <= TEXT_LIMIT
    assert identity(ev) == ident  # a function of the event alone


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", "x" * 1_000_000],
        ["/bin/sh", "/" + "a/" * 300_000],
        ["\x00\x1b[31m" * 10_000, "\udcff" * 10_000],
        ["gcc", *(["-I", "d"] * 5000), "b.c"],
        ["env"] * 50_000,
        ["timeout", "5"] * 10_000,
        ["python3", "-m"],
        ["sh", "-c"],
        [""],
    ],
)
def test_huge_and_hostile_argv(argv):
    ident = identity(Event(ts=0, event="exit", cmdline=argv, unit="u\x1b" * 10_000))
    assert len(ident.key) <= KEY_LIMIT and len(ident.name) <= NAME_LIMIT and ident.key.isprintable()
    assert "\x1b" not in ident.key + ident.name + ident.text
