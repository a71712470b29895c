#!/usr/bin/env bash
# The kernel matrix: for each Debian suite, boot its kernel (run.sh) and run
# guest-tests.sh there (tests/matrix, tests/kernel, tests/e2e with CI passed through);
# `host` runs the same selection on this machine's own kernel instead of a VM.
# Results per kernel in $VM_MATRIX_OUT/<suite>/ (junit.xml, probe.json|txt, pytest.log,
# kernel.txt, seconds.txt = guest test time, vm-seconds.txt = boot + tests,
# cpu-seconds.txt = host CPU (user+sys) the whole run took: TCG is CPU-bound, so on a
# busy shared machine this, not the wall time, tells what the run costs on CI's).
# Exit code: non-zero when any kernel's run failed or a VM did not report.
#   scripts/vm/matrix.sh [SUITE|host ...]      (default: bullseye bookworm trixie)
# VM_PARALLEL=N boots up to N VMs at once, each on single-threaded TCG (one host thread
# per VM, unless VM_TCG_THREAD says otherwise): a multi-threaded TCG guest keeps only
# ~1.2 of this machine's 2 cores busy (bullseye: 1,552 CPU s in 1,353 s), so two
# single-threaded guests side by side finish sooner than one after the other. Each
# VM's output lines are prefixed with its suite. `host` always runs alone, after them.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${VM_MATRIX_OUT:-/var/cache/kpod-metrics/matrix}
parallel=${VM_PARALLEL:-1}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bullseye bookworm trixie)
case "$parallel" in
  ''|*[!0-9]*|0) echo "matrix: VM_PARALLEL must be a positive number, not '$parallel'" >&2; exit 2 ;;
esac
cd "$root"
mkdir -p "$out"

# user+sys seconds of all finished children of this shell (bash's `times`, 2nd line),
# into $cpu. Called as is, never in $(...): a subshell would count its own children.
children_cpu() {
  # this shell's pid, taken here: inside $(...) BASHPID names the substitution's process
  local f="$out/.times.$BASHPID"
  times >"$f"   # a builtin in this shell: a pipe would run it in a subshell
  cpu=$(sed -n 2p "$f" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m");
    sub("s", "", p[2]); t += p[1] * 60 + p[2] } print t }')
  rm -f "$f"
}

# One kernel's run, its figures and exit code written into its directory. Runs in a
# subshell of its own (in the background when parallel), so `times` counts only it.
run_suite() {
  local suite=$1 dir=$out/$1 start cpu0 rc=0
  rm -rf "$dir"
  mkdir -p "$dir"
  start=$(date +%s)
  children_cpu
  cpu0=$cpu
  if [ "$suite" = host ]; then
    VM_OUT=$dir bash "$here/guest-tests.sh" || rc=$?
  else
    bash "$here/run.sh" "$suite" --out "$dir" -- bash "$here/guest-tests.sh" || rc=$?
  fi
  echo $(( $(date +%s) - start )) >"$dir/vm-seconds.txt"
  children_cpu
  awk -v a="$cpu0" -v b="$cpu" 'BEGIN { printf "%d\n", b - a }' >"$dir/cpu-seconds.txt"
  echo "$rc" >"$dir/exit-code.txt"
  echo "matrix: $suite ($(cat "$dir/kernel.txt" 2>/dev/null || echo '?')): exit $rc," \
       "$(cat "$dir/vm-seconds.txt") s with boot, $(cat "$dir/cpu-seconds.txt") s of host CPU" >&2
}

vms=() host=()
for suite in "${suites[@]}"; do
  if [ "$suite" = host ]; then host=(host); else vms+=("$suite"); fi
done

if [ "$parallel" -gt 1 ] && [ ${#vms[@]} -gt 1 ]; then
  export VM_TCG_THREAD=${VM_TCG_THREAD:-single}
  # what every run.sh does first (QEMU and virtme-ng, the kernel download through apt),
  # done here one after the other so the VMs do not race for apt and pip
  bash "$here/ensure-deps.sh" "${VENV:-$root/.venv}" >&2 || exit 2
  for suite in "${vms[@]}"; do
    bash "$here/fetch-kernel.sh" "$suite" >/dev/null || { echo "matrix: no kernel for $suite" >&2; exit 2; }
  done
  running=0
  for suite in "${vms[@]}"; do
    if [ "$running" -ge "$parallel" ]; then
      wait -n
      running=$((running - 1))
    fi
    ( run_suite "$suite" 2>&1 | sed -u "s/^/[$suite] /" ) &
    running=$((running + 1))
  done
  wait
else
  for suite in "${vms[@]}"; do
    ( run_suite "$suite" )
  done
fi
for suite in "${host[@]}"; do
  ( run_suite "$suite" )
done

failed=()
for suite in "${suites[@]}"; do
  dir=$out/$suite
  rc=$(cat "$dir/exit-code.txt" 2>/dev/null || echo '?')
  if [ "$rc" != 0 ] || [ ! -s "$dir/junit.xml" ]; then
    failed+=("$suite(exit $rc)")
  fi
  # The exit code must have come out of the VM: junit with failures and exit 0 means
  # the layer lost it (a failing matrix would read as a passing one).
  if [ "$rc" = 0 ] && grep -Eq '<testsuite[^>]* (failures|errors)="[1-9]' "$dir/junit.xml" 2>/dev/null; then
    echo "matrix: $suite: junit.xml has failures but the VM exited 0: exit code lost" >&2
    failed+=("$suite(exit code lost)")
  fi
done

"$root/${VENV:-.venv}/bin/python" "$here/kernels_doc.py" --results "$out" --summary "${suites[@]}" || true
if [ ${#failed[@]} -gt 0 ]; then
  echo "matrix: FAILED on ${failed[*]}" >&2
  exit 1
fi
