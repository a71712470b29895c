#!/usr/bin/env bash
# Build the agent image with docker or podman, whichever works here (make image).
#
#   scripts/image/build.sh IMAGE_TAG
#
# The package and its dependencies are turned into wheels on this host first (pip with
# this host's index settings), so the image build itself needs no network and no
# registry: the build stage installs from those wheels only. BASE_IMAGE names the base
# (any Debian-like image with python3 3.11 + venv); unset, the base is built from
# Debian packages by base-image.sh. VERSION labels the image.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/image/lib.sh
tag=${1:?usage: build.sh IMAGE_TAG}
tool=$(container_tool)
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  base=localhost/kpod-metrics-base:bookworm
  bash scripts/image/base-image.sh "$base"
fi
wheels=build/image/wheels
rm -rf "$wheels"
mkdir -p "$wheels"
# our package (pure Python + the prebuilt BPF objects) and every runtime dependency
"$py" -m pip wheel --quiet --wheel-dir "$wheels" . 2> >(grep -v "^WARNING: Location" >&2)
"$tool" build --quiet --build-arg BASE_IMAGE="$base" --build-arg VERSION="${VERSION:-dev}" \
  --network none -t "$tag" -f Dockerfile . >/dev/null
echo "built $tag (base $base, $tool)"
