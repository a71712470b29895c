#!/usr/bin/env bash
# Boot Debian's arm64 kernel under qemu-system-aarch64 (TCG) with an initramfs made of
# scripts/arm64/rootfs.sh's userland plus PAYLOAD_DIR (copied to /payload), and run
# `sh /payload/run.sh` as the only process. Its output goes to stdout; the exit code of
# run.sh is this script's exit code.
#
#   scripts/arm64/boot.sh PAYLOAD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
payload=${1:?usage: boot.sh PAYLOAD_DIR}
[ -f "$payload/run.sh" ] || { echo "boot.sh: $payload/run.sh missing" >&2; exit 2; }
command -v qemu-system-aarch64 >/dev/null || bash "$here/../ensure-apt.sh" qemu-system-arm >&2
command -v cpio >/dev/null || bash "$here/../ensure-apt.sh" cpio >&2
cache=$(bash "$here/rootfs.sh" | tail -n1)
kernel=$(ls "$cache"/root/boot/vmlinuz-* | sort -V | tail -n1)
if [ ! -f "$cache/base.cpio" ]; then
  # the kernel image, device trees and udev rules are not needed inside
  (cd "$cache/root" && find . \( -path ./boot -o -path './usr/lib/linux-image-*' -o -path ./lib/udev \) \
     -prune -o -print | cpio -o -H newc --quiet) >"$cache/base.cpio.tmp"
  mv "$cache/base.cpio.tmp" "$cache/base.cpio"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/over/payload"
cp -a "$payload/." "$work/over/payload/"
cat >"$work/over/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /usr/local/bin
/bin/busybox --install -s /usr/local/bin
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
echo "arm64-vm: kernel $(uname -r) $(uname -m)"
cd /payload
sh /payload/run.sh
echo "arm64-vm: rc=$?"
poweroff -f
INIT
chmod +x "$work/over/init"
(cd "$work/over" && find . -print | cpio -o -H newc --quiet) >"$work/over.cpio"
cat "$cache/base.cpio" "$work/over.cpio" >"$work/initrd"
timeout "${ARM64_TIMEOUT:-1800}" qemu-system-aarch64 -M virt -cpu max -smp "${ARM64_CPUS:-2}" \
  -m "${ARM64_MEMORY:-3G}" -nographic -no-reboot -nic none -kernel "$kernel" -initrd "$work/initrd" \
  -append "console=ttyAMA0 rdinit=/init panic=-1 quiet" </dev/null | tee "$work/console" \
  | tr -d '\r'
rc=$(sed -n 's/^arm64-vm: rc=\([0-9]*\).*/\1/p' "$work/console" | tr -d '\r' | tail -n1)
[ -n "$rc" ] || { echo "boot.sh: the guest did not report an exit code" >&2; exit 1; }
exit "$rc"
