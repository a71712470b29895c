#!/usr/bin/env bash
# Build the image's base from Debian packages (mmdebstrap + import), for machines that
# reach Debian's archive but no container registry. The packages come from the apt
# sources this host is configured with; nothing else is downloaded.
#
#   scripts/image/base-image.sh [TAG]      default TAG: localhost/kpod-metrics-base:bookworm
#
# Contents: Debian bookworm minbase + python3 (3.11), python3-venv, libbpf1, ca-certificates:
# what `make run` needs (Makefile APT_RUN) and nothing to compile with.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
tag=${1:-localhost/kpod-metrics-base:bookworm}
suite=${BASE_SUITE:-bookworm}
arch=${BASE_ARCH:-$(dpkg --print-architecture)}
tool=$(container_tool)
packages=python3,python3-venv,libbpf1,ca-certificates
# rebuilt only when the recipe changes
recipe="suite=$suite arch=$arch packages=$packages"
if [ "$arch" != "$(dpkg --print-architecture)" ] && [ "$(id -u)" -eq 0 ]; then
  # maintainer scripts of a foreign architecture run under qemu-user through binfmt_misc
  bash "$here/../ensure-apt.sh" qemu-user-static binfmt-support
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable >/dev/null 2>&1 || true
fi
if [ "$("$tool" image inspect --format '{{ index .Config.Labels "kpod.base.recipe" }}' "$tag" 2>/dev/null || true)" = "$recipe" ]; then
  echo "base image $tag is up to date"
  exit 0
fi
if ! command -v mmdebstrap >/dev/null && [ "$(id -u)" -eq 0 ]; then
  bash "$here/../ensure-apt.sh" mmdebstrap
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 1; }
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && grep -qs "debian" "$f" && sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || { echo "no Debian apt sources on this host to build the base from" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "building base image $tag from Debian $suite packages ($packages)"
mmdebstrap --quiet --variant=minbase --architectures="$arch" --include="$packages" \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  "$suite" "$tmp/rootfs.tar" "${sources[@]}"
"$tool" import --arch "$arch" --change "LABEL kpod.base.recipe=$recipe" \
  --change 'CMD ["/bin/bash"]' "$tmp/rootfs.tar" "$tag" >/dev/null
echo "base image $tag built"
