#!/usr/bin/env bash
# Boot one of Debian's kernels in a VM over this machine's own root filesystem and
# run a command there; its exit code is ours.
#
#   scripts/vm/run.sh SUITE [--out DIR] -- CMD [ARGS...]
#     SUITE   bullseye (5.10) | bookworm (6.1) | trixie (6.12)
#     --out   a host directory the guest can write (same path inside), e.g. for junit;
#             the whole console (kernel messages too) is also kept there, console.log,
#             so a guest that dies (exit 255: panic, QEMU killed) leaves its last words
#
# virtme-ng boots the kernel under QEMU TCG (nested KVM hangs on these machines:
# --disable-kvm), with the checkout writable through an overlay (the guest's writes
# never reach the host, except in --out), and a fresh virtio scratch disk (/dev/vda,
# ext4) mounted at /var/tmp. scripts/vm/guest-setup.sh makes it a pure cgroup v2 node
# before CMD runs, from the checkout directory, with CI passed through.
# Env: VM_MEMORY (3G), VM_CPUS (2), VM_TIMEOUT (seconds, 3600),
#      VM_TCG_THREAD (multi | single: QEMU's TCG threading; default per suite below),
#      VM_DISK_MB (1024), VM_VERBOSE=1 (kernel console on stderr),
#      VM_ENV (more NAME=VALUE words to pass into the guest).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
suite=${1:?usage: run.sh SUITE [--out DIR] -- CMD...}
shift
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --) shift; break ;;
    *) echo "run.sh: unexpected argument '$1' (the command goes after --)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "run.sh: no command given (run.sh SUITE -- CMD...)" >&2; exit 2; }

venv=${VENV:-$root/.venv}
bash "$here/ensure-deps.sh" "$venv" >&2
ver=$(bash "$here/fetch-kernel.sh" "$suite" | tail -n1)

work=$(mktemp -d /var/tmp/kpod-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
disk=$work/scratch.img
truncate -s "${VM_DISK_MB:-1024}M" "$disk"
mkfs.ext4 -q -F -L kpodscratch "$disk"

# The guest's environment is not the host's: pass what the tests read. (Not KPOD_*: the
# agent refuses unknown KPOD_ settings.)
envs=("CI=${CI:-}" "VM_SCRATCH=/var/tmp" "VM_SUITE=$suite" "VM_KERNEL=$ver"
      "PATH=$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
      "HOME=/root" "LANG=C.UTF-8" "PYTHONUNBUFFERED=1")
[ -n "$out" ] && envs+=("VM_OUT=$out")
# shellcheck disable=SC2206
[ -n "${VM_ENV:-}" ] && envs+=(${VM_ENV})
cmd=$(printf '%q ' env "${envs[@]}" bash "$here/guest-setup.sh" "$@")

# Multi-threaded TCG runs each vCPU on its own host thread. On 6.12 (trixie) it broke
# the guest once in a full run: an int3 oops while the kernel patched its own text
# (text_poke_bp, as BPF trampolines and static keys do) under QEMU's cross-vCPU code
# modification; the same tests passed when rerun alone. Single-threaded TCG runs all
# vCPUs on one host thread, in turn: no such race (and less host CPU per run:
# docs/architecture.md, the kernel matrix).
case "$suite" in
  trixie) tcg_thread=${VM_TCG_THREAD:-single} ;;
  *) tcg_thread=${VM_TCG_THREAD:-multi} ;;
esac
case "$tcg_thread" in
  multi|single) ;;
  *) echo "run.sh: VM_TCG_THREAD must be multi or single, not '$tcg_thread'" >&2; exit 2 ;;
esac

vng_args=(--run "/boot/vmlinuz-$ver" --disable-kvm
          --memory "${VM_MEMORY:-3G}" --cpus "${VM_CPUS:-2}"
          --overlay-rwdir "$root" --cwd "$root"
          --disk "$disk" --name "kpod-$suite"
          "--qemu-opts=-accel tcg,thread=$tcg_thread")
if [ -n "$out" ]; then
  mkdir -p "$out"
  vng_args+=(--rwdir "$out")
fi
# The kernel console goes to the log whenever there is one (--out), and to the terminal
# only with VM_VERBOSE=1: its lines are the ones with a "[ seconds.micro]" stamp, plus
# the boot chatter -v adds (virtiofsd probing, then 9p; the decompressor).
console=""
[ -n "$out" ] && console=$out/console.log
{ [ -n "$console" ] || [ "${VM_VERBOSE:-}" = 1 ]; } && vng_args+=(-v)
kernel_lines='^\[ *[0-9]+\.[0-9]+\] '
chatter='^(virtme: waiting for virtiofsd|virtme-run: failed to start virtiofsd|fuse: invalid argument|Probing EDD|Memory KASLR|Poking KASLR)'
died='Kernel panic|BUG:|Oops|Out of memory|Killed process|soft lockup|hung_task|general protection|reboot:'

echo "run.sh: booting $ver ($suite) under TCG ($tcg_thread-threaded)" >&2
# QEMU opens /proc/self/fd/1 and /2 once per guest port; were they regular files (a CI
# log), each port would write at its own offset over the others: hand it a pipe.
# The raw-image notice is QEMU's about our scratch disk: expected, dropped.
set +e
PATH="$venv/bin:$PATH" timeout --foreground -k 30 "${VM_TIMEOUT:-3600}" \
  vng "${vng_args[@]}" --exec "$cmd" </dev/null 2>&1 \
  | sed -u -e '/Image format was not specified/,+2d' \
  | if [ -n "$console" ]; then tee "$console"; else cat; fi \
  | if [ "${VM_VERBOSE:-}" = 1 ]; then cat; else grep --line-buffered -Ev "$kernel_lines|$chatter"; fi
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 255 ]; then
  # virtme-ng's code for "QEMU ended and the guest never reported its command's exit"
  echo "run.sh: $suite: the guest died before its command ended (kernel panic, guest" \
       "reset or QEMU killed)${console:+; console in $console, the last kernel lines:}" >&2
  if [ -n "$console" ]; then
    grep -E "$kernel_lines" "$console" | grep -E -m 8 "$died" >&2 || true
    grep -E "$kernel_lines" "$console" | tail -n 5 >&2 || true
  fi
fi
[ "$rc" -eq 124 ] && echo "run.sh: $suite VM timed out after ${VM_TIMEOUT:-3600}s" >&2
exit "$rc"
