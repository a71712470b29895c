#!/usr/bin/env bash
# Fetch the newest generic amd64 kernel of one Debian suite and lay it out where
# virtme-ng looks for it: /boot/vmlinuz-<ver> and /lib/modules/<ver> (vng finds a
# kernel's modules only that way). The package comes from Debian's archive through apt,
# with a sources list, lists and cache of its own, so the host's apt state is untouched;
# it is downloaded (never installed) and unpacked with dpkg-deb. The .deb is cached
# under $VM_KERNEL_CACHE: a rerun with the same package version downloads nothing.
#
#   scripts/vm/fetch-kernel.sh bullseye|bookworm|trixie
#
# Prints the kernel release (e.g. 5.10.0-32-amd64) as the last line of stdout.
set -euo pipefail
suite=${1:?usage: fetch-kernel.sh bullseye|bookworm|trixie}
case "$suite" in
  bullseye|bookworm|trixie) ;;
  *) echo "fetch-kernel.sh: unknown suite '$suite' (bullseye, bookworm or trixie)" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "fetch-kernel.sh: needs root (writes /boot and /lib/modules)" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
bash "$here/../ensure-apt.sh" kmod >&2   # depmod (here) and modprobe (in the VM)

cache=${VM_KERNEL_CACHE:-/var/cache/kpod-metrics/kernels}
dir=$cache/$suite
mkdir -p "$dir/lists/partial" "$dir/apt-cache/archives/partial" "$dir/debs"
# apt downloads as _apt when it can write the target directory (no "unsandboxed" warning).
chown _apt "$dir/debs" "$dir/lists/partial" "$dir/apt-cache/archives/partial" 2>/dev/null || true
# shellcheck source=../lib/host-apt.sh
. "$here/../lib/host-apt.sh"
mirror=${VM_DEBIAN_MIRROR:-$(host_debian_mirror)}
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$dir/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$dir/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$dir/lists"
  -o "Dir::Cache=$dir/apt-cache"
  -o "APT::Architecture=amd64"
)

# One index refresh a day is plenty: a suite's kernel changes with point releases.
index=$(ls "$dir"/lists/*_dists_"${suite}"_main_binary-amd64_Packages* 2>/dev/null | head -n1 || true)
if [ -z "$index" ] || [ -n "$(find "$index" -mmin +1440)" ]; then
  apt-get "${apt_opts[@]}" -qq update >&2
  index=$(ls "$dir"/lists/*_dists_"${suite}"_main_binary-amd64_Packages* | head -n1)
fi

# The generic flavour only: linux-image-<abi>-amd64 (trixie: linux-image-6.12.x+deb13-amd64),
# not -cloud-, -rt-, -dbg or -unsigned.
pkg=$(/usr/lib/apt/apt-helper cat-file "$index" \
  | sed -n 's/^Package: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' \
  | grep -Ev -- '-(cloud|rt)-amd64$' | sort -V | tail -n1)
[ -n "$pkg" ] || { echo "fetch-kernel.sh: no linux-image-*-amd64 in the $suite index" >&2; exit 1; }
ver=${pkg#linux-image-}

deb=$(ls "$dir/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  (cd "$dir/debs" && apt-get "${apt_opts[@]}" -qq download "$pkg" >&2)
  deb=$(ls "$dir/debs/${pkg}_"*.deb | head -n1)
fi

if [ ! -f "/boot/vmlinuz-$ver" ] || [ ! -f "/lib/modules/$ver/modules.dep" ] \
   || [ "$deb" -nt "/boot/vmlinuz-$ver" ]; then
  tmp=$(mktemp -d "$dir/unpack.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  dpkg-deb -x "$deb" "$tmp"
  # bullseye/bookworm ship lib/modules, trixie (merged /usr) usr/lib/modules.
  moddir=$tmp/lib/modules/$ver
  [ -d "$moddir" ] || moddir=$tmp/usr/lib/modules/$ver
  [ -d "$moddir" ] || { echo "fetch-kernel.sh: $deb has no modules for $ver" >&2; exit 1; }
  mkdir -p /boot /lib/modules
  rm -rf "/lib/modules/$ver"
  cp -a "$moddir" "/lib/modules/$ver"
  cp "$tmp/boot/System.map-$ver" "/boot/System.map-$ver" 2>/dev/null || true
  cp "$tmp/boot/config-$ver" "/boot/config-$ver" 2>/dev/null || true
  depmod -a "$ver"
  install -m 0644 "$tmp/boot/vmlinuz-$ver" "/boot/vmlinuz-$ver"
  touch -r "$deb" "/boot/vmlinuz-$ver"
fi
echo "$ver"
