#!/usr/bin/env bash
# `conan create` of conan/conanfile.py and its test_package, for real, twice: header-only (the
# default options) and with -o statedict/*:compiled=True -o statedict/*:tools=True (the test package
# then links statedict::compiled, nm finds statedict's entry points in libstatedict.a and not in the
# test package's unit, and the statedict tool runs). LibTorch, zstd and CLI11 come from the system
# through Conan 2's [platform_requires] (their versions read from dpkg); nlohmann_json comes from a
# Conan package (a small recipe made here that packages the system's headers) with the system's CMake
# package hidden (CMAKE_IGNORE_PATH), so only CMakeDeps can provide it.
# The Conan command is $STATEDICT_CONAN (e.g. "env PYTHONPATH=/path/to/conan python3 -m conans.conan"),
# else `conan` on PATH; without one it says so and exits 77 (ctest: skipped). Conan's home is
# WORK_DIR: nothing global changes. Conan builds with CMAKE_BUILD_PARALLEL_LEVEL jobs where that is
# set (else one a core).
# Usage: conan_create.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$(cd "$1" && pwd) work=$2
read -r -a conan <<<"${STATEDICT_CONAN:-$(command -v conan || true)}"
if [ "${#conan[@]}" = 0 ]; then
  echo "SKIPPED: no Conan here (install Conan 2, or set STATEDICT_CONAN to a command that runs it)"
  exit 77
fi
version() { dpkg-query -W -f '${Version}' "$1" | sed -E 's/^[0-9]+://; s/[-+~].*//'; }
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
export CONAN_HOME="$work/home"
mkdir -p "$CONAN_HOME/profiles"
case "$(uname -m)" in aarch64) arch=armv8 ;; *) arch=$(uname -m) ;; esac
json_version=$(version nlohmann-json3-dev)
nlohmann_config=$(dirname "$(dpkg -L nlohmann-json3-dev | grep -m1 'nlohmann_jsonConfig.cmake$')")
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
zstd/$(version libzstd-dev)
cli11/$(version libcli11-dev)
[conf]
tools.build:jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
tools.cmake.cmaketoolchain:generator=Ninja
tools.cmake.cmaketoolchain:extra_variables={"CMAKE_IGNORE_PATH": "$nlohmann_config"}
PROFILE
"${conan[@]}" --version

# nlohmann_json as a Conan package (what Conan Center's recipe provides: headers, CMake names).
mkdir -p "$work/nlohmann_json"
cat >"$work/nlohmann_json/conanfile.py" <<RECIPE
import os
from conan import ConanFile
from conan.tools.files import copy

class NlohmannJson(ConanFile):
    name = "nlohmann_json"
    version = "$json_version"
    package_type = "header-library"

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "*", src="/usr/include/nlohmann", dst=os.path.join(self.package_folder, "include", "nlohmann"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "nlohmann_json")
        self.cpp_info.set_property("cmake_target_name", "nlohmann_json::nlohmann_json")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
RECIPE
"${conan[@]}" create "$work/nlohmann_json" --no-remote >"$work/nlohmann_json.log" 2>&1 || { tail -30 "$work/nlohmann_json.log"; exit 1; }

# A copy of what the recipe exports: conan writes its test_package build folder next to the recipe.
mkdir -p "$work/src"
cp -r "$src/conan" "$src/include" "$src/src" "$src/tools" "$src/cmake" "$src/CMakeLists.txt" "$src/LICENSE" "$work/src/"
create() {  # create NAME [conan create options]
  local name=$1
  shift
  rm -rf "$work/src/conan/test_package/build" "$work/src/conan/test_package/CMakeUserPresets.json"
  echo "== conan create $*"
  "${conan[@]}" create "$work/src/conan" --build=missing --no-remote "$@" >"$work/$name.log" 2>&1 ||
    { tail -40 "$work/$name.log"; return 1; }
  grep -q "statedict/.*: Created package" "$work/$name.log"
  grep -Eq "^statedict [0-9]+\.[0-9]+\.[0-9]+" "$work/$name.log"  # the test_package program ran
  # nlohmann_json came from its Conan package, through the files CMakeDeps generated.
  grep -q "Conan: Target declared 'nlohmann_json::nlohmann_json'" "$work/$name.log" ||
    { echo "nlohmann_json was not found through CMakeDeps" >&2; return 1; }
}

create header-only
if grep -q "^statedict::compiled$" "$work/header-only.log"; then echo "the header-only package linked statedict::compiled" >&2; exit 1; fi
echo "header-only package: test_package built and ran"

create compiled -o 'statedict/*:compiled=True' -o 'statedict/*:tools=True'
grep -q "^statedict::compiled$" "$work/compiled.log" || { echo "test_package did not link statedict::compiled" >&2; exit 1; }
grep -Eq "^statedict [0-9]+\.[0-9]+\.[0-9]+$" <(grep -A1 "bin/statedict --version" "$work/compiled.log") ||
  { echo "the statedict tool of the package did not run" >&2; exit 1; }
lib=$(find "$CONAN_HOME/p" -path '*/p/lib/libstatedict.a' | head -n 1)
obj=$(find "$work/src/conan/test_package/build" -name 'test_package.cpp.o' | head -n 1)
bash "$src/tests/package/entry_points.sh" "$lib" "$obj"
echo "compiled package: test_package linked statedict::compiled; the tool ran"
