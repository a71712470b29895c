#!/usr/bin/env bash
# Runs INSIDE a matrix VM (scripts/vm/matrix.sh starts it through run.sh): records what
# the agent sees on this kernel and runs the kernel-dependent tests, results in
# $VM_OUT:
#   kernel.txt    uname -r; commit.txt: the checkout's commit
#   probe.json    `kpod-metrics probe --json` (probe.txt: its plain output when --json
#                 is not there; probe.err: its log, e.g. verifier output)
#   junit.xml     pytest's results; pytest.log its output
#   seconds.txt   wall seconds the tests took inside the guest
# Exit code: pytest's.
#   guest-tests.sh [PYTEST ARGS...]   (default selection: scripts/vm/selection.txt)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${VM_OUT:?guest-tests.sh runs in a VM started with run.sh --out}
py=${VENV:-.venv}/bin/python
uname -r >"$out/kernel.txt"
# what was tested: the checkout's commit (+dirty when it had uncommitted changes)
{ git rev-parse --short HEAD 2>/dev/null || echo unknown; } | tr -d '\n' >"$out/commit.txt"
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || echo -n "+dirty" >>"$out/commit.txt"

if "$py" -m kpodmetrics probe --help 2>/dev/null | grep -q -- '--json'; then
  "$py" -m kpodmetrics probe --profile comprehensive --json >"$out/probe.json" 2>"$out/probe.err" \
    || echo "guest-tests: probe --json exited $?" >&2
else
  "$py" -m kpodmetrics probe --profile comprehensive >"$out/probe.txt" 2>"$out/probe.err" \
    || echo "guest-tests: probe exited $?" >&2
fi

if [ $# -eq 0 ]; then
  mapfile -t sel < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/selection.txt")
  set -- "${sel[@]}"
fi
printf '%s\n' "$@" >"$out/selection.txt"
start=$(date +%s)
"$py" -m pytest -q -ra -p no:cacheprovider --junitxml="$out/junit.xml" "$@" 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
echo $(( $(date +%s) - start )) >"$out/seconds.txt"
exit "$rc"
