#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# fetch-kernel.sh SUITE DIR [headers]: download the kernel image and headers that
# Debian SUITE's linux-image-amd64 / linux-headers-amd64 point at, and unpack
# them into DIR/root (nothing is installed on this machine: bullseye's and
# trixie's kernels cannot be installed on bookworm anyway).
#   SUITE: bullseye | bookworm | bookworm-backports | trixie | trixie-backports | sid
#          | newest (whichever of sid and trixie-backports has the higher
#            linux-image-amd64 version: the newest kernel Debian serves)
#   headers: the headers only (to build the module, not to boot)
# Writes DIR/env (KV=, VERSION=, SOURCE=, VMLINUZ=, KDIR=, ROOT=) for
# check.sh to source. Uses a private apt sources list and state directory,
# so the machine's own apt configuration is neither used nor changed.
set -euo pipefail
SUITE=$1; DIR=$2; WHAT=${3:-all}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SEC_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
A=$DIR/apt
mkdir -p "$A/state/lists/partial" "$A/cache/archives/partial" "$A/parts" "$DIR/debs"
: >"$A/status"
case $SUITE in
    bullseye|bookworm|trixie)
        printf 'deb [signed-by=%s] %s %s main\ndeb [signed-by=%s] %s %s-security main\n' \
            "$KEYRING" "$MIRROR" "$SUITE" "$KEYRING" "$SEC_MIRROR" "$SUITE" >"$A/sources.list" ;;
    bookworm-backports|trixie-backports|sid|newest)
        for s in ${SUITE/newest/sid trixie-backports}; do
            printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$MIRROR" "$s"
        done >"$A/sources.list" ;;
    *) echo "fetch-kernel: unknown suite $SUITE" >&2; exit 2 ;;
esac
APT=(-o "Dir::Etc::SourceList=$A/sources.list" -o "Dir::Etc::SourceParts=$A/parts"
     -o "Dir::Etc::PreferencesParts=$A/parts" -o "Dir::Etc::Preferences=$A/none"
     -o "Dir::State=$A/state" -o "Dir::State::status=$A/status" -o "Dir::Cache=$A/cache"
     -o Debug::NoLocking=1 -o APT::Architecture=amd64 -o APT::Architectures::=amd64
     -o Acquire::Languages=none)
apt-get "${APT[@]}" update -qq
LABEL=$SUITE
if [ "$SUITE" = newest ]; then
    # the suite with the highest linux-image-amd64 (apt itself would prefer sid:
    # backports are pinned lower), then that suite's index alone
    best=; best_v=0
    while IFS='|' read -r _ v where; do
        v=$(echo $v); s=$(echo "$where" | awk '{print $2}'); s=${s%%/*}
        if dpkg --compare-versions "$v" gt "$best_v"; then best=$s; best_v=$v; fi
    done < <(apt-cache "${APT[@]}" madison linux-image-amd64)
    [ -n "$best" ] || { echo "fetch-kernel: no linux-image-amd64 in sid or trixie-backports" >&2; exit 1; }
    LABEL="$best (newest of sid, trixie-backports)"
    printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$MIRROR" "$best" >"$A/sources.list"
    apt-get "${APT[@]}" update -qq
fi
# meta package -> versioned image (e.g. linux-image-5.10.0-46-amd64); the
# backports meta is linux-image-amd64 too, but only in that suite's index
dep_of() {  # first dependency of $1 that matches $2
    apt-cache "${APT[@]}" depends "$1" | sed -n 's/^ *Depends: //p' | grep -E "$2" | head -1
}
IMG=$(dep_of linux-image-amd64 '^linux-image-[0-9]')
KV=${IMG#linux-image-}
KV=${KV%-unsigned}
HDR=linux-headers-$KV
PKGS=("$HDR")
[ "$WHAT" = headers ] || PKGS+=("$IMG")
# since 7.x (trixie-backports, sid) linux-image-<KV> is an empty package: the
# kernel is in linux-binary-<KV>, its modules in linux-modules-<KV>, and
# modules.builtin (which modprobe needs to tell "built in" from "missing") in
# linux-base-<KV>
if [ "$WHAT" != headers ]; then
    for d in $(apt-cache "${APT[@]}" depends "$IMG" | sed -n 's/^ *Depends: //p'); do
        case $d in "linux-binary-$KV"|"linux-modules-$KV"|"linux-base-$KV") PKGS+=("$d") ;; esac
    done
fi
for d in $(apt-cache "${APT[@]}" depends "$HDR" | sed -n 's/^ *Depends: //p'); do
    case $d in linux-headers-*|linux-kbuild-*) PKGS+=("$d") ;; esac
done
VERSION=$(apt-cache "${APT[@]}" show --no-all-versions "$IMG" | sed -n 's/^Version: //p' | head -1)
(cd "$DIR/debs" && apt-get "${APT[@]}" download -qq "${PKGS[@]}")
ROOT=$DIR/root
mkdir -p "$ROOT"
for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
rm -rf "$DIR/debs" "$A/cache"
# merged-/usr packages (trixie) ship /usr/lib/modules: modprobe -d wants lib/modules
if [ ! -d "$ROOT/lib/modules/$KV" ] && [ -d "$ROOT/usr/lib/modules/$KV" ]; then
    mkdir -p "$ROOT/lib/modules"; ln -s "../../usr/lib/modules/$KV" "$ROOT/lib/modules/$KV"
fi
[ -d "$ROOT/lib/modules/$KV/kernel" ] && depmod -b "$ROOT" "$KV"
KDIR=$ROOT/usr/src/linux-headers-$KV
# the headers' Makefile may name the -common tree by absolute path (5.10):
# point it at the unpacked copy
sed -i "s#\([ =]\)/usr/src/linux-headers-#\1$ROOT/usr/src/linux-headers-#g" "$KDIR/Makefile"
# /boot (up to 6.12), linux-image-<KV>'s own directory, or beside the modules (7.x linux-binary)
VMLINUZ=$(ls "$ROOT"/boot/vmlinuz-"$KV" "$ROOT"/usr/lib/linux-image-"$KV"/vmlinuz \
    "$ROOT"/usr/lib/modules/"$KV"/vmlinuz 2>/dev/null | head -1 || true)
if [ "$WHAT" != headers ] && [ -z "$VMLINUZ" ]; then
    echo "fetch-kernel: no vmlinuz for $KV in ${PKGS[*]}" >&2; exit 1
fi
cat >"$DIR/env" <<EOF
KV=$KV
VERSION=$VERSION
SOURCE="Debian $LABEL $IMG"
VMLINUZ=$VMLINUZ
KDIR=$KDIR
ROOT=$ROOT
EOF
echo "fetched $IMG $VERSION (${PKGS[*]})"
