#!/usr/bin/env bash
# vcpkg, for real, with its binary cache on, on a copy of this checkout (WORK_DIR/src):
#  1. ports/example-app (statedict with its "tools" feature, local-source mode), a header-only
#     consumer built with vcpkg's toolchain file, and the installed CLI;
#  2. statedict[compiled]: a consumer of statedict::compiled, whose entry points nm must find in the
#     library (tests/package/entry_points.sh);
#  3. a header edited in the checkout reaches the next install (a new package ABI, built anew, not
#     restored from the cache), and an install without a change is restored from the cache (the
#     same ABI, nothing built);
#  4. the release mode: the archive scripts/release_archive.sh makes of the commit named in the
#     portfile, put where vcpkg keeps downloads, is checked against the portfile's SHA512 and built.
# vcpkg cannot build LibTorch here, so libtorch, nlohmann-json, zstd and cli11 are overlay stand-ins
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
case "$(uname -m)" in aarch64) arch=arm64 ;; *) arch=x64 ;; esac
triplet=$arch-linux-release

# The copy (what git tracks), which step 3 edits; the checkout itself is never written to.
README_INSTALL_COPY_ONLY=1 bash "$src/tests/package/readme_install.sh" "$src" "$work" /dev/null >/dev/null
copy=$work/src
# A release triplet that builds statedict from STATEDICT_SOURCE with the checkout in the ABI.
mkdir -p "$work/triplets"
cat >"$work/triplets/$triplet.cmake" <<TRIPLET
set(VCPKG_TARGET_ARCHITECTURE $arch)
set(VCPKG_CRT_LINKAGE dynamic)
set(VCPKG_LIBRARY_LINKAGE static)
set(VCPKG_CMAKE_SYSTEM_NAME Linux)
set(VCPKG_BUILD_TYPE release)
include("$copy/ports/statedict-local-source.cmake")
TRIPLET

# vcpkg fixes the rpath of installed binaries with patchelf, which it would otherwise download.
command -v patchelf >/dev/null || bash "$src/scripts/deps.sh" patchelf
# No downloads: system cmake/ninja/git/patchelf; the binary cache in WORK_DIR, read and written.
export VCPKG_ROOT="$root" VCPKG_FORCE_SYSTEM_BINARIES=1 VCPKG_DISABLE_METRICS=1
export VCPKG_BINARY_SOURCES="clear;files,$work/binary-cache,readwrite"
export XDG_CACHE_HOME="$work/cache"  # vcpkg's own cache (a device id) too
export STATEDICT_SOURCE="$copy"   # ports/statedict builds the copy instead of a release archive
"$vcpkg" version | sed -n 1p      # sed reads it all: head would end vcpkg with SIGPIPE under pipefail
mkdir -p "$work/binary-cache"

# vinstall NAME MANIFEST_DIR: vcpkg install of that manifest into WORK_DIR/NAME; the log in NAME.log.
vinstall() {
  local name=$1 manifest=$2
  "$vcpkg" install --x-manifest-root="$manifest" --x-install-root="$work/$name" \
    --x-buildtrees-root="$work/buildtrees" --x-packages-root="$work/packages" --downloads-root="$work/downloads" \
    --overlay-ports="$copy/ports/statedict" --overlay-ports="$src/ports/system" --overlay-triplets="$work/triplets" \
    --triplet="$triplet" --host-triplet="$triplet" >"$work/$name.log" 2>&1 || { tail -40 "$work/$name.log" >&2; return 1; }
  local how
  how=$(grep -Eo "^Building statedict[^ ]*" "$work/$name.log" | head -n 1 || true)
  echo "== vcpkg install $name: ${how:-statedict restored from the binary cache}, package ABI $(abi "$name")"
}
# abi NAME: the package ABI vcpkg computed for statedict in NAME.log (what the binary cache is keyed by).
abi() { sed -nE '/^statedict(\[[^]]*\])?:[^ ]* package ABI: /{s/.* ([0-9a-f]+)$/\1/p;q}' "$work/$1.log"; }
# manifest NAME FEATURES_JSON: a user's manifest depending on statedict with those features.
manifest() {
  mkdir -p "$work/$1-app"
  printf '{\n  "name": "%s-app",\n  "version-string": "0.0.0",\n  "dependencies": [\n    {\n      "name": "statedict",\n      "features": %s\n    }\n  ]\n}\n' \
    "$1" "$2" >"$work/$1-app/vcpkg.json"
  echo "$work/$1-app"
}
# consumer NAME INSTALLED [CMAKE_ARGS...]: tests/package/consumer built with vcpkg's toolchain file.
consumer() {
  local name=$1 installed=$2
  shift 2
  cmake -S "$src/tests/package/consumer" -B "$work/$name" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$root/scripts/buildsystems/vcpkg.cmake" \
    -DVCPKG_INSTALLED_DIR="$installed" -DVCPKG_TARGET_TRIPLET="$triplet" -DVCPKG_MANIFEST_MODE=OFF "$@" >/dev/null
  cmake --build "$work/$name" >/dev/null
  "$work/$name/consumer" "$ckpt"
}

# 1. The example app: header-only with the CLI.
vinstall example "$copy/ports/example-app"
grep -q "statedict\[.*tools.*\]:$triplet" "$work/example.log"
installed="$work/example/$triplet"
for f in include/statedict/statedict.hpp include/statedict/src.hpp share/statedict/statedictConfig.cmake share/statedict/copyright \
  share/statedict/usage; do
  [ -f "$installed/$f" ] || { echo "missing from the vcpkg install: $f" >&2; exit 1; }
done
[ ! -e "$installed/lib/libstatedict.a" ] || { echo "the header-only install holds libstatedict.a" >&2; exit 1; }
"$installed/tools/statedict/statedict" --version
consumer consumer-header-only "$work/example"

# 2. statedict::compiled.
vinstall compiled "$(manifest compiled '["compiled"]')"
lib="$work/compiled/$triplet/lib/libstatedict.a"
[ -f "$lib" ] || { echo "statedict[compiled] installed no lib/libstatedict.a" >&2; exit 1; }
consumer consumer-compiled "$work/compiled" -DCONSUMER_MODE=compiled | tee "$work/consumer-compiled.out"
grep -q "^statedict::compiled$" "$work/consumer-compiled.out"
bash "$src/tests/package/entry_points.sh" "$lib" "$work/consumer-compiled/CMakeFiles/consumer.dir/main.cpp.o"

# 3. The binary cache follows the checkout: header-only statedict, installed, edited, installed twice.
headers=$(manifest headers '[]')
vinstall headers-1 "$headers"
marker="// edited by tests/package/vcpkg_install.sh $$"
echo "$marker" >>"$copy/include/statedict/version.hpp"
vinstall headers-2 "$headers"
grep -q "Building statedict" "$work/headers-2.log" || { echo "the edited checkout was not built anew" >&2; exit 1; }
grep -qF "$marker" "$work/headers-2/$triplet/include/statedict/version.hpp" ||
  { echo "the edit did not reach the installed header (a stale package)" >&2; exit 1; }
vinstall headers-3 "$headers"
if grep -q "Building statedict" "$work/headers-3.log"; then
  echo "statedict was built again without a change: the binary cache is not used" >&2
  exit 1
fi
grep -Eq "^Restored [1-9][0-9]* package" "$work/headers-3.log" || { echo "nothing was restored from the binary cache" >&2; exit 1; }
[ -n "$(abi headers-1)" ] && [ "$(abi headers-1)" != "$(abi headers-2)" ] ||
  { echo "the edit did not change statedict's package ABI ($(abi headers-1))" >&2; exit 1; }
[ "$(abi headers-2)" = "$(abi headers-3)" ] ||
  { echo "statedict's package ABI changed without an edit ($(abi headers-2), $(abi headers-3))" >&2; exit 1; }
grep -qF "$marker" "$work/headers-3/$triplet/include/statedict/version.hpp"
echo "binary cache: the edit was built, the unchanged checkout restored"

# 4. The release mode: the archive of the commit the portfile names, under the name the portfile
# downloads, with the SHA512 it holds.
ref=$(sed -nE 's/^set\(STATEDICT_RELEASE_SHA512 [0-9a-f]+\) *# scripts\/release_archive.sh ([0-9a-f]+)$/\1/p' "$src/ports/statedict/portfile.cmake")
if [ -z "$ref" ] || ! git -C "$src" cat-file -e "$ref^{commit}" 2>/dev/null; then
  echo "release mode not checked: the commit the portfile names (${ref:-none}) is not in this checkout"
else
  bash "$src/scripts/release_archive.sh" "$ref" "$work/downloads" | tail -n 1
  unset STATEDICT_SOURCE
  vinstall release "$headers"
  grep -q "Building statedict" "$work/release.log"
  [ -f "$work/release/$triplet/include/statedict/statedict.hpp" ]
  echo "release mode: the archive of $ref matched the portfile's SHA512 and installed"
fi
