#!/usr/bin/env bash
# Generate vmlinux/arm64/vmlinux.h from the BTF of Debian's arm64 kernel, booted under
# qemu-system-aarch64 (boot.sh): the guest prints /sys/kernel/btf/vmlinux (gzip +
# base64) on its console, bpftool turns the raw BTF into C. Run it when the kernel the
# header is taken from should change; the header is committed (make bpf needs no VM).
#
#   scripts/arm64/vmlinux-h.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/payload"
cat >"$work/payload/run.sh" <<'RUN'
echo KPOD-BTF-BEGIN
gzip -c /sys/kernel/btf/vmlinux | base64
echo KPOD-BTF-END
RUN
bash "$here/boot.sh" "$work/payload" >"$work/console"
sed -n '/^KPOD-BTF-BEGIN$/,/^KPOD-BTF-END$/p' "$work/console" | sed '1d;$d' \
  | base64 -d | gunzip >"$work/vmlinux.btf"
mkdir -p "$root/vmlinux/arm64"
bpftool btf dump file "$work/vmlinux.btf" format c >"$root/vmlinux/arm64/vmlinux.h.tmp"
mv "$root/vmlinux/arm64/vmlinux.h.tmp" "$root/vmlinux/arm64/vmlinux.h"
echo "vmlinux/arm64/vmlinux.h: $(grep -c '' "$root/vmlinux/arm64/vmlinux.h") lines from $(grep -m1 'arm64-vm: kernel' "$work/console")"
