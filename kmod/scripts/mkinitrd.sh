#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# mkinitrd.sh KV OUT [ROOT]: tiny busybox initramfs for kernel KV (its
# modules under ROOT/lib/modules, default /) that loads the
# virtio/9p modules, mounts the host's / read-only over 9p (tag hostroot),
# binds /proc /sys /dev into it, puts a tmpfs on /run and chroots into the
# host to run the command given as guestcmd=... on the kernel command line.
# The console gets "GUEST-EXIT=<status>" when that command ends.
set -euo pipefail
KV=$1; OUT=$2; ROOT=${3:-/}
R=$(mktemp -d); trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,proc,sys,dev,host,mods}
cp /bin/busybox "$R/bin/busybox"
for a in sh mount insmod poweroff chroot cat echo sleep sed; do ln -s busybox "$R/bin/$a"; done
# busybox insmod reads plain .ko files only: unpack .ko.xz/.ko.zst (trixie)
for m in virtio_pci 9pnet_virtio 9p; do modprobe -d "$ROOT" -S "$KV" --show-depends $m; done \
    | awk '$1=="insmod"{print $2}' | awk '!s[$0]++' | while read -r m; do
        b=${m##*/}
        case $m in
            *.ko.xz) xz -dc "$m" > "$R/mods/${b%.xz}"; b=${b%.xz} ;;
            *.ko.zst) zstd -qdc "$m" > "$R/mods/${b%.zst}"; b=${b%.zst} ;;
            *) cp "$m" "$R/mods/$b" ;;
        esac
        echo "$b"
    done > "$R/mods/order"
cat > "$R/init" <<'EOI'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
while read -r m; do insmod /mods/$m; done < /mods/order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /host
for d in proc sys dev; do mount --bind /$d /host/$d; done
mount -t tmpfs tmp /host/run
cmd=$(sed -n 's/.*guestcmd=\([^ ]*\).*/\1/p' /proc/cmdline)
chroot /host /bin/bash -c "$cmd"; echo "GUEST-EXIT=$?"
poweroff -f
EOI
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT"
