#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Guest side of `proctop module install` / `remove` (proctop/kernel/module_install.py, reached through proctop/cli/module.py):
# the module built, installed and loaded through DKMS as a user would get it.
#   dkms-install.sh install DIR ENV   mount writable tmpfs over what DKMS writes, run
#                                     `proctop module install` (the staged proctop in
#                                     DIR, its shipped source in DIR/kmod), check that
#                                     dkms installed the module for this kernel, that
#                                     it is loaded and set to load at boot; status 0
#                                     when the module is loaded
#   dkms-install.sh remove DIR ENV    `proctop module install` again (nothing to do),
#                                     then `proctop module remove`: unloaded, and no
#                                     trace in dkms, /usr/src or modules-load.d left
# ENV is the kernel's env file from fetch-kernel.sh (KV, KDIR: the unpacked headers,
# ROOT). The host's / is read-only here: /usr/src, /var/lib/dkms, /lib/modules (with
# $KV/build pointing at the unpacked headers) and /etc/modules-load.d get a tmpfs
# each, and dkms's temporary files go to /run. Prints PASS/FAIL lines for guest.sh.
set -u
ACTION=$1; D=$2; ENV=$3
# shellcheck disable=SC1090
. "$ENV"
MOD=proctop_cn
export TMPDIR=/run/ptc-dkms-tmp  # dkms's mktemp; /tmp is the host's, read-only
mkdir -p $TMPDIR
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd  # dkms's <(...); the initramfs's devtmpfs has no /dev/fd
uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN{printf "%.0f", b-a}'; }
proctop_module() {  # proctop_module ACTION: its output indented, its status returned
    local out rc
    out=$(cd /run && PATH=/run/ptc-shim:$PATH PYTHONPATH="$D" PYTHONDONTWRITEBYTECODE=1 \
        /usr/bin/python3 -m proctop module "$1" 2>&1)
    rc=$?
    echo "$out" | sed "s/^/  proctop module $1: /" >&2
    LAST=$out
    return $rc
}
check() {  # check NAME PROBLEMS...: PASS when there are none
    local name=$1; shift
    if [ $# = 0 ]; then echo "PASS [root] $name"; else echo "FAIL [root] $name: $*"; fi
}

case $ACTION in
install)
    for d in /usr/src /var/lib/dkms /lib/modules /etc/modules-load.d; do
        mount -t tmpfs ptc-dkms "$d" || echo "FAIL [root] tmpfs over $d"
    done
    mkdir -p "/lib/modules/$KV" /run/ptc-shim
    ln -s "$KDIR" "/lib/modules/$KV/build"
    for f in modules.builtin modules.builtin.modinfo modules.order; do
        [ -e "$ROOT/lib/modules/$KV/$f" ] && ln -s "$ROOT/lib/modules/$KV/$f" "/lib/modules/$KV/$f"
    done
    # 5.10's headers name gcc-10, which bookworm lacks: bookworm's gcc builds it cleanly
    for v in 10 11; do command -v gcc-$v >/dev/null || ln -s "$(command -v gcc)" /run/ptc-shim/gcc-$v; done
    t0=$(uptime_s)
    proctop_module install; rc=$?
    problems=()
    [ $rc = 0 ] || problems+=("exit status $rc")
    [ -d /sys/module/$MOD ] || problems+=("not loaded")
    dkms status -m $MOD -k "$KV" | grep -q ": installed" || problems+=("dkms status: $(dkms status -m $MOD 2>&1 | tr '\n' ' ')")
    ko=$(modinfo -k "$KV" -F filename $MOD 2>/dev/null)
    case $ko in */updates/dkms/$MOD.ko*) ;; *) problems+=("modinfo finds $MOD at '$ko', not in updates/dkms") ;; esac
    [ "$(grep -v '^#' /etc/modules-load.d/$MOD.conf 2>/dev/null)" = $MOD ] || problems+=("no /etc/modules-load.d/$MOD.conf")
    [ -f /usr/src/$MOD-*/dkms.conf ] || problems+=("no source in /usr/src")
    check "proctop module install: dkms built and installed $MOD for $KV, modprobe loaded it, modules-load.d loads it at boot ($(since "$t0")s)" "${problems[@]}"
    [ -d /sys/module/$MOD ]
    ;;
remove)
    t0=$(uptime_s)
    proctop_module install; rc=$?
    problems=()
    [ $rc = 0 ] || problems+=("exit status $rc")
    case $LAST in *"nothing to do"*) ;; *) problems+=("did not say nothing to do") ;; esac
    [ -d /sys/module/$MOD ] || problems+=("no longer loaded")
    check "proctop module install again: nothing to do ($(since "$t0")s)" "${problems[@]}"
    t0=$(uptime_s)
    proctop_module remove; rc=$?
    problems=()
    [ $rc = 0 ] || problems+=("exit status $rc")
    [ -d /sys/module/$MOD ] && problems+=("still loaded")
    [ -z "$(dkms status -m $MOD 2>&1)" ] || problems+=("dkms status: $(dkms status -m $MOD 2>&1 | tr '\n' ' ')")
    ls /usr/src/$MOD-* >/dev/null 2>&1 && problems+=("/usr/src/$MOD-* left")
    ls /lib/modules/"$KV"/updates/dkms/$MOD.ko* >/dev/null 2>&1 && problems+=("the .ko left in /lib/modules")
    [ -e /etc/modules-load.d/$MOD.conf ] && problems+=("/etc/modules-load.d/$MOD.conf left")
    check "proctop module remove: unloaded, dkms remove, source and modules-load.d file gone ($(since "$t0")s)" "${problems[@]}"
    for d in /etc/modules-load.d /lib/modules /var/lib/dkms /usr/src; do umount "$d"; done
    ;;
*) echo "dkms-install.sh: unknown action $ACTION" >&2; exit 2 ;;
esac
