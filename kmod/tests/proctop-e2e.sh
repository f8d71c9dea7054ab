#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Guest side of the optional end-to-end check: proctop itself (staged by
# scripts/check.sh in the world-readable directory DIR: proctop/ + its
# dependencies) run with /usr/bin/python3.
#   proctop-e2e.sh DIR WANT [SOURCE [CHECKS]]
# WANT: the source proctop must report (kmod: the loaded proctop_cn module;
# native: the kernel's own 6.6+ filter); SOURCE: what --source to give (auto,
# the default: proctop chooses by itself; kmod, native); CHECKS, comma
# separated (default json,named):
#   json      `proctop --json --only nonzero-exit --count 1` as root and as
#             uid 65534 prints the exit of `sh -c 'exit 3'`
#   json65534 the same as uid 65534 only
#   named     (WANT kmod) 1,000 processes that exec and exit at once are all
#             named (argv, comm) through the module's names extension
#   metrics   as uid 65534, --metrics on 127.0.0.1 counts the failure (tests/e2e_checks.py)
#   ui        as uid 65534, the UI in a 100x30 pty shows the failure's row, q exits 0
set -u
D=$1
WANT=${2:-kmod}
SOURCE=${3:-auto}
CHECKS=,${4:-json,named},
SRC=$(cd "$(dirname "$0")" && pwd)
O=/run/ptc-e2e; mkdir -p $O; chmod 1777 $O
NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
FORCE=""; [ "$SOURCE" = auto ] || FORCE="--source $SOURCE"
has() { case $CHECKS in *",$1,"*) return 0 ;; esac; return 1; }
WHO=""
has json && WHO="root uid65534"
has json65534 && WHO="uid65534"
for who in $WHO; do
    run=""; [ $who = uid65534 ] && run=$NOBODY
    out=$O/$who.$SOURCE.out; : >"$out"; chmod 666 "$out"
    (cd /run && $run env PYTHONPATH="$D" PYTHONDONTWRITEBYTECODE=1 timeout 300 /usr/bin/python3 \
        -m proctop $FORCE --json --only nonzero-exit --count 1 >"$out" 2>&1) &
    bg=$!
    for _ in $(seq 600); do [ -s "$out" ] && break; sleep 0.1; done  # header line = subscribed
    sleep 0.5
    sh -c 'exit 3' & sp=$!; wait $sp
    # a slow start could miss the first one: repeat until proctop is done
    for _ in $(seq 400); do kill -0 $bg 2>/dev/null || break; sh -c 'exit 3'; sleep 0.5; done
    wait $bg; rc=$?
    sed "s/^/  proctop[$who]: /" "$out" | cut -c1-300
    if [ $rc = 0 ] && grep -q "\"source\":\"$WANT\"" "$out" && grep -q '"event":"exit"' "$out" \
        && grep -q '"exit_code":3' "$out"; then
        echo "PASS [$who] proctop --json --only nonzero-exit --source $SOURCE: source $WANT (first: pid $sp)"
    else
        echo "FAIL [$who] proctop --json --only nonzero-exit --source $SOURCE: source $WANT (rc=$rc)"
        grep -H . /sys/module/proctop_cn/parameters/* 2>/dev/null | sed 's/^/  /'
    fi
done

for c in metrics ui; do
    has $c || continue
    /usr/bin/python3 "$SRC/e2e_checks.py" $c "$D" "$SOURCE" "$WANT" >$O/$c.out 2>&1
    cat $O/$c.out
    # a helper that died before its verdict is a failure too, never a silent skip
    grep -q -E '^(PASS|FAIL) ' $O/$c.out || echo "FAIL [uid65534] $c: e2e_checks.py gave no verdict"
done

# "named": with the module's names extension, 1,000 processes that exec and
# exit at once (tests/named.c, reaped only after the last started) must every
# one be named in proctop's output: argv on the exec, comm on the exit, though
# /proc has nothing left of them when proctop looks.
NAMED=/run/ptc/ptc-named
if has named && [ "$WANT" = kmod ] && [ -x "$NAMED" ] && \
   [ "$(cat /sys/module/proctop_cn/parameters/extensions 2>/dev/null)" = 1 ]; then
    out=$O/named.out; : >"$out"
    # exec: $bg is timeout itself, which passes the TERM below on to proctop
    (cd /run && exec env PYTHONPATH="$D" PYTHONDONTWRITEBYTECODE=1 timeout 600 /usr/bin/python3 \
        -m proctop $FORCE --json --only exec,exit >"$out" 2>&1) &
    bg=$!
    for _ in $(seq 600); do [ -s "$out" ] && break; sleep 0.1; done
    sleep 0.5
    t0=$(cut -d' ' -f1 /proc/uptime)
    "$NAMED" 1000
    t1=$(cut -d' ' -f1 /proc/uptime)
    # until proctop has printed them all, or its output stops growing for 20 s
    last=-1; still=0
    for _ in $(seq 2400); do
        n=$(grep -c '"ptc-named"' "$out")
        [ "$n" -ge 2000 ] && break
        kill -0 $bg 2>/dev/null || break
        if [ "$n" = "$last" ]; then still=$((still + 1)); [ $still -ge 80 ] && break; else still=0; last=$n; fi
        sleep 0.25
    done
    echo "  named: 1000 processes started and reaped in $(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')s; proctop lines $(wc -l <"$out"), naming ptc-named $(grep -c '"ptc-named"' "$out")"
    kill -TERM $bg 2>/dev/null; wait $bg
    grep -v '"ptc-named"' "$out" | grep '"event":"ex' | head -3 | cut -c1-300 | sed 's/^/  named, not named: /'
    python3 - "$out" "$t0" <<'EOP'
import json, sys
children, exits, unnamed = {}, set(), 0  # children: pid -> index from its argv
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "exec" and (e.get("cmdline") or [""])[:2] == ["ptc-named", "child"]:
        children[e["pid"]] = int(e["cmdline"][2])
    elif e.get("event") == "exit" and e.get("comm") == "ptc-named":
        exits.add(e["pid"])  # the children, and the launcher itself
    elif e.get("event") in ("exec", "exit") and not e.get("comm") and not e.get("cmdline"):
        unnamed += 1
named_exits = exits & set(children)
ok = sorted(children.values()) == list(range(1000)) and len(named_exits) == 1000
print(f"{'PASS' if ok else 'FAIL'} [root] named: 1000 processes that exec and exit at once, "
      f"every one named by proctop (exec argv {len(children)}/1000, exit comm {len(named_exits)}/1000, "
      f"unnamed exec/exit events {unnamed})")
EOP
fi
