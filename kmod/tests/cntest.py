#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-only
"""In-guest tests for proctop_cn.ko (stdlib only: raw netlink sockets + struct).

Usage: cntest.py basic        tests 1-3 (+comm) as the calling user
       cntest.py ownuid       test 4 (root: drives a uid-65534 subscriber)
       cntest.py storm KO N   test 5 (root): fork storm while reloading KO N times
       cntest.py dmesg        test 6: no WARNING/BUG/Oops/general protection
       cntest.py native       tests 1-3 against the kernel's own proc connector
                              (6.6+, no module: the behaviour the module copies)
Each test prints "PASS name" / "FAIL name: why"; exit status 1 if any failed.
"""
import errno
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

NETLINK_CONNECTOR = 11
NLMSG_DONE = 3
LISTEN, IGNORE = 1, 2

EV_NONE, EV_FORK, EV_EXEC, EV_UID, EV_GID, EV_SID = 0, 1, 2, 4, 0x40, 0x80
EV_PTRACE, EV_COMM = 0x100, 0x200
EV_NONZERO_EXIT, EV_COREDUMP, EV_EXIT = 0x20000000, 0x40000000, 0x80000000
EV_ALL = (EV_FORK | EV_EXEC | EV_UID | EV_GID | EV_SID | EV_PTRACE | EV_COMM
          | EV_NONZERO_EXIT | EV_COREDUMP | EV_EXIT)
NAMES = {EV_NONE: "NONE", EV_FORK: "FORK", EV_EXEC: "EXEC", EV_COMM: "COMM", EV_EXIT: "EXIT",
         EV_UID: "UID", EV_GID: "GID", EV_SID: "SID", EV_PTRACE: "PTRACE", EV_COREDUMP: "COREDUMP"}

PARAMS = "/sys/module/proctop_cn/parameters"
CN_IDX_PROC = CN_VAL_PROC = 1
WHO = "root" if os.getuid() == 0 else f"uid{os.getuid()}"
RESULTS = []


def param(name):
    with open(f"{PARAMS}/{name}") as f:
        return f.read().strip()


def set_param(name, value):
    with open(f"{PARAMS}/{name}", "w") as f:
        f.write(value)


def report(name, ok, why=""):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} [{WHO}] {name}{'' if ok else ': ' + why}", flush=True)
    return ok


class Ev:
    """One decoded connector message (cn_msg + struct proc_event)."""

    def __init__(self, idx, val, seq, ack, payload):
        self.idx, self.val, self.seq, self.ack = idx, val, seq, ack
        self.what, self.cpu, self.ts = struct.unpack_from("=IIQ", payload)
        self.raw = payload[16:40]
        self.len = len(payload)
        self.names = None  # (comm, argv bytes, flags) of the module's names extension
        if len(payload) >= 64 and struct.unpack_from("=I", payload, 40)[0] == 0x4E435450:
            argv_len, flags = struct.unpack_from("=HH", payload, 44)
            self.names = (payload[48:64].split(b"\0")[0].decode(errors="replace"),
                          payload[64:64 + argv_len], flags)
        u = struct.unpack_from("=6I", self.raw)
        self.u = u
        w = self.what
        self.pid = self.tgid = None
        if w == EV_NONE:
            self.err = u[0]
        elif w == EV_FORK:
            self.ppid, self.ptgid, self.pid, self.tgid = u[:4]
        elif w == EV_EXEC:
            self.pid, self.tgid = u[:2]
        elif w == EV_EXIT:
            self.pid, self.tgid, self.exit_code, self.exit_signal, self.ppid, self.ptgid = u
        elif w == EV_COMM:
            self.pid, self.tgid = u[:2]
            self.comm = self.raw[8:24].split(b"\0")[0].decode(errors="replace")
        elif w in (EV_UID, EV_GID):
            self.pid, self.tgid, self.real, self.eff = u[:4]
        elif w == EV_PTRACE:
            self.pid, self.tgid, self.tracer_pid, self.tracer_tgid = u[:4]
        elif w == EV_COREDUMP:
            self.pid, self.tgid, self.ppid, self.ptgid = u[:4]
        elif w == EV_SID:
            self.pid, self.tgid = u[:2]

    def pids(self):
        if self.what in (EV_FORK, EV_EXIT, EV_COREDUMP):
            return {self.pid, self.tgid, self.ppid, self.ptgid}
        if self.what == EV_PTRACE:
            return {self.pid, self.tgid, self.tracer_pid, self.tracer_tgid}
        return {self.pid, self.tgid}

    def __repr__(self):
        name = NAMES.get(self.what, hex(self.what))
        if self.what == EV_FORK:
            return f"FORK(parent {self.ppid}/{self.ptgid} child {self.pid}/{self.tgid})"
        if self.what == EV_EXIT:
            return (f"EXIT({self.pid}/{self.tgid} code={self.exit_code} sig={self.exit_signal:#x}"
                    f" parent {self.ppid}/{self.ptgid})")
        if self.what == EV_COMM:
            return f"COMM({self.pid}/{self.tgid} {self.comm!r})"
        if self.what in (EV_UID, EV_GID):
            return f"{name}({self.pid}/{self.tgid} real={self.real} eff={self.eff})"
        if self.what == EV_PTRACE:
            return f"PTRACE({self.pid}/{self.tgid} tracer {self.tracer_pid}/{self.tracer_tgid})"
        if self.what == EV_COREDUMP:
            return f"COREDUMP({self.pid}/{self.tgid} parent {self.ppid}/{self.ptgid})"
        if self.what == EV_NONE:
            return f"ACK(seq={self.seq} ack={self.ack} err={self.err})"
        return f"{name}({self.pid}/{self.tgid})"


def kernel_version():
    return tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])


class Sub:
    """A NETLINK_CONNECTOR socket bound with groups=0, subscribed by unicast.

    native=True: the kernel's own proc connector instead (6.6+): bound to the
    CN_IDX_PROC multicast group; the kernel acks only under mask ALL, so a
    subscription is the send itself (the callback runs inside send())."""

    def __init__(self, idx=None, val=None, rcvbuf=None, native=False):
        self.native = native
        if native:
            idx, val = CN_IDX_PROC, CN_VAL_PROC
        self.idx = int(param("cn_idx")) if idx is None else idx
        self.val = int(param("cn_val")) if val is None else val
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.bind((0, CN_IDX_PROC if native else 0))
        self.portid = self.s.getsockname()[0]
        self.seq = 100
        self.pending = []
        self.overruns = 0

    def close(self):
        self.s.close()

    def send(self, payload):
        self.seq += 1
        cn = struct.pack("=IIIIHH", self.idx, self.val, self.seq, 0, len(payload), 0) + payload
        nl = struct.pack("=IHHII", 16 + len(cn), NLMSG_DONE, 0, self.seq, self.portid) + cn
        self.s.send(nl)
        return self.seq

    def request(self, op, mask=None, timeout=5.0):
        """Send LISTEN/IGNORE; return (ack, events received before the ack)."""
        payload = struct.pack("=I", op) if mask is None else struct.pack("=II", op, mask)
        seq = self.send(payload)
        before = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.recv(max(0.0, deadline - time.monotonic()), max_msgs=1):
                if ev.what == EV_NONE and ev.seq == seq:
                    return ev, before
                before.append(ev)
        return None, before

    def supported(self):
        return EV_ALL if self.native else int(param("supported_events"))

    def drain(self):
        while self.recv(0.0):
            pass

    def subscribe(self, mask=None):
        """LISTEN (or a mask change); events queued before it are dropped."""
        if self.native:
            self.send(struct.pack("=I", LISTEN) if mask is None else struct.pack("=II", LISTEN, mask))
            self.drain()
            return None
        ack, _ = self.request(LISTEN, mask)
        if ack is None:
            raise RuntimeError("no ack from proctop_cn")
        if ack.err or ack.ack != ack.seq + 1:
            raise RuntimeError(f"bad ack {ack}")
        return ack

    def recv(self, timeout, max_msgs=None):
        """Messages available within timeout (returns as soon as some arrived)."""
        out = []
        if self.pending:
            out, self.pending = self.pending, []
        elif select.select([self.s], [], [], timeout)[0]:
            try:
                data = self.s.recv(65536)
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1
                return []
            off = 0
            while off + 36 <= len(data):
                nl_len = struct.unpack_from("=I", data, off)[0]
                idx, val, seq, ack, ln, _fl = struct.unpack_from("=IIIIHH", data, off + 16)
                if ln >= 40:
                    out.append(Ev(idx, val, seq, ack, data[off + 36: off + 36 + ln]))
                off += (nl_len + 3) & ~3
        if max_msgs is not None and len(out) > max_msgs:
            self.pending = out[max_msgs:]
            out = out[:max_msgs]
        return out

    def collect(self, duration, until=None):
        """All messages for `duration` s, or until until(events) is true."""
        evs = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            evs += self.recv(min(left, 0.2))
            if until and until(evs):
                break
        return evs


def run(argv):
    p = subprocess.Popen(argv)
    _, status = os.waitpid(p.pid, 0)
    p.returncode = 0
    return p.pid, status


def ptrace_attach_detach():
    """PTRACE_ATTACH + PTRACE_DETACH a child (ctypes); returns its pid."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    if libc.ptrace(16, child, None, None) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "PTRACE_ATTACH")
    os.waitpid(child, 0)  # stopped by the attach
    libc.ptrace(17, child, None, None)  # PTRACE_DETACH
    os.write(w, b"x")
    os.close(w)
    os.waitpid(child, 0)
    return child


# ---- test 1: nonzero-exit filtering ------------------------------------------
def test_nonzero(sub):
    sub.subscribe(EV_NONZERO_EXIT)
    p3, st3 = run(["sh", "-c", "exit 3"])
    pt, stt = run(["true"])
    evs = sub.collect(3.0, until=lambda e: any(x.pid == p3 for x in e))
    evs += sub.collect(0.5)
    mine = [e for e in evs if e.what == EV_EXIT and e.pid == p3]
    bad = [e for e in evs if e.what != EV_EXIT or e.exit_code == 0]
    seen_true = [e for e in evs if pt in e.pids()]
    ok = (len(mine) == 1 and mine[0].exit_code == 768 == st3 and not bad and not seen_true
          and mine[0].idx == sub.idx and mine[0].val == sub.val and mine[0].ack == 0)
    return report("1 nonzero-exit filter", ok,
                  f"sh pid {p3} status {st3}: {mine}; true pid {pt}: {seen_true}; unwanted {bad[:5]}")


# ---- test 2: live mask change on the same socket -----------------------------
def test_live_mask(sub):
    sub.subscribe(EV_NONZERO_EXIT)
    try:
        sub.subscribe(EV_FORK)
    except RuntimeError as e:
        return report("2 live mask change", False, str(e))
    pid = os.fork()
    if pid == 0:
        os._exit(4)
    os.waitpid(pid, 0)
    p3, _ = run(["sh", "-c", "exit 3"])
    evs = sub.collect(3.0, until=lambda e: any(x.what == EV_FORK and x.pid == p3 for x in e))
    evs += sub.collect(0.5)
    forks = [e for e in evs if e.what == EV_FORK and e.pid == pid]
    others = [e for e in evs if e.what != EV_FORK]
    ok = (len(forks) == 1 and forks[0].ppid == os.getpid() and not others
          and any(e.what == EV_FORK and e.pid == p3 for e in evs))
    return report("2 live mask change NONZERO_EXIT->FORK", ok,
                  f"child {pid}: {forks}; non-fork events {others[:5]}")


# ---- test 3: fork/exec/exit/comm fields ---------------------------------------
def test_fields(sub):
    me = os.getpid()
    myparent = os.getppid()
    sub.subscribe(0)  # 0 = all events, as upstream
    supported = sub.supported()
    # upstream reports writes to /proc/<pid>/comm since 5.15 (comm_write() ->
    # proc_comm_connector()); the module's kprobe mode hooks that very call
    proc_comm_reported = not (kernel_version() < (5, 15) and not sub.native
                              and param("use_kprobes") == "Y")
    problems = []

    # a) fork + exec + exit 3
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/sh", ["sh", "-c", "exit 3"])
        finally:
            os._exit(127)
    _, st_exec = os.waitpid(pid, 0)

    # b) SIGSEGV (no core: status is exactly 11; with a core dump it would be 139)
    seg = os.fork()
    if seg == 0:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), signal.SIGSEGV)
        os._exit(1)
    _, st_seg = os.waitpid(seg, 0)

    # b2) as root: a SIGSEGV with a core dumped (to /run) gives status 139
    core = None
    if os.getuid() == 0:
        old_pattern = open("/proc/sys/kernel/core_pattern").read()
        try:
            with open("/proc/sys/kernel/core_pattern", "w") as f:
                f.write("/run/ptc-core.%p")
            core, st_core = run(["sh", "-c", "ulimit -c unlimited; kill -SEGV $$"])
        finally:
            with open("/proc/sys/kernel/core_pattern", "w") as f:
                f.write(old_pattern)

    # c) a thread: pid != tgid, parent = our own parent (real_parent semantics)
    tids = []
    t = threading.Thread(target=lambda: tids.append(threading.get_native_id()))
    t.start()
    t.join()

    # d) comm changes in a child: prctl(PR_SET_NAME), then /proc/self/comm
    cpid = os.fork()
    if cpid == 0:
        import ctypes
        ctypes.CDLL(None).prctl(15, b"ptc-prctl", 0, 0, 0)  # PR_SET_NAME
        with open("/proc/self/comm", "w") as f:
            f.write("ptc-renamed")
        os._exit(0)
    _, st_comm = os.waitpid(cpid, 0)

    # e) setsid() in a child -> SID
    sid = os.fork()
    if sid == 0:
        os.setsid()
        os._exit(0)
    os.waitpid(sid, 0)

    # f) as root: setgid/setuid in a child -> GID, UID; ptrace attach/detach -> PTRACE
    idc = trc = None
    if os.getuid() == 0:
        idc = os.fork()
        if idc == 0:
            os.setgid(65534)
            os.setuid(65534)
            os._exit(0)
        os.waitpid(idc, 0)
        trc = ptrace_attach_detach()

    want = ({pid, seg, cpid, sid} | set(tids) | ({core} if core else set())
            | ({idc, trc} if idc else set()))
    evs = sub.collect(5.0, until=lambda e: want <= {x.pid for x in e if x.what == EV_EXIT})
    evs += sub.collect(0.3)

    def one(what, p):
        m = [e for e in evs if e.what == what and e.pid == p]
        if len(m) != 1:
            problems.append(f"{NAMES[what]} of {p}: {m}")
            return None
        return m[0]

    f = one(EV_FORK, pid)
    if f and (f.tgid, f.ppid, f.ptgid) != (pid, me, me):
        problems.append(f"fork fields {f} (expected parent {me})")
    x = one(EV_EXEC, pid)
    if x and x.tgid != pid:
        problems.append(f"exec fields {x}")
    e = one(EV_EXIT, pid)
    if e and (e.tgid, e.exit_code, e.exit_signal, e.ppid, e.ptgid) != (pid, st_exec, 17, me, me):
        problems.append(f"exit fields {e} (waitpid status {st_exec})")
    if st_exec != 768:
        problems.append(f"sh exit status {st_exec}")
    if f and x and e and not (f.ts <= x.ts <= e.ts):
        problems.append("timestamps not ordered fork<=exec<=exit")
    s = one(EV_EXIT, seg)
    if s and (s.exit_code != st_seg or s.exit_code not in (11, 139) or s.exit_signal != 17):
        problems.append(f"SIGSEGV exit {s}, waitpid status {st_seg}")
    if core:
        c = one(EV_EXIT, core)
        if c and (c.exit_code != st_core or st_core != 139):
            problems.append(f"core-dumping SIGSEGV exit {c}, waitpid status {st_core}")
    if not tids:
        problems.append("thread did not run")
    else:
        tid = tids[0]
        tf = one(EV_FORK, tid)
        if tf and (tf.tgid, tf.ppid, tf.ptgid) != (me, myparent, myparent):
            problems.append(f"thread fork {tf} (expected tgid {me}, parent {myparent})")
        te = one(EV_EXIT, tid)
        if te and (te.tgid, te.exit_code, te.exit_signal) != (me, 0, 0xFFFFFFFF):
            problems.append(f"thread exit {te}")
    if supported & EV_COMM:
        want_comm = ["ptc-prctl"] + (["ptc-renamed"] if proc_comm_reported else [])
        m = [e for e in evs if e.what == EV_COMM and e.pid == cpid]
        if [(e.comm, e.tgid) for e in m] != [(c, cpid) for c in want_comm]:
            problems.append(f"comm of {cpid}: {m}, expected {want_comm}")
        if any(e.what == EV_COMM and e.pid == pid for e in evs):
            problems.append("exec produced a COMM event (upstream does not)")
    if supported & EV_COREDUMP:
        c = one(EV_COREDUMP, seg)
        if c and (c.tgid, c.ppid, c.ptgid) != (seg, me, me):
            problems.append(f"coredump {c}")
        if any(e.what == EV_COREDUMP and e.pid == pid for e in evs):
            problems.append("COREDUMP for a normal exit")
    if supported & EV_SID:
        c = one(EV_SID, sid)
        if c and c.tgid != sid:
            problems.append(f"sid {c}")
    if idc and supported & EV_UID:
        c = one(EV_UID, idc)
        if c and (c.tgid, c.real, c.eff) != (idc, 65534, 65534):
            problems.append(f"uid {c}")
    if idc and supported & EV_GID:
        c = one(EV_GID, idc)
        if c and (c.tgid, c.real, c.eff) != (idc, 65534, 65534):
            problems.append(f"gid {c}")
    if trc and supported & EV_PTRACE:
        m = [e for e in evs if e.what == EV_PTRACE and e.pid == trc]
        if [(e.tgid, e.tracer_pid, e.tracer_tgid) for e in m] != [(trc, me, me), (trc, 0, 0)]:
            problems.append(f"ptrace attach/detach of {trc}: {m}")
    if any(e.idx != sub.idx or e.val != sub.val or e.ack != 0 for e in evs if e.what != EV_NONE):
        problems.append("bad cn_msg header")
    return report("3 event fields: fork/exec/exit/thread + the supported of comm/sid/coredump/uid/gid/ptrace"
                  + ("" if proc_comm_reported else " (/proc/self/comm writes unreported, as upstream before 5.15)"),
                  not problems, "; ".join(problems))


def test_ignore_and_ack(sub):
    """IGNORE stops delivery; a 4-byte LISTEN means all; bad op gets EINVAL."""
    problems = []
    if sub.native:
        sub.send(struct.pack("=II", IGNORE, EV_ALL))
        sub.drain()
    else:
        ack, _ = sub.request(IGNORE)
        if ack is None or ack.err:
            problems.append(f"IGNORE ack {ack}")
    p3, _ = run(["sh", "-c", "exit 3"])
    evs = [e for e in sub.collect(1.0) if e.what != EV_NONE]
    if evs:
        problems.append(f"events after IGNORE: {evs[:3]}")
    if sub.native:
        sub.send(struct.pack("=I", LISTEN))  # 4-byte form
    else:
        ack, _ = sub.request(LISTEN)  # 4-byte form
        if ack is None or ack.err:
            problems.append(f"4-byte LISTEN ack {ack}")
    p3, _ = run(["sh", "-c", "exit 3"])
    evs = sub.collect(3.0, until=lambda e: any(x.what == EV_EXIT and x.pid == p3 for x in e))
    if not any(e.what == EV_FORK and e.pid == p3 for e in evs):
        problems.append("4-byte LISTEN did not give all events")
    if sub.native:  # the kernel acks only under mask ALL: no EINVAL to see
        return report("IGNORE/4-byte LISTEN", not problems, "; ".join(problems))
    ack, _ = sub.request(7, 0)
    if ack is None or ack.err != errno.EINVAL:
        problems.append(f"bad op ack {ack}")
    sub.request(IGNORE)
    return report("ack/IGNORE/4-byte LISTEN", not problems, "; ".join(problems))


def test_names():
    """The names extension: a 12-byte LISTEN gets comm (+argv on exec) after
    the unchanged proc_event; an 8-byte subscriber gets the 40 bytes only."""
    old, new = Sub(), Sub()
    problems = []
    try:
        old.subscribe(EV_EXEC | EV_EXIT)
        seq = new.send(struct.pack("=III", LISTEN, EV_EXEC | EV_EXIT, 1))
        acks = [e for e in new.collect(3.0, until=lambda e: any(x.seq == seq for x in e)) if e.what == EV_NONE]
        if not acks or acks[-1].err:
            problems.append(f"12-byte LISTEN acks {acks}")
        p, _ = run(["sh", "-c", "exit 3"])
        got_new = new.collect(5.0, until=lambda e: any(x.what == EV_EXIT and x.pid == p for x in e))
        got_old = old.collect(5.0, until=lambda e: any(x.what == EV_EXIT and x.pid == p for x in e))
        nx = [e for e in got_new if e.pid == p and e.what == EV_EXEC]
        ne = [e for e in got_new if e.pid == p and e.what == EV_EXIT]
        if len(nx) != 1 or nx[0].names is None or nx[0].names[:2] != ("sh", b"sh\0-c\0exit 3\0"):
            problems.append(f"exec names {[e.names for e in nx]}")
        if len(ne) != 1 or ne[0].names is None or ne[0].names[:2] != ("sh", b""):
            problems.append(f"exit names {[e.names for e in ne]}")
        if len(ne) == 1 and ne[0].exit_code != 768:
            problems.append(f"exit fields {ne[0]}")
        mine = [e for e in got_old if e.pid == p]
        if [(e.what, e.len) for e in mine] != [(EV_EXEC, 40), (EV_EXIT, 40)]:
            problems.append(f"8-byte subscriber got {[(NAMES[e.what], e.len) for e in mine]}")
    finally:
        old.close()
        new.close()
    return report("names extension: comm+argv after the unchanged 40 bytes, old clients unchanged",
                  not problems, "; ".join(problems))


def cmd_basic():
    sub = Sub()
    try:
        test_nonzero(sub)
        test_live_mask(sub)
        test_fields(sub)
        test_ignore_and_ack(sub)
    finally:
        sub.close()
    test_names()
    # closing the socket (NETLINK_URELEASE) removes the subscriber
    n0 = int(param("subscribers"))
    x = Sub()
    x.subscribe(EV_FORK)
    n1 = int(param("subscribers"))
    x.close()
    n2 = int(param("subscribers"))
    report("subscriber removed on socket close", (n1, n2) == (n0 + 1, n0), f"subscribers {n0} {n1} {n2}")


def cmd_native():
    """The kernel's own filtering (6.6+), as root or not: what the module copies."""
    if os.path.isdir("/sys/module/proctop_cn"):
        return report("native: proctop_cn not loaded", False, "module is loaded")
    sub = Sub(native=True)
    try:
        test_nonzero(sub)
        test_live_mask(sub)
        test_fields(sub)
        test_ignore_and_ack(sub)
    finally:
        sub.close()


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
OTHER_USER = ["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups"]


def acks_as_nobody(n, op_masks):
    """Fork a uid-65534 child that opens n subscribers and sends op_masks
    [(sub index, op, mask)]; returns their ack errors (None: no ack)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setgid(65534)
        os.setuid(65534)
        subs = [Sub() for _ in range(n)]
        errs = []
        for i, op, mask in op_masks:
            a = subs[i].request(op, mask)[0]
            errs.append(a.err if a else None)
        os.write(w, json.dumps(errs).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data or b"null")


def cmd_limits():
    """max_subscribers bounds the non-root table (ENOSPC), max_per_uid one
    uid's share (EDQUOT); a mask change is always accepted; root is exempt."""
    old = {n: param(n) for n in ("max_subscribers", "max_per_uid")}
    seq = [(0, LISTEN, EV_EXIT), (1, LISTEN, EV_EXIT), (2, LISTEN, EV_EXIT), (0, LISTEN, EV_FORK)]
    try:
        set_param("max_per_uid", "0")
        set_param("max_subscribers", "2")
        errs = acks_as_nobody(3, seq)
        rsub = Sub()
        rack = rsub.request(LISTEN, EV_EXIT)[0]
        rsub.close()
        report("table limit: ENOSPC when full, mask change still accepted, root exempt",
               errs == [0, 0, errno.ENOSPC, 0] and rack is not None and rack.err == 0,
               f"ack errors {errs}, root's {rack}")
        set_param("max_subscribers", old["max_subscribers"])
        set_param("max_per_uid", "2")
        errs = acks_as_nobody(3, seq)
        report("per-uid limit: EDQUOT over max_per_uid, mask change still accepted",
               errs == [0, 0, errno.EDQUOT, 0], f"ack errors {errs}")
    finally:
        for n, v in old.items():
            set_param(n, v)


def wait_subscribers(n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while int(param("subscribers")) != n and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(param("subscribers"))


def cmd_flood_sub(n):
    """uid 65534: n sockets, LISTEN on each, then an IGNORE/LISTEN flood over
    all of them (acks unread), then hold them until told to close."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    subs = [Sub(rcvbuf=1) for _ in range(n)]
    errs = {}
    for x in subs:
        a = x.request(LISTEN, EV_ALL, timeout=1.0)[0]
        k = str(a.err if a else None)
        errs[k] = errs.get(k, 0) + 1
    for _ in range(3):
        for x in subs:
            x.send(struct.pack("=II", IGNORE, EV_ALL))
            x.send(struct.pack("=II", LISTEN, EV_NONZERO_EXIT))
    print(json.dumps(errs), flush=True)
    sys.stdin.readline()
    for x in subs:
        x.close()


def cmd_flood_victim():
    """Another user: subscribes and gets its event despite the flood."""
    sub = Sub()
    try:
        sub.subscribe(EV_NONZERO_EXIT)
    except RuntimeError as e:
        print(json.dumps({"error": str(e)}), flush=True)
        return
    p, st = run(["sh", "-c", "exit 3"])
    evs = sub.collect(5.0, until=lambda e: any(x.pid == p for x in e))
    print(json.dumps({"got": any(x.what == EV_EXIT and x.pid == p and x.exit_code == st for x in evs)}),
          flush=True)


def cmd_flood(n=1000):
    """No lock-out: uid 65534 floods the table with n sockets; uid 65533 and
    root still subscribe and get events; closing the flood frees the table."""
    me = os.path.abspath(__file__)
    base = int(param("subscribers"))
    per_uid = int(param("max_per_uid"))
    refused0 = int(param("refused"))
    flood = subprocess.Popen(NOBODY + [sys.executable, me, "flood-sub", str(n)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    problems = []
    try:
        errs = json.loads(flood.stdout.readline() or "{}")
        held = int(param("subscribers")) - base
        want = {"0": per_uid, str(errno.EDQUOT): n - per_uid}
        if errs != want or held != per_uid:
            problems.append(f"uid 65534's {n} LISTENs: ack errors {errs} (want {want}), {held} held")
        victim = subprocess.run(OTHER_USER + [sys.executable, me, "flood-victim"],
                                capture_output=True, text=True, timeout=120)
        v = json.loads(victim.stdout.strip() or "{}")
        if not v.get("got"):
            problems.append(f"uid 65533 during the flood: {v} {victim.stderr[-300:]}")
        rsub = Sub()
        rsub.subscribe(EV_NONZERO_EXIT)
        p, _ = run(["sh", "-c", "exit 3"])
        if not any(x.pid == p for x in rsub.collect(5.0, until=lambda e: any(x.pid == p for x in e))):
            problems.append("root got no event during the flood")
        rsub.close()
    finally:
        flood.stdin.write("close\n")
        flood.stdin.flush()
        flood.wait(timeout=120)
    after = wait_subscribers(base)
    if after != base:
        problems.append(f"subscribers {after} after the flood closed its sockets, {base} before")
    refused = int(param("refused")) - refused0
    print(f"flood: {n} sockets of uid 65534, {errs}, refused +{refused}, dropped {param('dropped')}",
          flush=True)
    report(f"flood: uid 65534 subscribes {n} sockets, uid 65533 and root still get events, "
           "all released on close", not problems, "; ".join(problems))


def cmd_malformed():
    """Short, oversized, unknown-op and inconsistent control messages are
    refused (EINVAL ack, counted) or dropped by the connector core; nothing
    breaks, and dmesg stays clean (test 6)."""
    sub = Sub()
    r0 = int(param("refused"))
    problems = []
    cases = {"empty": b"", "2 bytes": b"\x01\x00", "12 bytes, unknown flag": struct.pack("=III", LISTEN, EV_ALL, 0x80),
             "600 bytes": struct.pack("=II", LISTEN, EV_ALL) + bytes(592),
             "unknown op 9": struct.pack("=II", 9, EV_ALL), "op 0": struct.pack("=II", 0, EV_ALL)}
    for name, payload in cases.items():
        seq = sub.send(payload)
        acks = [e for e in sub.collect(3.0, until=lambda e: any(x.seq == seq for x in e))
                if e.what == EV_NONE and e.seq == seq]
        if [a.err for a in acks] != [errno.EINVAL]:
            problems.append(f"{name}: acks {acks}")
    # cn_msg.len larger than the message, a message shorter than cn_msg,
    # one over the connector's size limit: the core drops them silently
    sub.seq += 1
    bad = [struct.pack("=IHHII", 16 + 20 + 8, NLMSG_DONE, 0, sub.seq, sub.portid)
           + struct.pack("=IIIIHH", sub.idx, sub.val, sub.seq, 0, 400, 0) + struct.pack("=II", LISTEN, 0),
           struct.pack("=IHHII", 16 + 8, NLMSG_DONE, 0, sub.seq, sub.portid) + bytes(8)]
    big = struct.pack("=II", LISTEN, 0) + bytes(70000)
    cn = struct.pack("=IIIIHH", sub.idx, sub.val, sub.seq, 0, len(big) & 0xFFFF, 0) + big
    bad.append(struct.pack("=IHHII", 16 + len(cn), NLMSG_DONE, 0, sub.seq, sub.portid) + cn)
    for msg in bad:
        try:
            sub.s.send(msg)
        except OSError:
            pass  # refused at send: fine too
    stray = [e for e in sub.collect(1.0) if e.seq == sub.seq]
    if stray:
        problems.append(f"inconsistent messages were answered: {stray}")
    refused = int(param("refused")) - r0
    if refused < len(cases):
        problems.append(f"refused +{refused}, want >= {len(cases)}")
    try:  # still serves this very socket
        sub.subscribe(EV_NONZERO_EXIT)
        p, _ = run(["sh", "-c", "exit 3"])
        if not any(x.pid == p for x in sub.collect(5.0, until=lambda e: any(x.pid == p for x in e))):
            problems.append("no event after the malformed messages")
    except RuntimeError as e:
        problems.append(str(e))
    sub.close()
    report("malformed control messages refused and counted", not problems, "; ".join(problems))


# ---- test 4: own_uid_only -----------------------------------------------------
def cmd_ownuid_sub():
    """Runs as the unprivileged user; driven by cmd_ownuid over stdin/stdout."""
    sub = Sub()
    sub.subscribe(EV_ALL)
    print("ready", flush=True)
    sys.stdin.readline()
    p, st = run(["sh", "-c", "exit 5"])
    evs = sub.collect(3.0, until=lambda e: any(x.what == EV_EXIT and x.pid == p for x in e))
    evs += sub.collect(1.0)
    print(json.dumps({"mine": p, "status": st,
                      "events": [[e.what] + list(e.u) for e in evs]}), flush=True)


def cmd_ownuid():
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    root_sub = Sub()
    root_sub.subscribe(EV_EXIT)
    ok_all = True
    for mode in ("Y", "N"):
        set_param("own_uid_only", mode)
        child = subprocess.Popen(nobody + [sys.executable, os.path.abspath(__file__), "ownuid-sub"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = child.stdout.readline().strip()
        if line != "ready":
            report(f"4 own_uid_only={mode}", False, f"subscriber said {line!r}")
            child.kill()
            ok_all = False
            continue
        rp, rst = run(["sh", "-c", "exit 9"])  # root's process
        child.stdin.write("go\n")
        child.stdin.flush()
        out = json.loads(child.stdout.readline())
        child.wait()
        evs = out["events"]
        mine = [e for e in evs if e[0] == EV_EXIT and e[1] == out["mine"]]
        roots = [e for e in evs if (e[0] == EV_FORK and rp in e[3:5])
                 or (e[0] in (EV_EXEC, EV_EXIT, EV_COMM) and rp in e[1:3])]
        got_mine = len(mine) == 1 and mine[0][3] == 5 << 8
        if mode == "Y":
            ok = got_mine and not roots
        else:
            ok = got_mine and any(e[0] == EV_EXIT and e[1] == rp and e[3] == 9 << 8 for e in roots)
        ok_all &= report(f"4 own_uid_only={mode}: uid 65534 sees its own exit, "
                         f"{'not' if mode == 'Y' else 'and'} root's", ok,
                         f"own {out['mine']}: {mine}; root pid {rp}: {roots}")
    # root subscriber saw both while own_uid_only=Y was set (root is exempt)
    evs = root_sub.collect(1.0)
    report("4 own_uid_only: root subscriber unaffected", len([e for e in evs if e.what == EV_EXIT]) >= 4,
           f"{len(evs)} events")
    root_sub.close()
    set_param("own_uid_only", "N")


def cmd_complete(seconds=2.0):
    """Every child of a fork storm gives exactly one FORK and one EXIT (and one
    EXEC when it execs), with the right parent and status, nothing dropped."""
    forker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forkstorm")
    if not os.access(forker, os.X_OK):
        return report("5a event completeness", True, "skipped: no forkstorm helper")
    sub = Sub()
    sub.s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE (root)
    sub.subscribe(EV_ALL)
    d0 = int(param("dropped"))
    stop, cnt = "/run/ptc-complete.stop", "/run/ptc-complete.count"
    for f in (stop, cnt):
        if os.path.exists(f):
            os.unlink(f)
    p = subprocess.Popen([forker, stop, cnt])
    time.sleep(seconds)
    open(stop, "w").close()
    p.wait()
    n = int(open(cnt).read())
    evs = sub.collect(30.0, until=lambda e: sum(1 for x in e if x.what == EV_EXIT and x.ptgid == p.pid) >= n)
    evs += sub.collect(0.5)
    dropped = int(param("dropped")) - d0
    sub.close()
    forks = {e.pid: e for e in evs if e.what == EV_FORK and e.ptgid == p.pid}
    exits = [e for e in evs if e.what == EV_EXIT and e.ptgid == p.pid]
    execs = [e for e in evs if e.what == EV_EXEC and e.pid in forks]
    problems = []
    if len(forks) != n or len(exits) != n or {e.pid for e in exits} != set(forks):
        problems.append(f"{n} children: {len(forks)} FORK, {len(exits)} EXIT events")
    if not all(e.exit_code in (0, 256, 512) and e.exit_signal == 17 for e in exits):
        problems.append("unexpected exit status")
    if len(execs) != (n + 15) // 16:
        problems.append(f"{len(execs)} EXEC events for {(n + 15) // 16} execs")
    if any(e.pid != e.tgid or e.ppid != p.pid for e in forks.values()):
        problems.append("bad FORK fields")
    if dropped:
        problems.append(f"dropped={dropped}")
    print(f"completeness: {n} processes, {len(evs)} events, dropped {dropped}", flush=True)
    report("5a event completeness (fork storm, no reload)", not problems, "; ".join(problems))

    # 5b: a subscriber that does not read: deliveries fail, are counted, nothing stalls
    slow = Sub(rcvbuf=1)  # the kernel rounds it up to its minimum
    slow.subscribe(EV_ALL)
    d0 = int(param("dropped"))
    for f in (stop, cnt):
        if os.path.exists(f):
            os.unlink(f)
    p = subprocess.Popen([forker, stop, cnt])
    time.sleep(1.0)
    open(stop, "w").close()
    p.wait()
    n = int(open(cnt).read())
    dropped = int(param("dropped")) - d0
    got = slow.collect(1.0)  # first recv reports ENOBUFS, then what was queued
    # delivery resumes: an exit arrives again. The buffer holds two or three
    # messages (on 6.12 the FORK and EXEC of `sh` filled it before the reader
    # woke, and the EXIT was dropped, every time in ten), so the same socket
    # now asks for failed exits only (a live mask change) and gets a few tries.
    for _ in range(3):  # its ack could meet a full buffer too
        try:
            slow.subscribe(EV_NONZERO_EXIT)
            break
        except RuntimeError:
            slow.collect(0.5)
    resumed, tries = False, 0
    while not resumed and tries < 5:
        tries += 1
        p3, _ = run(["sh", "-c", "exit 3"])
        after = slow.collect(3.0, until=lambda e: any(x.what == EV_EXIT and x.pid == p3 for x in e))
        resumed = any(x.what == EV_EXIT and x.pid == p3 for x in after)
    slow.close()
    ok = n > 0 and dropped > 0 and slow.overruns >= 1 and resumed
    print(f"full receiver: {n} processes, {len(got)} queued events read, dropped +{dropped}, "
          f"ENOBUFS seen {slow.overruns}x, an exit delivered again: {resumed} (try {tries})", flush=True)
    return report("5b full receiver: drops counted, no stall, delivery resumes", ok,
                  f"processes {n}, dropped +{dropped}, overruns {slow.overruns}, resumed {resumed}")


# ---- test 5: fork storm while reloading the module ---------------------------
def storm_worker(stop_file, count_file):
    n = 0
    while not os.path.exists(stop_file):
        pid = os.fork()
        if pid == 0:
            if n % 10 == 0:
                try:
                    os.execv("/bin/true", ["true"])
                finally:
                    os._exit(127)
            os._exit(n % 3)
        os.waitpid(pid, 0)
        n += 1
    with open(count_file, "w") as f:
        f.write(str(n))


def subscriber_worker(stop_file, count_file):
    """Keeps (re)subscribing across reloads; also churns extra sockets.
    Creates COUNT_FILE.ready once the first LISTEN was acked."""
    idx = int(sys.argv[4])
    sub = Sub(idx=idx, val=1, rcvbuf=1 << 16)
    ack, _ = sub.request(LISTEN, EV_ALL, timeout=30)
    open(count_file + ".ready", "w").close()
    n = 0
    nonzero = 0
    it = 0
    last = time.monotonic()
    while not os.path.exists(stop_file):
        now = time.monotonic()
        if now - last > 0.1:
            last = now
            it += 1
            try:
                sub.send(struct.pack("=II", LISTEN, EV_ALL if it % 2 else EV_FORK | EV_NONZERO_EXIT))
            except OSError:
                pass  # module not loaded right now: ECONNREFUSED or similar
            if it % 3 == 0:  # short-lived extra subscriber: URELEASE path
                try:
                    x = Sub(idx=idx, val=1)
                    x.send(struct.pack("=I", LISTEN))
                    x.close()
                except OSError:
                    pass
        for e in sub.recv(0.05):
            if e.what != EV_NONE:
                n += 1
                if e.what == EV_EXIT and e.exit_code:
                    nonzero += 1
    with open(count_file, "w") as f:
        f.write(f"{n} {nonzero} {sub.overruns}")


def cmd_storm(ko, cycles):
    run_dir = "/run/ptc-storm"
    os.makedirs(run_dir, exist_ok=True)
    os.chmod(run_dir, 0o1777)
    stop = f"{run_dir}/stop"
    if os.path.exists(stop):
        os.unlink(stop)
    idx = param("cn_idx")
    me = os.path.abspath(__file__)
    forker = os.path.join(os.path.dirname(me), "forkstorm")
    if os.access(forker, os.X_OK):
        forker = [forker, stop, f"{run_dir}/forks"]
    else:  # no static helper (no compiler on the host): much slower under TCG
        forker = [sys.executable, me, "storm-fork", stop, f"{run_dir}/forks"]
    for f in os.listdir(run_dir):
        os.unlink(os.path.join(run_dir, f))
    workers = [
        subprocess.Popen([sys.executable, me, "storm-sub", stop, f"{run_dir}/sub", idx]),
        subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, me, "storm-sub", stop, f"{run_dir}/sub65534", idx]),
    ]
    fails = []
    for _ in range(600):  # subscribers connected (Python starts slowly under TCG)
        if all(os.path.exists(f"{run_dir}/{n}.ready") for n in ("sub", "sub65534")):
            break
        time.sleep(0.1)
    else:
        fails.append("subscribers did not start")
    workers.append(subprocess.Popen(forker))
    t0 = time.monotonic()
    time.sleep(1.0)
    dropped = -int(param("dropped"))
    for i in range(cycles):
        dropped += int(param("dropped"))
        r = subprocess.run(["rmmod", "proctop_cn"], capture_output=True, text=True)
        if r.returncode:
            fails.append(f"rmmod #{i}: {r.stderr.strip()}")
        time.sleep(0.05)
        # every other load also attaches the (experimental) kprobes
        extra = ["use_kprobes=Y"] if i % 2 == 0 else []
        r = subprocess.run(["insmod", ko, *extra], capture_output=True, text=True)
        if r.returncode:
            fails.append(f"insmod #{i}: {r.stderr.strip()}")
        time.sleep(0.3)
    # the reloaded module still works (storm still running)
    try:
        chk = Sub()
        chk.subscribe(EV_NONZERO_EXIT)
        p3, _ = run(["sh", "-c", "exit 3"])
        evs = chk.collect(5.0, until=lambda e: any(x.pid == p3 and x.exit_code == 768 for x in e))
        if not any(x.pid == p3 and x.exit_code == 768 for x in evs):
            fails.append("no event after the last reload")
        chk.close()
    except Exception as e:  # noqa: BLE001
        fails.append(f"after the last reload: {e!r}")
    open(stop, "w").close()
    for w in workers:
        try:
            w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()
            fails.append(f"worker {w.args[-3:]} hung")
    dt = time.monotonic() - t0

    def rd(name):
        try:
            with open(f"{run_dir}/{name}") as f:
                return f.read().split()
        except OSError:
            return ["?"]
    forks = rd("forks")[0]
    s_root, s_nobody = rd("sub"), rd("sub65534")
    print(f"storm: {forks} processes in {dt:.1f}s, {cycles} unload/reload cycles; events received "
          f"root={s_root[0]} (nonzero exits {s_root[1:2]}, overruns {s_root[2:3]}), "
          f"uid65534={s_nobody[0]} (overruns {s_nobody[2:3]}); "
          f"dropped (summed over loads)={dropped + int(param('dropped'))}",
          flush=True)
    try:
        enough = (int(forks) >= min(1000, 100 * cycles + 100)
                  and int(s_root[0]) > 0 and int(s_nobody[0]) > 0)
    except ValueError:
        enough = False
    if not enough:
        fails.append("too few processes/events")
    report(f"5 fork storm + {cycles} reloads", not fails, "; ".join(fails))


def cmd_dmesg():
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    bad = [l for l in out.splitlines()
           if any(w in l for w in ("WARNING", "BUG", "Oops", "general protection", "Call Trace"))]
    for l in bad[:40]:
        print("dmesg:", l)
    report("6 dmesg clean", not bad, f"{len(bad)} bad lines")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "basic":
        cmd_basic()
    elif cmd == "limits":
        cmd_limits()
    elif cmd == "ownuid":
        cmd_ownuid()
    elif cmd == "ownuid-sub":
        cmd_ownuid_sub()
        sys.exit(0)
    elif cmd == "complete":
        cmd_complete()
    elif cmd == "storm":
        cmd_storm(sys.argv[2], int(sys.argv[3]))
    elif cmd == "storm-fork":
        storm_worker(sys.argv[2], sys.argv[3])
        sys.exit(0)
    elif cmd == "storm-sub":
        subscriber_worker(sys.argv[2], sys.argv[3])
        sys.exit(0)
    elif cmd == "dmesg":
        cmd_dmesg()
    elif cmd == "flood":
        cmd_flood()
    elif cmd == "flood-sub":
        cmd_flood_sub(int(sys.argv[2]))
        sys.exit(0)
    elif cmd == "flood-victim":
        cmd_flood_victim()
        sys.exit(0)
    elif cmd == "malformed":
        cmd_malformed()
    elif cmd == "native":
        cmd_native()
    else:
        sys.exit(f"unknown command {cmd}")
    sys.exit(0 if all(RESULTS) else 1)
