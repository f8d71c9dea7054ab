"""What a failing process *is*: one identity of a command, for the board, ``--summary``, metrics and ``id:``.

argv[0] names the program the kernel ran, which is often not what the user
thinks of as "the command": every shell script is ``sh``, every Python
program ``python3``, and a compiler's helper is ``/usr/lib/gcc/x86_64-linux-gnu/12/cc1``
whatever file it choked on. Grouping by it mixed unrelated failures and hid
a build's broken files. The rules, all driven by ``PROGRAMS``:

* a **launcher** (env, nice, timeout, sudo, setpriv, stdbuf, nohup, ...) is
  what it launches: its options (and their arguments) are skipped;
* an **interpreter** (sh/bash/dash/zsh, python*, perl, ruby, node, ...) is
  the script it runs (the key keeps the path as given, the name its basename),
  ``python3 -m module``, or inline code, marked ``sh -c 'exit …'`` with the
  code's first word (the key: ``sh -c exit``);
* a **tool** (gcc/cc/cc1/clang/g++/as/ld, ...) is its basename, with the file it
  worked on (the first source operand, else its ``-o`` output; never a
  compiler's temporary file), so a build's failures are one row per file:
  ``cc1 a.c``;
* anything else is argv[0]'s basename; without argv the executable's, then
  comm, then ``child of`` the parent's identity;
* the unit (systemd unit or container) is part of the key: one group never
  mixes two units, and no unit is charged with another process's failures.

Pure and Textual-free. Everything here is untrusted (argv is chosen by
whoever ran the process): nothing raises, every part is cut before it is
escaped, non-printable characters become visible escapes, and key and name
are bounded (``KEY_LIMIT``, ``NAME_LIMIT``).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proctop.model.events import Event

#: Characters of a key kept (the board's group key, the ``id:`` filter's value).
KEY_LIMIT = 256
#: Characters of the unit kept in a key.
UNIT_LIMIT = 64
#: Characters of a name kept (what the board, the summary and metrics show).
NAME_LIMIT = 120
#: Characters of one argument or path looked at: a name, not a payload.
PART_LIMIT = 160
#: Characters of inline code's first word kept.
WORD_LIMIT = 60
#: Characters of the text shown for a group (its name and the latest arguments).
TEXT_LIMIT = 512
#: Arguments scanned for options, operands and files (a compile may pass hundreds of -I).
SCAN_LIMIT = 1024
#: Launchers followed in a chain (``sudo env nice python3 x.py``).
HOPS = 8
#: Marks inline code whose text went on past its first word.
MORE = "\u2026"


class Role(Enum):
    """What a program does with its arguments."""

    LAUNCHER = "launcher"  # runs the rest of argv as a command
    INTERPRETER = "interpreter"  # runs a script, a module, or inline code
    TOOL = "tool"  # works on files: its identity names the file


@dataclass(frozen=True, slots=True)
class Program:
    """One row of the table: how to read a program's argv."""

    role: Role
    #: Options that take the next argument (``-u user``; a ``--long=value`` never needs listing).
    takes_arg: frozenset[str] = frozenset()
    #: Options whose argument is inline code (``-c``); for shells any option cluster holding ``c``.
    inline: frozenset[str] = frozenset()
    #: Options whose argument is a module to run (``python3 -m``).
    module: frozenset[str] = frozenset()
    #: Operands a launcher takes before the command (``timeout DURATION``, ``chroot DIR``).
    operands: int = 0
    #: A shell: ``-c`` may sit in a cluster (``sh -ec``), the code being the first operand.
    shell: bool = False
    #: ``NAME=value`` words before the command are assignments (env).
    assignments: bool = False
    #: A tool's files worth naming, by extension.
    sources: frozenset[str] = frozenset()


def _opts(*names: str) -> frozenset[str]:
    return frozenset(names)


_C_SOURCES = _opts(".c", ".cc", ".cpp", ".cxx", ".c++", ".C", ".m", ".mm", ".i", ".ii", ".s", ".S", ".sx", ".asm")
_FORTRAN = _opts(".f", ".f90", ".F90", ".f95", ".F")
_SHELL = Program(Role.INTERPRETER, _opts("-o", "+o", "-O", "+O", "--rcfile", "--init-file"), shell=True)
_PYTHON = Program(
    Role.INTERPRETER, _opts("-W", "-X", "--check-hash-based-pycs"), inline=_opts("-c"), module=_opts("-m")
)
_CC = Program(
    Role.TOOL,
    _opts("-o", "-x", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter")
    | _opts("-MF", "-MT", "-MQ")
    | _opts("-imultiarch", "-dumpdir", "-dumpbase", "-dumpbase-ext", "-auxbase", "-auxbase-strip", "-iprefix", "-L"),
    sources=_C_SOURCES,
)
_LD = Program(Role.TOOL, _opts("-o", "-L", "-m", "-T", "-e", "-z", "--sysroot", "-plugin", "-plugin-opt"))

#: The one table of programs that are not what they run. Keyed by basename, version and
#: target prefix removed (``x86_64-linux-gnu-gcc-12`` is ``gcc``; see ``program_of``).
PROGRAMS: dict[str, Program] = {
    **dict.fromkeys(("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh"), _SHELL),
    "python": _PYTHON,
    "pypy": _PYTHON,
    "perl": Program(Role.INTERPRETER, _opts("-I", "-M", "-m"), inline=_opts("-e", "-E")),
    "ruby": Program(Role.INTERPRETER, _opts("-I", "-r", "-C", "-E", "-F"), inline=_opts("-e")),
    "node": Program(
        Role.INTERPRETER,
        _opts("-r", "--require", "--import", "--loader", "--experimental-loader", "--input-type"),
        inline=_opts("-e", "--eval", "-p", "--print"),
    ),
    "nodejs": Program(Role.INTERPRETER, _opts("-r", "--require"), inline=_opts("-e", "--eval", "-p", "--print")),
    "php": Program(Role.INTERPRETER, _opts("-c", "-d", "-z"), inline=_opts("-r")),
    "lua": Program(Role.INTERPRETER, _opts("-l"), inline=_opts("-e")),
    "tclsh": Program(Role.INTERPRETER),
    "env": Program(Role.LAUNCHER, _opts("-u", "--unset", "-C", "--chdir", "-S", "--split-string"), assignments=True),
    "nice": Program(Role.LAUNCHER, _opts("-n", "--adjustment")),
    "ionice": Program(Role.LAUNCHER, _opts("-c", "--class", "-n", "--classdata")),
    "timeout": Program(Role.LAUNCHER, _opts("-s", "--signal", "-k", "--kill-after"), operands=1),
    "sudo": Program(Role.LAUNCHER, _opts("-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "-R")),
    "doas": Program(Role.LAUNCHER, _opts("-u", "-C")),
    "runuser": Program(Role.LAUNCHER, _opts("-u", "-g", "-G", "--user", "--group")),
    "setpriv": Program(
        Role.LAUNCHER,
        _opts("--reuid", "--regid", "--ruid", "--euid", "--rgid", "--egid", "--groups", "--inh-caps")
        | _opts("--ambient-caps", "--bounding-set", "--securebits", "--pdeathsig", "--selinux-label")
        | _opts("--apparmor-profile", "--landlock-access", "--landlock-rule"),
    ),
    "stdbuf": Program(Role.LAUNCHER, _opts("-i", "-o", "-e", "--input", "--output", "--error")),
    "nohup": Program(Role.LAUNCHER),
    "setsid": Program(Role.LAUNCHER),
    "chrt": Program(Role.LAUNCHER, operands=1),
    "taskset": Program(Role.LAUNCHER, operands=1),
    "chroot": Program(Role.LAUNCHER, _opts("--userspec", "--groups"), operands=1),
    "flock": Program(Role.LAUNCHER, _opts("-w", "--timeout", "-E", "--conflict-exit-code"), operands=1),
    "unshare": Program(Role.LAUNCHER, _opts("-S", "--setuid", "-G", "--setgid", "-R", "--root", "-w", "--wd")),
    "nsenter": Program(Role.LAUNCHER, _opts("-t", "--target", "-S", "--setuid", "-G", "--setgid")),
    "time": Program(Role.LAUNCHER, _opts("-f", "--format", "-o", "--output")),
    "xargs": Program(Role.LAUNCHER, _opts("-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file")),
    "busybox": Program(Role.LAUNCHER),
    **dict.fromkeys(("gcc", "cc", "c++", "g++", "clang", "clang++", "cpp", "cc1", "cc1plus", "cc1obj"), _CC),
    **dict.fromkeys(("as", "gas"), Program(Role.TOOL, _opts("-o", "-I", "--defsym"), sources=_C_SOURCES)),
    **dict.fromkeys(("ld", "ld.bfd", "ld.gold", "ld.lld", "lld", "collect2", "mold"), _LD),
    "rustc": Program(Role.TOOL, _opts("-o", "--out-dir", "--crate-name", "-L", "--cfg"), sources=_opts(".rs")),
    "javac": Program(Role.TOOL, _opts("-d", "-cp", "-classpath", "-sourcepath"), sources=_opts(".java")),
    **dict.fromkeys(("gfortran", "f951"), Program(Role.TOOL, _opts("-o", "-I", "-J"), sources=_FORTRAN)),
}

#: ``python3.11``, ``pypy3``, ``perl5.36``, ``ruby3.1``, ``gcc-12``, ``clang-16``: a version after the name.
_VERSION = re.compile(r"^(.*?)(?:-?\d+(?:\.\d+)*)$")
#: ``x86_64-linux-gnu-gcc``, ``aarch64-none-elf-as``: a target triplet before a tool's name.
_TRIPLET = re.compile(r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_.]+){1,3}-(?=[^-]+$)")
#: Shell words that end the first simple command of inline code.
_WORD_END = re.compile(r"[\s;&|()<>`]")
#: Compilers' temporary files (``/tmp/ccq2Xk1a.s``): named per run, so never part of a key.
_TEMP = re.compile(r"^(?:/tmp|/var/tmp)/")


@dataclass(frozen=True, slots=True)
class Identity:
    """One command's identity.

    ``key`` groups (exact, with the unit: ``/usr/local/bin/flaky-job @flaky.service``);
    ``name`` is what to show (``flaky-job``, ``sh -c 'exit …'``, ``cc1 a.c``,
    ``python3 -m http.server``); ``text`` the name with what the latest run added,
    shown but never grouped by: the arguments after a script (``flaky-job --retry``),
    or the whole inline code (``sh -c 'exit 3'``). All printable and bounded.
    """

    key: str
    name: str
    text: str = ""


def identity(ev: Event) -> Identity:
    """The identity of ``ev``'s process (see the module docstring); never raises."""
    what, name, text = _what(ev)
    what = what[: KEY_LIMIT - UNIT_LIMIT - 2] or "?"
    key = what if not ev.unit else f"{what} @{printable(ev.unit[:UNIT_LIMIT])[:UNIT_LIMIT]}"
    return Identity(key[:KEY_LIMIT], name[:NAME_LIMIT], (text or name)[:TEXT_LIMIT])


def filter_term(key: str) -> str:
    """The view filter's term for exactly this key: ``id:"…"`` (quotes and backslashes escaped)."""
    return 'id:"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _what(ev: Event) -> tuple[str, str, str]:
    """(key without the unit, name, text or "") from argv, else exe, comm, the parent."""
    if ev.cmdline and ev.cmdline[0]:
        return of_argv(ev.cmdline)
    if ev.exe:
        base = _base(ev.exe.removesuffix(" (deleted)"))
        return base, base, ""
    if ev.comm:
        comm = printable(ev.comm)
        return comm, comm, ""
    if ev.parent_cmdline and ev.parent_cmdline[0]:
        _, parent, _ = of_argv(ev.parent_cmdline)
    elif ev.parent_comm:
        parent = printable(ev.parent_comm)
    else:
        return "?", "?", ""
    return f"child of {parent}", f"child of {parent}", ""


def of_argv(argv: list[str]) -> tuple[str, str, str]:
    """(key without the unit, name, text or "") of one argv, following launchers ``HOPS`` deep."""
    argv = argv[:SCAN_LIMIT]
    for _ in range(HOPS):
        base = _base(argv[0]) if argv else "?"
        program = program_of(base)
        if program is None:
            return base, base, _with(base, argv[1:])
        if program.role is Role.LAUNCHER:
            rest = argv[_command_start(program, argv) :]
            if not rest or not rest[0]:
                return base, base, _with(base, argv[1:])
            argv = rest
            continue
        if program.role is Role.TOOL:
            return _tool(base, program, argv)
        return _interpreted(base, program, argv)
    base = _base(argv[0]) if argv else "?"
    return base, base, ""


def program_of(base: str) -> Program | None:
    """The table's row for a basename: as is, without a version, without a target prefix."""
    base = base.lstrip("-")  # a login shell's argv[0]: -bash
    found = PROGRAMS.get(base)
    if found is not None:
        return found
    match = _VERSION.match(base)
    unversioned = match.group(1) if match and match.group(1) else base
    found = PROGRAMS.get(unversioned)
    if found is not None:
        return found
    triplet = _TRIPLET.match(unversioned)
    if triplet:
        found = PROGRAMS.get(unversioned[triplet.end() :])
        if found is not None and found.role is Role.TOOL:  # only tools come with a target prefix
            return found
    return None


def _command_start(program: Program, argv: list[str]) -> int:
    """Where a launcher's command begins in ``argv``."""
    i, operands = 1, program.operands
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("-") and len(arg) > 1:
            i += 2 if arg in program.takes_arg else 1
            continue
        if program.assignments and "=" in arg[:PART_LIMIT]:
            i += 1
            continue
        if operands:
            operands -= 1
            i += 1
            continue
        break
    while program.assignments and i < len(argv) and "=" in argv[i][:PART_LIMIT] and not argv[i].startswith("/"):
        i += 1
    while operands and i < len(argv):  # operands after ``--``
        operands -= 1
        i += 1
    return i


def _interpreted(base: str, program: Program, argv: list[str]) -> tuple[str, str, str]:
    """A script's path, ``-m module``, or inline code; the interpreter alone when it reads stdin."""
    name = _base(argv[0]).lstrip("-") or base
    i = 1
    inline = False
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "-" or not arg.startswith(("-", "+")) or len(arg) == 1:
            break
        if arg in program.takes_arg:
            i += 2
            continue
        flag, _, joined = arg.partition("=")
        module: str | None = None
        if flag in program.module:  # -m module, --module=module
            module, after = (joined, i + 1) if joined else (argv[i + 1] if i + 1 < len(argv) else "", i + 2)
        elif arg[:2] in program.module and not arg.startswith("--"):  # -mmodule
            module, after = arg[2:], i + 1
        if module is not None:
            what = f"{name} -m {printable(module[:PART_LIMIT])}"
            return what, what, _with(what, argv[after:])
        code: str | None = None
        if flag in program.inline:
            code = joined if joined else (argv[i + 1] if i + 1 < len(argv) else "")
        elif len(arg) > 2 and arg[:2] in program.inline and not arg.startswith("--"):
            code = arg[2:]  # python3 -cprint(1)
        if code is not None:
            return _inline(name, arg[:2] if not arg.startswith("--") else flag, code)
        if program.shell and not arg.startswith("--") and "c" in arg[1:]:
            inline = True  # sh -c, sh -ec: the code is the first operand
        i += 1
    if inline:
        return _inline(name, "-c", argv[i] if i < len(argv) else "")
    if i >= len(argv) or argv[i] in ("-", ""):
        return name, name, ""
    script = printable(argv[i][:PART_LIMIT])
    name = _base(argv[i])
    return script, name, _with(name, argv[i + 1 :])


def _inline(interpreter: str, flag: str, code: str) -> tuple[str, str, str]:
    """``sh -c 'exit 3'``: keyed by the code's first word, named so it reads as inline code."""
    text = code[:PART_LIMIT].lstrip()
    match = _WORD_END.search(text)
    word = text[: match.start()] if match else text
    word = word.strip("'\"")
    more = bool(text[len(word) :].strip()) or len(code) > PART_LIMIT
    word = printable(word)[:WORD_LIMIT]
    what = f"{interpreter} {flag} {word}".rstrip()
    shown = (f"{word} {MORE}" if word else MORE) if more else word
    whole = printable(code[:TEXT_LIMIT]) + (MORE if len(code) > TEXT_LIMIT else "")
    return what, f"{interpreter} {flag} '{shown}'", f"{interpreter} {flag} '{whole}'"


def _tool(base: str, program: Program, argv: list[str]) -> tuple[str, str, str]:
    """A tool and the file it worked on: its first source operand, else its ``-o`` output."""
    source = output = None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in program.takes_arg:
            if arg == "-o" and i + 1 < len(argv) and output is None:
                output = argv[i + 1]
            i += 2
            continue
        if (
            source is None
            and not arg.startswith("-")
            and posixpath.splitext(arg[-PART_LIMIT:])[1] in program.sources
            and not _TEMP.match(arg)
        ):
            source = arg
        i += 1
    if output is not None and _TEMP.match(output):
        output = None
    worked_on = source or output
    if not worked_on:
        return base, base, ""
    shown = printable(worked_on[-PART_LIMIT:])
    return f"{base} {shown}", f"{base} {_base(worked_on)}", ""


def _base(path: str) -> str:
    """A path's last component, printable and cut (a trailing slash does not make it empty)."""
    tail = path[-PART_LIMIT:].rstrip("/")
    return printable(tail.rsplit("/", 1)[-1] or path[:PART_LIMIT]) or "?"


def _with(name: str, args: list[str]) -> str:
    """The name and the arguments after it, for display: printable, cut at ``TEXT_LIMIT``."""
    out = [name]
    size = len(name)
    for arg in args:
        if size >= TEXT_LIMIT:
            break
        part = printable(arg[:TEXT_LIMIT])
        out.append(part)
        size += len(part) + 1
    return " ".join(out)[:TEXT_LIMIT]


def printable(text: str) -> str:
    """``text`` with every non-printable character as a visible escape, unambiguously.

    A backslash is doubled and every other escape has a fixed width (``\\x1b``,
    ``\\u202e``, ``\\U000e0001``), so an escaped newline (``\\x0a``) cannot be
    told from a typed one (``\\\\x0a``) wrongly, nor ``\\x202e`` read as ``\\x20``
    then ``2e``. The one escaping of names from processes: identities, and through
    them the board, ``--summary`` and the metrics labels (``proctop.sinks.metrics.label``).
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)


def _escape(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
