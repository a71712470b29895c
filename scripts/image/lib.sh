# Shared by the image scripts: which container tool, with which settings.
# shellcheck shell=bash
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
container_tool() {
  if [ -n "${CONTAINER_TOOL:-}" ]; then echo "$CONTAINER_TOOL"; return; fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; return; fi
  if ! command -v podman >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    bash "$here/../ensure-apt.sh" podman runc >&2
  fi
  if command -v podman >/dev/null 2>&1; then echo podman; return; fi
  echo "neither a working docker nor podman found (apt-get install podman runc)" >&2
  return 1
}
# podman reads our containers.conf unless the caller chose one
if [ -z "${CONTAINERS_CONF:-}" ]; then export CONTAINERS_CONF="$here/containers.conf"; fi
