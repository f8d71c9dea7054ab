#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Runs inside the QEMU guest (host / mounted read-only, /run is a tmpfs):
# loads the module (ptc_ko=, default ../proctop_cn.ko) and runs cntest.py as
# root and as uid 65534; with ptc_mode=native (6.6+ kernels) loads nothing and
# tests the kernel's own proc connector and proctop's choice of it instead.
set -u
SRC=$(cd "$(dirname "$0")" && pwd)
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
KO_SRC=$(arg ptc_ko); KO_SRC=$(readlink -f "${KO_SRC:-$SRC/../proctop_cn.ko}")
MODE=$(arg ptc_mode); MODE=${MODE:-module}
ONLY=$(arg ptc_only)   # e2e: load the module and run proctop end to end only (development)
CYCLES=$(arg ptc_storm); CYCLES=${CYCLES:-20}
E2E=$(arg ptc_e2e)
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
if [ $MODE = native ]; then
    step "native: tests 1-3 as root"; $PY cntest.py native 2>&1 | tee -a $LOG
    step "native: tests 1-3 as uid 65534"; $NOBODY $PY cntest.py native 2>&1 | tee -a $LOG
    if [ -n "$E2E" ] && [ "$E2E" != none ]; then
        step "proctop end-to-end ($E2E)"; bash "$SRC/proctop-e2e.sh" "$E2E" native 2>&1 | tee -a $LOG
    fi
    step "test 6 dmesg"; $PY cntest.py dmesg 2>&1 | tee -a $LOG
    pass=$(grep -c '^PASS' $LOG); fail=$(grep -c '^FAIL' $LOG)
    echo "kmod guest tests: $pass passed, $fail failed"
    [ "$fail" = 0 ] && [ "$pass" -gt 0 ] || rc=1
    exit $rc
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
if [ -n "$E2E" ] && [ "$E2E" != none ]; then
    step "proctop end-to-end ($E2E)"; bash "$SRC/proctop-e2e.sh" "$E2E" kmod 2>&1 | tee -a $LOG
fi
step "unload"
if [ -d /sys/module/proctop_cn ]; then
    echo "dropped=$(cat /sys/module/proctop_cn/parameters/dropped)"
    rmmod proctop_cn && echo "PASS [root] final rmmod" >>$LOG || echo "FAIL [root] final rmmod" | tee -a $LOG
else
    echo "FAIL [root] module not loaded after the storm" | tee -a $LOG
fi
step "test 6 dmesg"; $PY cntest.py dmesg 2>&1 | tee -a $LOG
dmesg | grep -E 'proctop_cn' | tail -5 | sed 's/^/dmesg: /'

pass=$(grep -c '^PASS' $LOG); fail=$(grep -c '^FAIL' $LOG)
echo "kmod guest tests: $pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ] || rc=1
exit $rc
