#!/usr/bin/env bash
# `conan create` of conan/conanfile.py and its test_package, for real, with LibTorch, nlohmann_json and zstd
# taken from the system through Conan 2's [platform_requires] (their versions read from dpkg).
# The Conan command is $STATEDICT_CONAN (e.g. "python3 -m conans.conan"), else `conan` on PATH;
# without one it says so and exits 77 (ctest: skipped). Conan's home is WORK_DIR: nothing global changes.
# Usage: conan_create.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$1 work=$2
read -r -a conan <<<"${STATEDICT_CONAN:-$(command -v conan || true)}"
if [ "${#conan[@]}" = 0 ]; then
  echo "SKIPPED: no Conan here (install Conan 2, or set STATEDICT_CONAN to a command that runs it)"
  exit 77
fi
version() { dpkg-query -W -f '${Version}' "$1" | sed -E 's/^[0-9]+://; s/[-+~].*//'; }
rm -rf "$work"
export CONAN_HOME="$work/home"
mkdir -p "$CONAN_HOME/profiles"
case "$(uname -m)" in aarch64) arch=armv8 ;; *) arch=$(uname -m) ;; esac
cat >"$CONAN_HOME/profiles/default" <<PROFILE
[settings]
os=Linux
arch=$arch
build_type=Release
compiler=gcc
compiler.version=$(gcc -dumpversion | cut -d. -f1)
compiler.libcxx=libstdc++11
compiler.cppstd=17
[platform_requires]
libtorch/$(version libtorch-dev)
nlohmann_json/$(version nlohmann-json3-dev)
zstd/$(version libzstd-dev)
[conf]
tools.cmake.cmaketoolchain:generator=Ninja
PROFILE
# A copy of what the recipe exports: conan writes its test_package build folder next to the recipe.
mkdir -p "$work/src"
cp -r "$src/conan" "$src/include" "$src/cmake" "$src/CMakeLists.txt" "$src/LICENSE" "$work/src/"
rm -rf "$work/src/conan/test_package/build" "$work/src/conan/test_package/CMakeUserPresets.json"
"${conan[@]}" --version
"${conan[@]}" create "$work/src/conan" --build=missing --no-remote 2>&1 | tee "$work/create.log" | tail -25
grep -q "statedict/.*: Created package" "$work/create.log"
grep -Eq "^statedict [0-9]+\.[0-9]+\.[0-9]+" "$work/create.log"  # the test_package program ran
