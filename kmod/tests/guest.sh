#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Runs inside the QEMU guest (host / mounted read-only, /run is a tmpfs).
# ptc_mode= on the kernel command line says what it proves:
#   module  (< 6.6) loads the module (ptc_ko=, default ../proctop_cn.ko), runs
#           cntest.py as root and as uid 65534, then proctop end to end
#           (auto: it must choose the module) with --json and the "named" test
#   native  (6.6+) loads nothing: the kernel's own proc connector as root and
#           uid 65534, then proctop end to end as uid 65534 (auto: it must
#           choose native) with --json, --metrics and the UI in a pty
#   both    (6.6+) first native's connector tests, then the module's whole
#           suite on the same kernel, then proctop: auto with the module loaded
#           (it must still choose native, which works here) and --source kmod
#           (--json as uid 65534, "named")
#           In mode module with ptc_dkms=1 and proctop staged, the module is then unloaded and
#           `proctop module install` builds, installs and loads it through DKMS
#           (tests/dkms-install.sh); proctop's end-to-end run uses that module,
#           and `proctop module remove` ends it.
# ptc_storm= reload cycles of the fork-storm test; ptc_e2e= staged proctop;
# ptc_env= the kernel's env file (fetch-kernel.sh: its unpacked headers, for DKMS).
set -u
SRC=$(cd "$(dirname "$0")" && pwd)
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
KO_SRC=$(arg ptc_ko); KO_SRC=$(readlink -f "${KO_SRC:-$SRC/../proctop_cn.ko}")
MODE=$(arg ptc_mode); MODE=${MODE:-module}
ONLY=$(arg ptc_only)   # e2e: load the module and run proctop end to end only (development)
CYCLES=$(arg ptc_storm); CYCLES=${CYCLES:-20}
E2E=$(arg ptc_e2e)
KENV=$(arg ptc_env)
DKMS=$(arg ptc_dkms)
PY=/usr/bin/python3
NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
export PYTHONDONTWRITEBYTECODE=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin

# world-readable copy: the checkout may sit below a directory uid 65534 cannot enter
W=/run/ptc; mkdir -p $W; cp "$SRC/cntest.py" $W/; [ $MODE = native ] || cp "$KO_SRC" $W/proctop_cn.ko; for x in forkstorm ptc-named; do [ -x "$SRC/$x" ] && cp "$SRC/$x" $W/; done
chmod 755 $W; chmod 644 $W/*; for x in forkstorm ptc-named; do [ -f $W/$x ] && chmod 755 $W/$x; done
KO=$W/proctop_cn.ko
LOG=$W/results.log
cd $W
echo "guest: $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)s"
step() { echo "--- $* (uptime $(cut -d' ' -f1 /proc/uptime)s)"; }

rc=0
# --metrics listens on 127.0.0.1 and the UI runs in a pty: the initramfs
# brings up no interface and mounts no devpts
ip link set lo up 2>/dev/null || busybox ifconfig lo 127.0.0.1 up 2>/dev/null || echo "guest: no loopback"
mkdir -p /dev/pts && mount -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts || echo "guest: no devpts"
e2e() {  # e2e WANT SOURCE CHECKS: proctop end to end, when staged
    if [ -n "$E2E" ] && [ "$E2E" != none ]; then
        step "proctop end-to-end: --source $2, must be $1 ($3)"
        bash "$SRC/proctop-e2e.sh" "$E2E" "$1" "$2" "$3" 2>&1 | tee -a $LOG
    fi
}
verdict() {
    step "test 6 dmesg"; $PY cntest.py dmesg 2>&1 | tee -a $LOG
    pass=$(grep -c '^PASS' $LOG); fail=$(grep -c '^FAIL' $LOG)
    echo "kmod guest tests: $pass passed, $fail failed"
    [ "$fail" = 0 ] && [ "$pass" -gt 0 ] || rc=1
    exit $rc
}
if [ $MODE = native ] || [ $MODE = both ]; then
    step "native: tests 1-3 as root"; $PY cntest.py native 2>&1 | tee -a $LOG
    step "native: tests 1-3 as uid 65534"; $NOBODY $PY cntest.py native 2>&1 | tee -a $LOG
    if [ $MODE = native ]; then
        e2e native auto json65534,metrics,ui
        verdict
    fi
fi
# proctop module install (DKMS) here: proctop staged, the headers' env file given
dkms_ok() { [ "$DKMS" = 1 ] && [ $MODE = module ] && [ -n "$E2E" ] && [ "$E2E" != none ] && [ -f "$KENV" ]; }
dkms_install() {  # the module loaded through `proctop module install`, else insmod'ed
    step "proctop module install (DKMS)"
    bash "$SRC/dkms-install.sh" install "$E2E" "$KENV" 2>&1 | tee -a $LOG
    [ -d /sys/module/proctop_cn ] || insmod $KO  # the end-to-end run still gets a module
}
if [ "$ONLY" = dkms ] && dkms_ok; then  # development: the DKMS install and proctop on it only
    dkms_install
    e2e kmod auto json65534
    step "proctop module remove"; bash "$SRC/dkms-install.sh" remove "$E2E" "$KENV" 2>&1 | tee -a $LOG
    verdict
fi
if ! insmod $KO; then
    echo "FAIL insmod"; dmesg | tail -20; exit 1
fi
for p in /sys/module/proctop_cn/parameters/*; do echo "param ${p##*/}=$(cat $p)"; done
dmesg | grep proctop_cn | sed 's/^/dmesg: /'

if [ "$ONLY" = e2e ]; then
    bash "$SRC/proctop-e2e.sh" "$E2E" kmod 2>&1 | tee -a $LOG
    pass=$(grep -c '^PASS' $LOG); fail=$(grep -c '^FAIL' $LOG)
    echo "kmod guest tests: $pass passed, $fail failed"
    exit 1
fi
step "tests 1-3 as root";  $PY cntest.py basic 2>&1 | tee -a $LOG
step "tests 1-3 as uid 65534"; $NOBODY $PY cntest.py basic 2>&1 | tee -a $LOG
step "use_kprobes=Y: tests 1-3 again, UID/GID/SID/PTRACE/COREDUMP/COMM from kprobes"
if rmmod proctop_cn && insmod $KO use_kprobes=Y; then
    echo "supported_events=$(cat /sys/module/proctop_cn/parameters/supported_events)"
    $PY cntest.py basic 2>&1 | tee -a $LOG
    $NOBODY $PY cntest.py basic 2>&1 | tee -a $LOG
    rmmod proctop_cn && insmod $KO || echo "FAIL [root] reload without kprobes" | tee -a $LOG
else
    echo "FAIL [root] reload with use_kprobes=Y" | tee -a $LOG
fi
step "table limit"; $PY cntest.py limits 2>&1 | tee -a $LOG
step "flood: no lock-out"; $PY cntest.py flood 2>&1 | tee -a $LOG
step "malformed control messages (uid 65534)"; $NOBODY $PY cntest.py malformed 2>&1 | tee -a $LOG
step "test 4 own_uid_only"; $PY cntest.py ownuid 2>&1 | tee -a $LOG
step "test 5a completeness"; $PY cntest.py complete 2>&1 | tee -a $LOG
step "test 5 fork storm + $CYCLES reloads"; $PY cntest.py storm $KO "$CYCLES" 2>&1 | tee -a $LOG
if [ $MODE = both ]; then
    e2e native auto json65534       # the module is loaded, native works: native
    e2e kmod kmod json65534,named   # the module on a 6.6+ kernel, asked for
elif ! dkms_ok; then
    e2e kmod auto json,named
fi
step "unload"
if [ -d /sys/module/proctop_cn ]; then
    echo "dropped=$(cat /sys/module/proctop_cn/parameters/dropped)"
    rmmod proctop_cn && echo "PASS [root] final rmmod" >>$LOG || echo "FAIL [root] final rmmod" | tee -a $LOG
else
    echo "FAIL [root] module not loaded after the storm" | tee -a $LOG
fi
if dkms_ok; then  # the same end-to-end checks, on the module DKMS built and modprobe loaded
    dkms_install
    e2e kmod auto json,named
    step "proctop module remove"; bash "$SRC/dkms-install.sh" remove "$E2E" "$KENV" 2>&1 | tee -a $LOG
fi
dmesg | grep -E 'proctop_cn' | tail -5 | sed 's/^/dmesg: /'
verdict
