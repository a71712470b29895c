#!/usr/bin/env bash
# Runs INSIDE the VM as the first command (scripts/vm/run.sh puts it there), then
# execs the user's command. Makes the guest look like a pure-cgroup-v2 node:
#   - cgroup2 at /sys/fs/cgroup with cpu, memory, io and pids enabled at the root;
#   - tracefs at /sys/kernel/tracing (tp/ programs), debugfs;
#   - the netfilter, veth and block modules loaded up front (autoloading from inside a
#     network namespace is not reliable);
#   - the scratch disk (virtio-blk, /dev/vda, ext4 made by run.sh) mounted at
#     $VM_SCRATCH: file-backed major faults and io.stat need a real block device.
# Prints one "vm:" line with the booted kernel and the enabled controllers, so a log
# always says where its tests ran.
set -uo pipefail

say() { echo "vm: $*" >&2; }

modules=(virtio_blk ext4 veth nf_tables nft_ct nft_numgen nft_reject_inet nft_reject
         nf_reject_ipv4 nf_conntrack sch_netem sch_fq ifb tcp_bbr)
for m in "${modules[@]}"; do
  modprobe -q "$m" 2>/dev/null || say "module $m not loaded (not in this kernel?)"
done

cg=/sys/fs/cgroup
if [ "$(stat -f -c %T "$cg" 2>/dev/null)" != cgroup2fs ]; then
  umount -R "$cg" 2>/dev/null || true
  mount -t cgroup2 -o nsdelegate cgroup2 "$cg" || { say "cannot mount cgroup2 at $cg"; exit 97; }
fi
for c in cpu memory io pids; do
  echo "+$c" >"$cg/cgroup.subtree_control" 2>/dev/null || say "cannot enable controller $c"
done

[ -d /sys/kernel/tracing/events ] || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
[ -d /sys/kernel/debug/tracing ] || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
[ -d /sys/kernel/tracing/events ] || say "tracefs not mounted"
mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true

scratch=${VM_SCRATCH:-}
if [ -n "$scratch" ]; then
  for _ in $(seq 1 100); do [ -b /dev/vda ] && break; sleep 0.1; done
  mkdir -p "$scratch"
  if ! mount -t ext4 /dev/vda "$scratch"; then
    say "scratch disk /dev/vda not mounted at $scratch"; exit 97
  fi
  chmod 1777 "$scratch"
fi

# Some tests want an address on lo and a hostname that resolves.
ip link set lo up 2>/dev/null || true

say "kernel $(uname -r), cgroup2 controllers: $(cat "$cg/cgroup.subtree_control")," \
    "scratch: ${scratch:+/dev/vda on }${scratch:-none}, cpus $(nproc)," \
    "mem $(awk '/MemTotal/ {print int($2/1024) " MiB"}' /proc/meminfo)"
[ $# -gt 0 ] || exit 0
exec "$@"
