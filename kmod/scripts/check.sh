#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# `make -C kmod check`: from a clean Debian 12 machine, as root:
#   1. apt-get install the toolchain, Debian's 6.1 kernel + headers, QEMU, busybox
#   2. build proctop_cn.ko against the headers of the kernel linux-image-amd64
#      points at
#   3. boot that kernel in QEMU (TCG) with a busybox initramfs that mounts the
#      host's / read-only over 9p, and run kmod/tests/guest.sh inside
# Prints the guest's output; the exit status is the guest's verdict (no
# verdict: hang or crash => failure).
# Env: SKIP_APT=1 skips step 1; GUEST_TIMEOUT (s, default 600);
#      STORM_CYCLES (default 20); PROCTOP_E2E=auto|1|0 (run proctop itself in
#      the guest: auto = when ../proctop and pip are there; 1 = required).
set -euo pipefail
KMOD=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$KMOD"
t() { echo "[kmod check $(date -u +%T) +${SECONDS}s] $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "kmod check: must run as root (apt-get, 9p export of /)" >&2
    exit 2
fi

if [ "${SKIP_APT:-0}" != 1 ]; then
    t "apt-get install"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends build-essential busybox-static kmod cpio \
        util-linux python3 qemu-system-x86 linux-image-amd64 linux-headers-amd64 >/dev/null
fi

# kernel ABI that the linux-image-amd64 meta package points at, e.g. 6.1.0-56-amd64
KV=$(dpkg-query -W -f='${Depends}' linux-image-amd64 | grep -o 'linux-image-[^ ,]*' | head -1 | sed 's/^linux-image-//')
VMLINUZ=/boot/vmlinuz-$KV
KDIR=/lib/modules/$KV/build
if ! [ -r "$VMLINUZ" ] || ! [ -d "$KDIR" ]; then
    echo "kmod check: kernel $KV image or headers missing ($VMLINUZ, $KDIR)" >&2
    exit 2
fi

t "build proctop_cn.ko for $KV"
make -s clean
make KDIR="$KDIR" 2>&1 | grep -v -E '^make\[|Skipping BTF' || true
test -f proctop_cn.ko
modinfo -F vermagic proctop_cn.ko
# static fork-storm helper for test 5 (a Python fork is slow under TCG)
gcc -O2 -static -o tests/forkstorm tests/forkstorm.c || rm -f tests/forkstorm

# Optional end-to-end run of proctop itself in the guest (PROCTOP_E2E=auto|1|0):
# a world-readable copy of ../proctop plus pyroute2/psutil installed with pip
# --target into a directory under /tmp that the guest sees through 9p.
E2E_DIR=none
if [ "${PROCTOP_E2E:-auto}" != 0 ] && [ -f "$KMOD/../proctop/__main__.py" ]; then
    t "stage proctop for the end-to-end run"
    d=$(mktemp -d /tmp/proctop-e2e.XXXXXX)
    cp -r "$KMOD/../proctop" "$d/proctop"
    find "$d" -name __pycache__ -prune -exec rm -rf {} +
    pip_ok=0
    for py in ${PROCTOP_E2E_PYTHON:-} python3 /usr/bin/python3; do
        if "$py" -m pip --version >/dev/null 2>&1 &&
           "$py" -m pip install -q --disable-pip-version-check --target "$d" pyroute2 psutil >/dev/null 2>&1; then
            pip_ok=1; break
        fi
    done
    chmod -R a+rX "$d"; chmod 755 "$d"
    if [ $pip_ok = 1 ]; then
        E2E_DIR=$d
    else
        echo "kmod check: no pip to install pyroute2/psutil: skipping the proctop end-to-end run"
        [ "${PROCTOP_E2E:-auto}" = 1 ] && exit 2
    fi
fi

t "initramfs"
scripts/mkinitrd.sh "$KV" guest-initrd.cpio.gz

t "boot $KV in QEMU (TCG) and run tests/guest.sh"
rc=0
# thread=single: one host thread runs both vCPUs. With multi-threaded TCG
# the guest hung (both vCPUs looping on the int3 of a half-patched jump
# label in do_exit()) while module loads patched kernel text during the fork
# storm; single-threaded TCG keeps cross-modifying code coherent.
timeout "${GUEST_TIMEOUT:-600}" qemu-system-x86_64 -accel tcg,thread=single -cpu max -m 1G -smp 2 \
    -nographic -no-reboot -kernel "$VMLINUZ" -initrd guest-initrd.cpio.gz \
    -fsdev local,id=r,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=r,mount_tag=hostroot \
    -append "console=ttyS0 panic=-1 loglevel=5 softlockup_panic=1 softlockup_all_cpu_backtrace=1 guestcmd=$KMOD/tests/guest.sh ptc_storm=${STORM_CYCLES:-20} ptc_e2e=$E2E_DIR" \
    </dev/null 2>&1 | tr -d '\000\r' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' \
    | tee guest-console.log | grep -v -E '^\s*$|SeaBIOS|iPXE|Booting from' || true
rc=$(sed -n 's/.*GUEST-EXIT=\([0-9]*\).*/\1/p' guest-console.log | tail -1)
if [ -z "$rc" ]; then
    echo "kmod check: no GUEST-EXIT marker: guest hung, crashed or timed out"
    rc=99
fi
[ "$E2E_DIR" != none ] && rm -rf "$E2E_DIR"
t "done: guest exit status $rc"
exit "$rc"
