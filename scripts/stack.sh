#!/usr/bin/env bash
# The other test stacks: a Debian root made with debootstrap from the same Debian archive the host's
# apt uses, reused once made.
#   trixie: LibTorch and PyTorch 2.6, numpy 2, g++ 14, Catch2 v3
#   sid:    LibTorch and PyTorch 2.14, g++ 16 (C++20 by default), Catch2 v3, safetensors 0.8, zstandard
#
#   scripts/stack.sh NAME                  make the root (if needed) and print its path
#   scripts/stack.sh NAME CMD [ARG ...]    run CMD inside it, in this checkout (bound at /srv/checkout-N)
#
# STATEDICT_<NAME>_ROOT (STATEDICT_TRIXIE_ROOT, STATEDICT_SID_ROOT) chooses where a root lives
# (default /var/lib/statedict/NAME). Needs root.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
name="${1:?usage: scripts/stack.sh trixie|sid [CMD ARG...]}"
shift
common=(python3-torch python3-numpy libtorch-dev g++ cmake ninja-build ccache nlohmann-json3-dev libcli11-dev catch2 libzstd-dev)
apt_opts=()
case "$name" in
  trixie) packages=("${common[@]}" python3-torchvision) ;;
  # sid's Release file can be past its Valid-Until date (the archive is a dated snapshot).
  sid) packages=("${common[@]}" python3-safetensors python3-zstandard git)
       apt_opts=(-o Acquire::Check-Valid-Until=false) ;;
  *) echo "stack.sh: unknown stack '$name' (trixie or sid)" >&2; exit 2 ;;
esac
var="STATEDICT_${name^^}_ROOT"
root="${!var:-/var/lib/statedict/$name}"
stamp="$root/.statedict-ready"
# What the root was made with: a changed package list installs the difference on the next use.
want="${packages[*]}"

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
  [ -n "$uri" ] || { echo "stack.sh: no Debian archive found in the host's apt sources" >&2; exit 2; }
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
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  command -v debootstrap >/dev/null || bash "$here/scripts/deps.sh" debootstrap
  local uri
  uri=$(mirror)
  if [ ! -x "$root/usr/bin/apt-get" ]; then
    echo "statedict: debootstrap $name into $root" >&2
    $sudo mkdir -p "$root"
    $sudo debootstrap --variant=minbase "$name" "$root" "$uri" >"$root.debootstrap.log" 2>&1 ||
      { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  fi
  $sudo cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  echo "deb $uri $name main" | $sudo tee "$root/etc/apt/sources.list" >/dev/null
  bind_all
  trap unbind_all EXIT
  echo "statedict: installing ${packages[*]} in the $name root" >&2
  $sudo chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get ${apt_opts[*]} update -qq && apt-get ${apt_opts[*]} install -y -qq --no-install-recommends ${packages[*]} >/dev/null"
  unbind_all
  trap - EXIT
  echo "$want" | $sudo tee "$stamp" >/dev/null
}

make_root
if (($# == 0)); then
  echo "$root"
  exit 0
fi
bind_all
trap unbind_all EXIT
# What passes into the root: the build's settings, nothing else of the host's environment.
pass=()
for v in CCACHE_DISABLE BUILD_TARGETS BUILD_TYPE STATEDICT_FAULT_SWEEP; do
  [ -z "${!v:-}" ] || pass+=("$v=${!v}")
done
# USE_LIBUV=0: torch.distributed's gloo store in Debian's torch is built without libuv.
$sudo chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 USE_LIBUV=0 \
  STATEDICT_IN_ROOT="$name" CI="${CI:-}" BUILD_DIR="${BUILD_DIR:-build-$name}" CCACHE_DIR=/root/.cache/ccache \
  "${pass[@]}" sh -c 'cd "$0" && exec "$@"' "$src" "$@"
