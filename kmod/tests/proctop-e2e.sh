#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Guest side of the optional end-to-end check: proctop itself (staged by
# scripts/check.sh in the world-readable directory $1: proctop/ + pyroute2 +
# psutil) run with /usr/bin/python3 against the loaded proctop_cn module, as
# root and as uid 65534, must print the exit of `sh -c 'exit 3'`.
set -u
D=$1
O=/run/ptc-e2e; mkdir -p $O; chmod 1777 $O
NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
for who in root uid65534; do
    run=""; [ $who = uid65534 ] && run=$NOBODY
    out=$O/$who.out; : >"$out"; chmod 666 "$out"
    (cd /run && $run env PYTHONPATH="$D" PYTHONDONTWRITEBYTECODE=1 timeout 90 /usr/bin/python3 \
        -m proctop --json --only nonzero-exit --count 1 >"$out" 2>&1) &
    bg=$!
    for _ in $(seq 600); do [ -s "$out" ] && break; sleep 0.1; done  # header line = subscribed
    sleep 0.5
    sh -c 'exit 3' & sp=$!; wait $sp
    # a slow start could miss the first one: repeat until proctop is done
    for _ in $(seq 60); do kill -0 $bg 2>/dev/null || break; sh -c 'exit 3'; sleep 0.5; done
    wait $bg; rc=$?
    sed "s/^/  proctop[$who]: /" "$out" | cut -c1-300
    if [ $rc = 0 ] && grep -q '"source":"kmod"' "$out" && grep -q '"event":"exit"' "$out" \
        && grep -q '"exit_code":3' "$out"; then
        echo "PASS [$who] proctop --json --only nonzero-exit via proctop_cn (first: pid $sp)"
    else
        echo "FAIL [$who] proctop --json --only nonzero-exit via proctop_cn (rc=$rc)"
    fi
done
