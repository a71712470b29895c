#!/usr/bin/env bash
# An arm64 Debian userland and kernel for booting under qemu-system-aarch64 (TCG):
# Debian bookworm's generic arm64 kernel (6.1) plus just enough to load BPF objects
# with the agent's own loader (python3, cffi, libbpf, libseccomp) and busybox for the
# init. Packages come from the host's apt sources through mmdebstrap's `extract`
# variant: nothing runs foreign-architecture code while building, so no qemu-user is
# needed. Cached under $ARM64_CACHE (rebuilt only when the package list changes).
#
#   scripts/arm64/rootfs.sh     -> prints the directory holding root/ and vmlinuz
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${ARM64_CACHE:-/var/cache/kpod-metrics/arm64}
suite=bookworm
packages=linux-image-arm64,python3-minimal,libpython3.11-stdlib,python3-cffi-backend,python3-cffi,python3-pycparser,libbpf1,libseccomp2,busybox-static
recipe="$suite $packages"
mkdir -p "$cache"
if [ "$(cat "$cache/recipe" 2>/dev/null)" != "$recipe" ] || [ ! -d "$cache/root" ]; then
  bash "$here/../ensure-apt.sh" mmdebstrap >&2
  sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && grep -qs "debian" "$f" && sources+=("$f")
  done
  rm -rf "$cache/root" "$cache/rootfs.tar"
  mmdebstrap --quiet --variant=extract --architectures=arm64 --include="$packages" \
    --aptopt='Acquire::Languages "none"' "$suite" "$cache/rootfs.tar" "${sources[@]}" >&2
  mkdir -p "$cache/root"
  # modules and docs are not needed in the guest: leave them out of its initramfs
  tar -xf "$cache/rootfs.tar" -C "$cache/root" --exclude='./lib/modules' \
    --exclude='./usr/lib/modules' --exclude='./usr/share/doc' --exclude='./usr/share/man' \
    --exclude='./usr/share/locale' --exclude='./usr/lib/firmware' --exclude='./lib/firmware'
  rm -f "$cache/rootfs.tar" "$cache/base.cpio"
  echo "$recipe" >"$cache/recipe"
fi
echo "$cache"
