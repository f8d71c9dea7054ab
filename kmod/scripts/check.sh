#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# `make -C kmod check`: from a clean Debian 12 machine, as root, the kernel
# matrix:
#   1. apt-get install the toolchain, QEMU, busybox
#   2. download Debian's kernels (image + headers, not installed: unpacked into
#      a scratch directory, scripts/fetch-kernel.sh), all at once
#   3. per kernel, one after another: build proctop_cn.ko against its headers
#      (modes module and both), boot it in QEMU (TCG) with a busybox initramfs
#      that mounts the host's / read-only over 9p, and run kmod/tests/guest.sh
#      inside in that mode:
#        bullseye 5.10, bookworm 6.1    module: the module's whole suite as root
#                                       and uid 65534, proctop picks the module;
#                                       bookworm (KMOD_DKMS_GUEST): `proctop module
#                                       install` (DKMS, in the guest), proctop on the
#                                       module it loaded, `proctop module remove`
#        bookworm-backports 6.12        both: the kernel's own connector as root
#                                       and uid 65534, then the module's whole
#                                       suite (5 storm cycles) and proctop
#                                       --source kmod as uid 65534 on a 6.6+ kernel
#        newest (sid or trixie-backports, whichever is newer; 7.3 on 2026-12-06)
#                                       native: no module; as uid 65534 proctop
#                                       picks native: --json, --metrics, the UI in a pty
#   4. build the module against the headers of kernels listed in
#      KMOD_BUILD_ONLY: each is "built" or says why not (newest's want gcc 14)
#   5. `dkms build` (kmod/dkms.conf) against each of those header trees
#      (KMOD_DKMS=0 skips it)
# Prints the guests' output and one line per kernel, with its mode, counts and times:
#   kernel <version> (<source>, <mode>): N passed, M failed [download, build+boot+tests, guest s]
# Exit status 0 only if every kernel passed (no verdict: hang or crash => failure).
# Env: SKIP_APT=1 skips step 1; KMOD_KERNELS: suite:mode[:storm cycles] (default
#      "bullseye:module bookworm:module bookworm-backports:both:5 newest:native");
#      KMOD_BUILD_ONLY (default "newest": headers only, or those of a booted
#      suite); KMOD_WORK=dir keeps (and reuses) the downloads there instead of
#      a fresh temporary directory; GUEST_TIMEOUT (s per kernel, default 1500:
#      a safety net, the machine may be shared); STORM_CYCLES (default 20, for
#      kernels without their own); PROCTOP_E2E=auto|1|0 (run proctop itself in
#      the guest: auto = when ../proctop and pip are there; 1 = required);
#      KMOD_DKMS_GUEST (default "bookworm": suites in mode module whose guest runs
#      `proctop module install` and `remove`, tests/dkms-install.sh; "" = none).
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
    apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends build-essential \
        busybox-static kmod cpio util-linux python3 qemu-system-x86 xz-utils zstd dwarves \
        debian-archive-keyring dkms >/dev/null
fi

KERNELS=${KMOD_KERNELS:-bullseye:module bookworm:module bookworm-backports:both:5 newest:native}
BUILD_ONLY=${KMOD_BUILD_ONLY-newest}
# where a build-only suite's headers are: a booted suite's download has them
hdr_dir() {
    case " $KERNELS " in *" $1:"*) echo "$WORK/$1" ;; *) echo "$WORK/hdr-$1" ;; esac
}
if [ -n "${KMOD_WORK:-}" ]; then
    WORK=$KMOD_WORK; mkdir -p "$WORK"
else
    WORK=$(mktemp -d /var/tmp/proctop-kmod.XXXXXX)
fi
# every download directory, once
DIRS=$({ for k in $KERNELS; do echo "$WORK/${k%%:*}"; done
         for b in $BUILD_ONLY; do hdr_dir "$b"; done; } | awk '!s[$0]++')
E2E_DIR=none
MADE_LIB_MODULES=0
cleanup() {
    [ "$E2E_DIR" != none ] && rm -rf "$E2E_DIR"
    [ $MADE_LIB_MODULES = 1 ] && rmdir /lib/modules
    [ -z "${KMOD_WORK:-}" ] && rm -rf "$WORK"
    return 0
}
trap cleanup EXIT

# each kernel once per run, all downloads at the same time (network, not CPU)
t "download kernels: $KERNELS"
declare -A FETCH_S
for d in $DIRS; do
    suite=${d##*/}
    if [ -f "$WORK/$suite/env" ]; then  # KMOD_WORK: downloaded by an earlier run
        echo cached >"$WORK/$suite.fetch.s"; continue
    fi
    what=all; src=$suite
    case $suite in hdr-*) what=headers; src=${suite#hdr-} ;; esac
    ( s0=$SECONDS
      if scripts/fetch-kernel.sh "$src" "$WORK/$suite" $what >"$WORK/$suite.fetch.log" 2>&1; then
          echo $((SECONDS - s0)) >"$WORK/$suite.fetch.s"
      else
          echo "kmod check: downloading $suite failed:"; cat "$WORK/$suite.fetch.log"
      fi ) &
done
wait
for k in $KERNELS; do
    suite=${k%%:*}
    FETCH_S[$suite]=$(cat "$WORK/$suite.fetch.s" 2>/dev/null || echo 0)
    [ "${FETCH_S[$suite]}" = cached ] || FETCH_S[$suite]+=s
    [ -f "$WORK/$suite.fetch.log" ] && tail -1 "$WORK/$suite.fetch.log"
done

# static fork-storm helper for test 5 (a Python fork is slow under TCG)
gcc -O2 -static -o tests/forkstorm tests/forkstorm.c || rm -f tests/forkstorm
# ... and the "named" test's short-lived processes (their comm: ptc-named)
gcc -O2 -static -o tests/ptc-named tests/named.c || rm -f tests/ptc-named

# Optional end-to-end run of proctop itself in the guest (PROCTOP_E2E=auto|1|0):
# a world-readable copy of ../proctop and ../themes plus the project's runtime
# dependencies (pyproject.toml's list, so a new one is never forgotten here)
# installed with pip --target into a directory under /tmp that the guest sees through 9p.
if [ "${PROCTOP_E2E:-auto}" != 0 ] && [ -f "$KMOD/../proctop/__main__.py" ]; then
    t "stage proctop for the end-to-end run"
    d=$(mktemp -d /tmp/proctop-e2e.XXXXXX)
    cp -r "$KMOD/../proctop" "$d/proctop"
    cp -r "$KMOD/../themes" "$d/themes"  # found beside the package, as in a source tree
    # the module's source as pip ships it (pyproject's data-files list), where
    # proctop.kernel.probe.kmod_source finds it beside the package: for
    # `proctop module install` in the guest
    mkdir "$d/kmod"
    python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["tool"]["setuptools"]["data-files"]["share/proctop/kmod"]))' \
        "$KMOD/../pyproject.toml" | while read -r f; do cp "$KMOD/../$f" "$d/kmod/"; done
    deps=$(python3 -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$KMOD/../pyproject.toml") || deps="pyroute2 psutil"
    find "$d" -name __pycache__ -prune -exec rm -rf {} +
    pip_ok=0
    for py in ${PROCTOP_E2E_PYTHON:-} python3 /usr/bin/python3; do
        if "$py" -m pip --version >/dev/null 2>&1 &&
           "$py" -m pip install -q --disable-pip-version-check --target "$d" $deps >/dev/null 2>&1; then
            pip_ok=1; break
        fi
    done
    chmod -R a+rX "$d"; chmod 755 "$d"
    # the guest's `proctop module install` (tests/dkms-install.sh) mounts a tmpfs on
    # /lib/modules: a machine with no kernel package (this CI's) has no such mount point
    if ! [ -d /lib/modules ]; then mkdir /lib/modules; MADE_LIB_MODULES=1; fi
    if [ $pip_ok = 1 ]; then
        E2E_DIR=$d
    else
        rm -rf "$d"
        echo "kmod check: no pip to install proctop's dependencies: skipping the proctop end-to-end run"
        [ "${PROCTOP_E2E:-auto}" = 1 ] && exit 2
    fi
fi

# build_module DIR KDIR: proctop_cn.ko built in DIR against KDIR (0 = built)
build_module() {
    local B=$1 KDIR=$2
    rm -rf "$B"; mkdir -p "$B"
    cp "$KMOD/Kbuild" "$KMOD/proctop_cn.c" "$B/"
    # CC=gcc: 5.10's headers name gcc-10 (not on bookworm); gcc 12 builds it cleanly.
    # Warnings are errors here: a warning on any kernel is a defect to look at.
    make -C "$KDIR" M="$B" CC=gcc KCFLAGS=-Werror modules 2>&1 | grep -v -E '^make\[|Skipping BTF' || true
    [ -f "$B/proctop_cn.ko" ]
}

# run_kernel SUITE MODE [CYCLES]: build (module, both), boot, test; appends to SUMMARY
SUMMARY=()
failed=0
run_kernel() {
    local suite=$1 mode=$2 cycles=${3:-${STORM_CYCLES:-20}} s0=$SECONDS b0 b1 log rc res what
    if ! [ -f "$WORK/$suite/env" ]; then
        SUMMARY+=("kernel $suite (not downloaded): 0 passed, 1 failed")
        return 1
    fi
    local KV VERSION SOURCE VMLINUZ KDIR ROOT
    # shellcheck disable=SC1090,SC1091
    . "$WORK/$suite/env"
    local B=$WORK/$suite/build KO=none
    what=$mode
    [ "$mode" = native ] || what="$mode, storm $cycles"
    if [ "$mode" != native ]; then
        t "build proctop_cn.ko for $KV"
        if ! build_module "$B" "$KDIR"; then
            SUMMARY+=("kernel $VERSION ($SOURCE, $what): 0 passed, 1 failed (build)")
            return 1
        fi
        modinfo -F vermagic "$B/proctop_cn.ko"
        KO=$B/proctop_cn.ko
    fi
    # `proctop module install` in the guest (DKMS): in the suites of KMOD_DKMS_GUEST only,
    # since the module's build under TCG takes ~100 s
    local dkms_guest=0
    case " ${KMOD_DKMS_GUEST-bookworm} " in *" $suite "*) [ "$mode" = module ] && dkms_guest=1 ;; esac
    b0=$SECONDS
    scripts/mkinitrd.sh "$KV" "$WORK/$suite/initrd.cpio.gz" "$ROOT"
    log=$KMOD/guest-console-$suite.log
    t "boot $KV in QEMU (TCG) and run tests/guest.sh (mode $mode)"
    # thread=single: one host thread runs both vCPUs. With multi-threaded TCG
    # the guest hung (both vCPUs looping on the int3 of a half-patched jump
    # label in do_exit()) while module loads patched kernel text during the fork
    # storm; single-threaded TCG keeps cross-modifying code coherent.
    timeout "${GUEST_TIMEOUT:-1500}" qemu-system-x86_64 -accel tcg,thread=single -cpu max -m 1G -smp 2 \
        -nographic -no-reboot -kernel "$VMLINUZ" -initrd "$WORK/$suite/initrd.cpio.gz" \
        -fsdev local,id=r,path=/,security_model=none,readonly=on,multidevs=remap \
        -device virtio-9p-pci,fsdev=r,mount_tag=hostroot \
        -append "console=ttyS0 panic=-1 loglevel=5 softlockup_panic=1 softlockup_all_cpu_backtrace=1 guestcmd=$KMOD/tests/guest.sh ptc_mode=$mode ptc_ko=$KO ptc_storm=$cycles ptc_e2e=$E2E_DIR ptc_env=$WORK/$suite/env ptc_dkms=$dkms_guest ptc_only=${KMOD_GUEST_ONLY:-all}" \
        </dev/null 2>&1 | stdbuf -oL tr -d '\000\r' | sed -u 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' \
        | tee "$log" | grep --line-buffered -v -E '^\s*$|SeaBIOS|iPXE|Booting from' || true
    b1=$SECONDS
    rc=$(sed -n 's/.*GUEST-EXIT=\([0-9]*\).*/\1/p' "$log" | tail -1)
    res=$(sed -n 's/.*kmod guest tests: \([0-9]* passed, [0-9]* failed\).*/\1/p' "$log" | tail -1)
    if [ -z "$rc" ]; then
        echo "kmod check: no GUEST-EXIT marker on $KV: guest hung, crashed or timed out"
        rc=99
    fi
    # no verdict line (hang, crash, timeout): what passed so far, and one failure more
    [ -n "$res" ] || res="$(grep -c '^PASS' "$log") passed, $(( $(grep -c '^FAIL' "$log") + 1 )) failed"
    [ "$rc" = 0 ] || case $res in *" 0 failed") res="${res% 0 failed} 1 failed" ;; esac
    SUMMARY+=("kernel $VERSION ($SOURCE, $what): $res [download ${FETCH_S[$suite]}, build+boot+tests $((b1 - s0))s, of it guest $((b1 - b0))s]")
    [ "$rc" = 0 ]
}

for k in $KERNELS; do
    IFS=: read -r suite mode cycles <<<"$k"
    run_kernel "$suite" "${mode:-module}" "$cycles" || failed=1
done

# builds only: kernels this machine does not boot (or need no module)
BUILDS=()
for b in $BUILD_ONLY; do
    d=$(hdr_dir "$b")
    if ! [ -f "$d/env" ]; then
        BUILDS+=("build $b: not downloaded"); failed=1; continue
    fi
    (
        # shellcheck disable=SC1090,SC1091
        . "$d/env"
        t "build proctop_cn.ko for $KV (build only)"
        # the compiler the kernel was built with must be there: trixie's is gcc 14
        want=$(sed -n 's/^CONFIG_GCC_VERSION=\([0-9]*\)[0-9][0-9][0-9][0-9]$/\1/p' "$KDIR/.config")
        have=$(gcc -dumpversion | cut -d. -f1)
        if [ -n "$want" ] && [ "$want" -gt "$have" ] && ! command -v "gcc-$want" >/dev/null; then
            echo "build $KV ($SOURCE): not built: its headers want gcc $want, this machine has gcc $have" >"$d/result"
        elif build_module "$d/build" "$KDIR"; then
            echo "build $KV ($SOURCE): built, $(modinfo -F vermagic "$d/build/proctop_cn.ko")" >"$d/result"
        else
            echo "build $KV ($SOURCE): FAILED" >"$d/result"
        fi
    )
    BUILDS+=("$(cat "$d/result")")
    case ${BUILDS[-1]} in *FAILED*) failed=1 ;; esac
done

# dkms, as a user installs it (README), against every header tree above; the
# source goes to /usr/src/proctop_cn-<version> and the dkms tree, and is
# removed again afterwards
DKMS=()
if [ "${KMOD_DKMS:-1}" = 1 ]; then
    ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
    dkms_clean() {
        dkms remove -m proctop_cn -v "$ver" --all >/dev/null 2>&1 || true
        rm -rf "/usr/src/proctop_cn-$ver"
    }
    dkms_clean
    src=$(mktemp -d); cp dkms.conf Kbuild proctop_cn.c "$src/"
    if dkms add "$src" >/dev/null; then
        # bullseye's headers name gcc-10, which bookworm lacks: a gcc-10 that
        # is bookworm's gcc (step 3 proved it builds the module cleanly)
        shim=$(mktemp -d); ln -s "$(command -v gcc)" "$shim/gcc-10"
        for d in $DIRS; do
            [ -f "$d/env" ] || continue
            (
                # shellcheck disable=SC1090,SC1091
                . "$d/env"
                if grep -q "not built: its headers want" "$d/result" 2>/dev/null; then
                    echo "dkms build $KV: skipped ($(sed 's/.*not built: //' "$d/result"))"
                elif PATH=$shim:$PATH dkms build -m proctop_cn -v "$ver" -k "$KV" \
                        --kernelsourcedir "$KDIR" >"$d/dkms.log" 2>&1; then
                    echo "dkms build $KV ($SOURCE): built"
                else
                    tail -20 "$d/dkms.log" >&2
                    echo "dkms build $KV ($SOURCE): FAILED"
                fi
            ) >"$d/dkms.result"
            DKMS+=("$(cat "$d/dkms.result")")
            case ${DKMS[-1]} in *FAILED*) failed=1 ;; esac
        done
        rm -rf "$shim"
    else
        DKMS+=("dkms add: FAILED"); failed=1
    fi
    dkms_clean; rm -rf "$src"
fi

t "kernel matrix"
printf '%s\n' "${SUMMARY[@]}" "${BUILDS[@]}" "${DKMS[@]}"
exit $failed
