#!/usr/bin/env bash
# What booting a kernel VM needs, from Debian and PyPI only (CI may be a fresh machine):
# QEMU, busybox (virtme-ng's initramfs), udev (names the guest's virtio-serial ports
# that carry the command's output and exit code), kmod (depmod, modprobe), e2fsprogs
# (the scratch disk), and virtme-ng from the project's `vm` extra in the venv.
#   scripts/vm/ensure-deps.sh [VENV]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-.venv}
bash "$here/../ensure-apt.sh" qemu-system-x86 busybox-static udev kmod e2fsprogs
(cd "$here/../.." && bash scripts/ensure-venv.sh "$venv" dev && bash scripts/ensure-venv.sh "$venv" vm)
