"""The TUI's contract with its terminal: given back on any fatal signal, and
a terminal that goes away ends proctop within 2 s, leaving nothing running.

Why this module exists. Textual's Linux driver (8.x) has two failure modes
when the terminal goes away (SSH drop, closed window, ``tmux kill-session``),
both seen as a proctop left running, orphaned, after the drop:

- Its input thread takes end of file (what a hung-up tty reads as) for "no
  input" and calls ``select()`` again, which reports the fd readable at once:
  a core spun at 100 % and the app was never told. The same happened with
  stdin at end of file from the start (``proctop < /dev/null``).
- Its writer thread dies on the first ``EIO`` (every write to a hung-up tty
  fails so). Its queue holds 30 writes; the next frames fill it and the event
  loop blocks for ever in ``Queue.put``: no timer, no asyncio signal handler
  runs again, so even the SIGHUP that follows the drop could not end it.
  Whether the SIGHUP got its exit done before the queue filled was a race,
  lost more often under a storm or while rendering.

So: ``ProctopDriver`` reads end of file / an error on stdin as "terminal
gone", and writes through ``_TerminalFile``, which never raises into the
writer thread; either tells the ``TerminalGuard``, which points fds 1 and 2
at /dev/null (every later write, including the interpreter's last flush,
succeeds), asks the app to exit, and starts the watchdog. Fatal signals are
caught with plain ``signal.signal`` handlers (not the event loop's, which a
blocked loop never runs) and take the same path. The watchdog is the last
line of defence: if the process still exists ``GRACE`` seconds after the
first trip, it restores the terminal itself (best effort, bounded) and ends
the process with ``os._exit``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import selectors
import signal
import sys
import termios
import threading
import time
import tty
from codecs import getincrementaldecoder
from collections.abc import Callable
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from textual._xterm_parser import XTermParser
from textual.drivers._writer_thread import WriterThread
from textual.drivers.linux_driver import LinuxDriver

if TYPE_CHECKING:
    from textual.app import App


def _stdout() -> IO[str]:
    """The process's own stdout (not a test's replacement); ValueError when it was closed."""
    if sys.__stdout__ is None:
        raise ValueError("stdout is closed")
    return sys.__stdout__


def _stdin() -> IO[str]:
    if sys.__stdin__ is None:
        raise ValueError("stdin is closed")
    return sys.__stdin__


#: Seconds from hangup, end of file or a fatal signal to a process that is gone, at most.
EXIT_DEADLINE = 2.0
#: What the normal shutdown gets, after a fatal signal, before the watchdog ends the process.
GRACE = 1.5
#: After SIGHUP: the terminal is most likely going (tmux and sshd send it, then close the pty;
#: meanwhile writes can block), and the watchdog restores it itself if it is not.
HANGUP_GRACE = 1.0
#: Once the terminal is gone there is nothing left to give back: a short grace, then the end.
GONE_GRACE = 0.5

#: Signals after which proctop exits with status 0, as the README says.
QUIT_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
#: Other signals whose default action ends the process: the terminal is restored,
#: then proctop dies by the signal, so the shell still sees what ended it.
_DIE_NAMES = (
    "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE", "SIGVTALRM", "SIGPROF",
    "SIGXCPU", "SIGXFSZ", "SIGIO", "SIGPWR", "SIGSTKFLT",
)  # fmt: skip
DIE_SIGNALS = tuple(getattr(signal, n) for n in _DIE_NAMES if hasattr(signal, n)) + tuple(
    range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
)
#: Default action "core": a signal sent to end the TUI is not a crash worth a core file.
_CORE_SIGNALS = {signal.SIGQUIT, signal.SIGXCPU, signal.SIGXFSZ}

#: Everything Textual's driver turns on, turned off: kitty keys, alternate
#: screen, hidden cursor, focus events, bracketed paste, line wrap, mouse modes.
RESTORE = (
    b"\x1b[<u\x1b[?1049l\x1b[?25h\x1b[?1004l\x1b[?2004l\x1b[?7h\x1b[?2048l"
    b"\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?1016l"
)


class TerminalGuard:
    """Signal handlers, terminal-loss handling and the exit watchdog of one TUI run."""

    def __init__(self) -> None:
        self._deadline = float("inf")  # time.monotonic() at which the watchdog ends the process
        self.signum: int | None = None  # the first fatal signal received
        self.gone = False  # the terminal went away (end of file or error on it)
        self.tripped = False
        self._app: App[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, object] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._termios: list[Any] | None
        try:
            self._termios = termios.tcgetattr(_stdin().fileno())  # before Textual's raw mode
        except (termios.error, OSError, ValueError, AttributeError):
            self._termios = None
        self._watchdog = threading.Thread(target=self._watch, name="proctop-watchdog", daemon=True)

    # --- set up and tear down ---------------------------------------------------

    def install(self) -> None:
        """Catch every fatal signal (main thread only) and start the watchdog."""
        for sig in (*QUIT_SIGNALS, *DIE_SIGNALS):
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except (OSError, ValueError):  # not catchable here
                pass
        self._watchdog.start()
        import proctop

        if proctop.early_signal is not None:  # came during the imports (proctop/__init__.py)
            self._on_signal(proctop.early_signal, None)

    def uninstall(self) -> None:
        """Put the previous handlers back (the watchdog stays armed if it was tripped)."""
        for sig, handler in self._previous.items():
            try:
                signal.signal(sig, handler)  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError):
                pass
        self._previous.clear()

    def attach(self, app: App[int], loop: asyncio.AbstractEventLoop) -> None:
        """The running app to ask for an exit (called from its ``on_mount``)."""
        self._app, self._loop = app, loop
        if self.tripped:  # a signal or the hangup came while the app was starting
            self._ask_exit()

    # --- what ends the run -------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.trip(HANGUP_GRACE if signum == signal.SIGHUP else GRACE)

    def terminal_gone(self) -> None:
        """The tty hung up or failed (any thread): stop writing to it and end."""
        if not self.gone:
            self.gone = True
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                os.close(devnull)
            except OSError:
                pass
        self.trip(GONE_GRACE)

    def trip(self, grace: float = GRACE) -> None:
        """Bring the watchdog's deadline to ``grace`` from now at the latest; ask the app to exit."""
        self._deadline = min(self._deadline, time.monotonic() + grace)
        if not self.tripped:
            self.tripped = True
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass
        self._ask_exit()

    def _ask_exit(self) -> None:
        app, loop = self._app, self._loop
        if app is None or loop is None:
            return
        try:
            loop.call_soon_threadsafe(app.exit, 0)
        except RuntimeError:  # the loop is closed: the run is ending anyway
            pass

    # --- after the app ----------------------------------------------------------

    def finish(self, status: int) -> None:
        """End the process now that the terminal is restored, with ``status`` or by the signal.

        ``os._exit``, not a return: tearing down an interpreter that holds a
        full history (100,000 rows) took seconds under load, and a watchdog
        thread cannot run during that teardown, so the 2 s could not be kept.
        Nothing is left to do: the source is closed, the terminal restored.
        """
        sig = self.signum
        if sig is not None and sig not in QUIT_SIGNALS:
            _die_by(sig)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(status)

    # --- the watchdog -----------------------------------------------------------

    def _watch(self) -> None:
        try:
            os.read(self._wake_r, 1)  # blocks until the first trip
        except OSError:
            return
        while (left := self._deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))  # a later trip may bring the deadline closer
        # Still here: the normal shutdown is stuck (a blocked write, a thread that
        # will not join). Give the terminal back if there is one, then end.
        if not self.gone:
            restorer = threading.Thread(target=self._restore, name="proctop-restore", daemon=True)
            restorer.start()
            restorer.join(0.3)  # a write to a stuck terminal must not hold the exit
        sig = self.signum
        if sig is not None and sig not in QUIT_SIGNALS:
            _die_by(sig)
        os._exit(0)

    def _restore(self) -> None:
        try:
            out = _stdout().fileno()
            if os.isatty(out):
                os.write(out, RESTORE)
        except (OSError, ValueError, AttributeError):
            pass
        self.restore_modes()

    def restore_modes(self) -> None:
        """Give the terminal back the modes it had before the run (whatever Textual restored)."""
        if self._termios is not None and not self.gone:
            try:
                termios.tcsetattr(_stdin().fileno(), termios.TCSANOW, self._termios)
            except (termios.error, OSError, ValueError, AttributeError):
                pass


def _die_by(sig: int) -> None:
    """End the process by ``sig``'s default action (from any thread); 128+sig if it survives."""
    if sig in _CORE_SIGNALS:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (OSError, ValueError):
            pass
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        if threading.current_thread() is threading.main_thread():
            signal.signal(sig, signal.SIG_DFL)
        else:  # signal.signal only works in the main thread; the syscall does not care
            _sigaction_default(sig)
        os.kill(os.getpid(), sig)
        time.sleep(0.5)
    except (OSError, ValueError):
        pass
    os._exit(128 + sig)


def _sigaction_default(sig: int) -> None:
    """Reset ``sig`` to SIG_DFL from a non-main thread (ctypes ``signal(2)``)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal(sig, None)  # SIG_DFL is 0


#: A frame that takes longer than this to reach the terminal was held up by it (a slow link):
#: writing ~10 KB to a pty with room takes well under a millisecond, but a loaded machine can
#: keep the writer thread from the CPU (or the GIL) for tens of them: that is not the link.
BLOCKED = 0.08
#: Longest pause between frames over a slow link (a frame every 2 s still shows it moves).
MAX_GAP = 2.0
#: How much of the pause each frame that got out at once keeps: a link that is fast again gets
#: full speed back within about twice the last pause.
GAP_DECAY = 0.5


class _TerminalFile:
    """The terminal for Textual's writer thread: a failed write means the terminal is gone.

    Never raises: an exception would kill the writer thread, and with it every
    later write would block the event loop (see the module docstring).
    """

    def __init__(self, file: IO[str], on_gone: Callable[[], None]) -> None:
        self._file = file
        self._on_gone = on_gone
        self.dead = False
        #: When the output not yet taken by the terminal began (a write or flush under way, or text
        #: written and not flushed); None when all was taken. Set by the writer thread only.
        self._pending_since: float | None = None
        #: The pause owed after a frame before the next (seconds): 0 while the terminal keeps up.
        self.gap = 0.0
        self._ready_at = 0.0  # monotonic time the next frame may start

    def ready(self) -> bool:
        """The terminal took the last frame, and the pause a slow link asks for has passed.

        A frame that took longer than ``BLOCKED`` to get out means the terminal is
        draining slower than we write (SSH on a thin line; the pty's buffer holds
        only ~17 KB): the gap after each frame becomes at least as long as that
        frame took, so the buffers downstream empty between frames instead of
        holding seconds of old screens; frames that get out at once shrink it
        again (by ``GAP_DECAY`` each), up to full speed.
        """
        return self._pending_since is None and time.monotonic() >= self._ready_at

    def write(self, text: str) -> None:
        if self.dead:
            return
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        try:
            self._file.write(text)  # blocks while the terminal's buffer is full (a slow link)
        except (OSError, ValueError):
            self._fail()

    def flush(self) -> None:
        if self.dead:
            return
        try:
            self._file.flush()
        except (OSError, ValueError):
            self._fail()
        finally:
            self._frame_out()

    def _frame_out(self) -> None:
        """All written was taken: how long it took sets the gap before the next frame (see ``ready``)."""
        began, self._pending_since = self._pending_since, None
        if began is None:
            return
        now = time.monotonic()
        took = now - began
        if took > BLOCKED:
            self.gap = min(MAX_GAP, max(self.gap * 2, took))
        else:
            self.gap = self.gap * GAP_DECAY if self.gap > BLOCKED else 0.0
        self._ready_at = now + self.gap

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return True

    def _fail(self) -> None:
        self.dead = True
        self._on_gone()


class ProctopDriver(LinuxDriver):
    """Textual's Linux driver, told that a terminal can go away.

    Draws on stdout (Textual draws on stderr), so that ``proctop 2>log`` keeps
    the screen and stdout is the stream that must be a terminal.
    """

    def __init__(self, app: App[Any], **kwargs: Any) -> None:
        #: The terminal's modes before Textual's raw mode: what every exit gives back.
        self._modes_at_start: list[Any] | None = None
        #: A SIGTSTP suspended the application mode (Ctrl+Z): SIGCONT resumes it.
        self._suspended = False
        super().__init__(app, **kwargs)
        self._terminal = _TerminalFile(_stdout(), self._terminal_gone)
        self._file = self._terminal  # type: ignore[assignment]  # duck-typed IO
        self._proctop_loop: asyncio.AbstractEventLoop | None = None

    def output_ready(self) -> bool:
        """No frame waits for the terminal (the writer's queue is empty, all it wrote was taken),
        and the pause a slow link asks for has passed (``_TerminalFile.ready``).

        Over a slow link (SSH on a thin line) the terminal takes frames slower than
        the app makes them; Textual's writer queues up to 30 of them, seconds of
        stale screens, and then blocks the event loop. The app's reader asks this
        before it hands the UI new rows (``ProctopApp._read_events``), so frames
        follow the link's pace instead of queueing (bench/slow_link.py,
        docs/performance.md). Any thread may ask: ``Queue.qsize``, a float, a time.
        """
        writer = self._writer_thread
        queued = writer._queue.qsize() if writer is not None else 0  # Textual's own queue (8.x)
        return queued == 0 and self._terminal.ready()

    def _sigtstp_application(self, *args: Any) -> None:
        self._suspended = self._auto_restart
        super()._sigtstp_application(*args)

    def _sigcont_application(self, *args: Any) -> None:
        """After SIGCONT: resume what SIGTSTP suspended; after a SIGSTOP, only the raw mode again.

        Textual started its application mode anew on every SIGCONT. After a
        SIGSTOP from elsewhere (``kill -STOP``, a debugger) nothing had been
        stopped, so it saved the raw modes as the ones to restore at exit (the
        shell was left ``-isig -icanon -echo``) and started a second input and
        writer thread. Now only the modes are set again (the shell may have given
        the terminal its own while proctop was stopped).
        """
        if self._suspended:
            self._suspended = False
            super()._sigcont_application(*args)
            return
        if self._modes_at_start is None:
            return
        raw: list[Any] = [list(item) if isinstance(item, list) else item for item in self._modes_at_start]
        raw[tty.LFLAG] = self._patch_lflag(int(raw[tty.LFLAG]))
        raw[tty.IFLAG] = self._patch_iflag(int(raw[tty.IFLAG]))
        raw[tty.CC][termios.VMIN] = 1
        try:
            termios.tcsetattr(self.fileno, termios.TCSANOW, raw)
        except (termios.error, OSError):
            pass
        # No Resize event posted from here to redraw: one posted from this handler left
        # the app's shutdown waiting for its reader thread (3 runs in 10); the screen keeps
        # what was drawn, and the next frame draws over it.

    def start_application_mode(self) -> None:
        self._proctop_loop = asyncio.get_running_loop()
        super().start_application_mode()  # type: ignore[no-untyped-call]  # Textual's own, untyped
        if self._modes_at_start is None:
            self._modes_at_start = self.attrs_before
        elif self.attrs_before is not None:  # started again: the modes to give back stay the first ones
            self.attrs_before = self._modes_at_start
        if self._writer_thread is None:
            # Textual returns early when the terminal refuses its settings: that is a
            # background job about to be stopped, or a terminal that is already gone.
            try:
                termios.tcgetattr(self.fileno)
            except termios.error:
                self._writer_thread = WriterThread(self._file)  # type: ignore[arg-type]  # duck-typed IO
                self._writer_thread.start()
                self._terminal_gone()

    def stop_application_mode(self) -> None:
        """Textual's, after a blank alternate screen with the cursor home.

        A terminal resized while the alternate screen is on may carry that screen's
        lines into the main screen's scrollback when it is left: tmux shrinks the
        alternate screen back to the size it saved the main one at, pushing the top
        of the last frame into the history, then grows it again (issue 22: after a
        resize, q left the top of the last frame above the prompt). Blank lines
        below the cursor are dropped, not pushed, so nothing of the frame is left.
        """
        self.write("\x1b[0m\x1b[H\x1b[2J")
        super().stop_application_mode()

    def _terminal_gone(self) -> None:
        guard: TerminalGuard | None = getattr(self._app, "terminal_guard", None)
        if guard is not None:
            guard.terminal_gone()
        elif self._proctop_loop is not None:
            try:
                self._proctop_loop.call_soon_threadsafe(self._app.exit, 0)
            except RuntimeError:
                pass

    def run_input_thread(self) -> None:
        """Textual's input loop, except that end of file or an error on stdin ends the app.

        Textual's own loop calls ``select()`` again after an empty read, and a
        hung-up tty is always readable: it spun a core and never said so.
        """
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        feed, tick = parser.feed, parser.tick
        decode = getincrementaldecoder("utf-8")(errors="replace").decode
        fileno = self.fileno
        try:
            while not self.exit_event.is_set():
                for _key, mask in selector.select(0.1):
                    if not mask & selectors.EVENT_READ:
                        continue
                    try:
                        data = os.read(fileno, 4096)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        if exc.errno == errno.EINTR:
                            continue
                        data = b""
                    if not data:  # end of file: the terminal is gone
                        self._terminal_gone()
                        return
                    for event in feed(decode(data)):
                        self.process_message(event)
                for event in tick():
                    self.process_message(event)
        finally:
            selector.close()
