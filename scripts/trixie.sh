#!/usr/bin/env bash
# The second stack: a Debian trixie root (LibTorch and PyTorch 2.6, numpy 2, Catch2 v3) made with
# debootstrap from the same Debian archive the host's apt uses, and reused once made.
#
#   scripts/trixie.sh                  make the root (if needed) and print its path
#   scripts/trixie.sh CMD [ARG ...]    run CMD inside it, in this checkout (bound at /srv/checkout-N)
#
# STATEDICT_TRIXIE_ROOT chooses where the root lives (default /var/lib/statedict/trixie). Needs root.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="${STATEDICT_TRIXIE_ROOT:-/var/lib/statedict/trixie}"
packages=(python3-torch python3-torchvision libtorch-dev python3-numpy g++ cmake ninja-build ccache nlohmann-json3-dev libcli11-dev catch2)
stamp="$root/.statedict-ready"

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# The archive the host already uses (so nothing here names a host of its own).
mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "trixie.sh: no Debian archive found in the host's apt sources" >&2; exit 2; }
  echo "$uri"
}

# Each checkout is bound at its own place in the root (its CMake caches remember the path), and
# several invocations may run at once (a build and a fixture generator): the mounts are counted
# under a lock and taken down by the last one out.
src="/srv/checkout-$(printf %s "$here" | cksum | cut -d' ' -f1)"
mounted() { grep -q " $1 " /proc/self/mounts; }
bind_all() {
  exec 9>>"$root.lock"
  flock 9
  local n
  n=$(cat "$root.users" 2>/dev/null || echo 0)
  for d in proc dev dev/shm; do
    $sudo mkdir -p "$root/$d"
    mounted "$root/$d" || $sudo mount --bind "/$d" "$root/$d"
  done
  $sudo mkdir -p "$root$src"
  mounted "$root$src" || $sudo mount --bind "$here" "$root$src"
  echo $((n + 1)) >"$root.users"
  flock -u 9
}
unbind_all() {
  flock 9
  local n
  n=$(($(cat "$root.users" 2>/dev/null || echo 1) - 1))
  if ((n <= 0)); then
    n=0
    for m in $(awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/self/mounts | sort -r); do $sudo umount -l "$m" || true; done
  fi
  echo "$n" >"$root.users"
  flock -u 9
}

make_root() {
  [ -f "$stamp" ] && return 0
  command -v debootstrap >/dev/null || bash "$here/scripts/deps.sh" debootstrap
  local uri
  uri=$(mirror)
  if [ ! -x "$root/usr/bin/apt-get" ]; then
    echo "statedict: debootstrap trixie into $root" >&2
    $sudo mkdir -p "$root"
    $sudo debootstrap --variant=minbase trixie "$root" "$uri" >"$root.debootstrap.log" 2>&1 ||
      { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  fi
  $sudo cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  echo "deb $uri trixie main" | $sudo tee "$root/etc/apt/sources.list" >/dev/null
  bind_all
  trap unbind_all EXIT
  echo "statedict: installing ${packages[*]} in the trixie root" >&2
  $sudo chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${packages[*]} >/dev/null"
  unbind_all
  trap - EXIT
  $sudo touch "$stamp"
}

make_root
if (($# == 0)); then
  echo "$root"
  exit 0
fi
bind_all
trap unbind_all EXIT
# USE_LIBUV=0: torch.distributed's gloo store in Debian's torch 2.6 is built without libuv.
$sudo chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 USE_LIBUV=0 STATEDICT_IN_TRIXIE=1 \
  CI="${CI:-}" BUILD_DIR="${BUILD_DIR:-build-trixie}" CCACHE_DIR=/root/.cache/ccache sh -c 'cd "$0" && exec "$@"' "$src" "$@"
