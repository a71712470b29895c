#!/usr/bin/env bash
# Create the project venv and install the package (`run`), or it with one of its extras
# from pyproject.toml (`dev`: tests; `vm`: virtme-ng for the kernel VMs).
# Re-runs pip only when pyproject.toml changed since the last install.
set -euo pipefail
venv=${1:-.venv}
extra=${2:-run}
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
stamp="$venv/.kpod-installed-$extra"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  if [ "$extra" = run ]; then
    "$venv/bin/python" -m pip install -q -e .
  else
    "$venv/bin/python" -m pip install -q -e ".[$extra]"
  fi
  touch "$stamp"
fi
