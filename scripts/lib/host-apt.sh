# Sourced by the scripts that download Debian packages: they use the archive this host's
# apt is configured with, so the project names no download host of its own.

# Prints the first Debian archive URI of the host's apt sources (deb822 `URIs:` or
# one-line `deb URI suite ...`), skipping the security archive; exits 1 if none.
host_debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] || continue
    uri=$(awk '
      /^[[:space:]]*#/ { next }
      /^URIs:/ { for (i = 2; i <= NF; i++) print $i; next }
      $1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }
    ' "$f" | grep -i 'debian' | grep -v -- '-security' | head -n1)
    if [ -n "$uri" ]; then echo "${uri%/}"; return 0; fi
  done
  echo "no Debian archive in this host's apt sources (set VM_DEBIAN_MIRROR)" >&2
  return 1
}
