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
#
# PLATFORM=linux/arm64 builds for arm64 on any host (multi-arch: build each platform,
# then join them with `podman manifest` / `docker buildx imagetools`): dependency wheels
# are downloaded for that platform (binary wheels only), the base is made for that
# architecture, and the package's objects/arm64/ are the ones the loader picks there.
# Foreign-architecture RUN steps need qemu-user-static registered in binfmt_misc.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/image/lib.sh
tag=${1:?usage: build.sh IMAGE_TAG}
tool=$(container_tool)
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
host_arch=$(dpkg --print-architecture)
platform=${PLATFORM:-linux/$host_arch}
arch=${platform#linux/}
base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  base=localhost/kpod-metrics-base:bookworm
  [ "$arch" = "$host_arch" ] || base=$base-$arch
  BASE_ARCH=$arch bash scripts/image/base-image.sh "$base"
fi
wheels=build/image/wheels
rm -rf "$wheels"
mkdir -p "$wheels"
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }
if [ "$arch" = "$host_arch" ]; then
  # our package (pure Python + the prebuilt BPF objects) and every runtime dependency
  quiet "$py" -m pip wheel --quiet --wheel-dir "$wheels" .
else
  declare -A manylinux=([arm64]=aarch64 [amd64]=x86_64)
  m=${manylinux[$arch]:?"no wheel platform known for $arch"}
  quiet "$py" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" .
  "$py" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))' \
    >build/image/requirements.txt
  # binary wheels of that platform only: nothing is compiled for a foreign machine
  quiet "$py" -m pip download --quiet --only-binary=:all: --python-version 3.11 \
    --implementation cp --platform "manylinux2014_$m" --platform "manylinux_2_28_$m" \
    --platform "manylinux_2_17_$m" --dest "$wheels" -r build/image/requirements.txt
fi
"$tool" build --quiet --platform "$platform" --build-arg BASE_IMAGE="$base" \
  --build-arg VERSION="${VERSION:-dev}" --network none -t "$tag" -f Dockerfile . >/dev/null
echo "built $tag (base $base, $platform, $tool)"
