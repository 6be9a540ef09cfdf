#!/usr/bin/env bash
# vcpkg, for real: installs ports/example-app's manifest (statedict with its "tools" feature, from
# the overlay port ports/statedict on this checkout), then builds a consumer with vcpkg's toolchain
# file and runs it and the installed CLI.
# vcpkg cannot build LibTorch here, so libtorch, nlohmann-json and cli11 are overlay stand-ins
# (ports/system/) that install nothing: CMake finds the system's packages.
# The vcpkg command is $STATEDICT_VCPKG, else `vcpkg` on PATH; its registry checkout (scripts/,
# triplets/, ports/vcpkg-cmake*) is $VCPKG_ROOT, else the vcpkg executable's folder. Without them it
# says so and exits 77 (ctest: skipped). Everything vcpkg writes goes to WORK_DIR.
# Usage: vcpkg_install.sh SOURCE_DIR WORK_DIR CHECKPOINT
set -euo pipefail
src=$(cd "$1" && pwd) work=$2 ckpt=$3
vcpkg=${STATEDICT_VCPKG:-$(command -v vcpkg || true)}
if [ -z "$vcpkg" ]; then
  echo "SKIPPED: no vcpkg here (put vcpkg on PATH or set STATEDICT_VCPKG, with VCPKG_ROOT at its registry)"
  exit 77
fi
root=${VCPKG_ROOT:-$(dirname "$(readlink -f "$vcpkg")")}
if [ ! -f "$root/.vcpkg-root" ] || [ ! -f "$root/scripts/buildsystems/vcpkg.cmake" ]; then
  echo "SKIPPED: $root is not a vcpkg registry checkout (set VCPKG_ROOT)"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
triplet=x64-linux-release
[ "$(uname -m)" = aarch64 ] && triplet=arm64-linux-release

# vcpkg fixes the rpath of installed binaries with patchelf, which it would otherwise download.
command -v patchelf >/dev/null || bash "$src/scripts/deps.sh" patchelf
# No downloads: system cmake/ninja/git/patchelf, no binary cache, nothing written outside WORK_DIR.
export VCPKG_ROOT="$root" VCPKG_FORCE_SYSTEM_BINARIES=1 VCPKG_BINARY_SOURCES=clear VCPKG_DISABLE_METRICS=1
export STATEDICT_SOURCE="$src"   # ports/statedict builds this checkout instead of a release tarball
"$vcpkg" version | sed -n 1p   # sed reads it all: head would end vcpkg with SIGPIPE under pipefail
"$vcpkg" install --x-manifest-root="$src/ports/example-app" --x-install-root="$work/installed" \
  --x-buildtrees-root="$work/buildtrees" --x-packages-root="$work/packages" --downloads-root="$work/downloads" \
  --overlay-ports="$src/ports/system" --triplet="$triplet" --host-triplet="$triplet" \
  2>&1 | tee "$work/install.log" | tail -12
grep -q "statedict\[.*tools.*\]:$triplet" "$work/install.log" || grep -q "statedict:$triplet" "$work/install.log"
installed="$work/installed/$triplet"
for f in include/statedict/statedict.hpp share/statedict/statedictConfig.cmake share/statedict/copyright share/statedict/usage; do
  [ -f "$installed/$f" ] || { echo "missing from the vcpkg install: $f" >&2; exit 1; }
done
"$installed/tools/statedict/statedict" --version

# A user's project, configured with vcpkg's toolchain file against that install.
cmake -S "$src/tests/package/consumer" -B "$work/consumer" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE="$root/scripts/buildsystems/vcpkg.cmake" -DVCPKG_INSTALLED_DIR="$work/installed" \
  -DVCPKG_TARGET_TRIPLET="$triplet" -DVCPKG_MANIFEST_MODE=OFF >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer" "$ckpt"
