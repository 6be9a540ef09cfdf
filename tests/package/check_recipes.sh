#!/usr/bin/env bash
# What can be checked of the vcpkg port and the Conan recipe without vcpkg or Conan: the manifests
# parse and are in vcpkg's canonical form (tests/package/vcpkg_format.py, the rules of `vcpkg
# format-manifest`), the versions agree with include/statedict/version.hpp, the port's and the
# recipe's homepage with CMakeLists.txt's HOMEPAGE_URL, the port's SHA512 is that of the release
# archive scripts/release_archive.sh makes of the commit it names, and recipe_checks.py's checks (the
# port's platforms, features and build type; the Conan recipe run with stand-ins for Conan).
# Usage: check_recipes.sh SOURCE_DIR
set -u
cd "$1"
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
version=$(sed -nE 's/#define STATEDICT_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)/\2/p' include/statedict/version.hpp | paste -sd.)
manifests=(ports/statedict/vcpkg.json ports/example-app/vcpkg.json ports/example-app/vcpkg-configuration.json ports/system/*/vcpkg.json)
for j in "${manifests[@]}"; do
  cmake -DFILE="$j" -P tests/package/json_valid.cmake && ok || bad "$j is not valid JSON"
done
grep -q "\"version-semver\": \"$version\"" ports/statedict/vcpkg.json && ok || bad "vcpkg.json version is not $version"
grep -q '"libtorch"' ports/statedict/vcpkg.json && grep -q '"nlohmann-json"' ports/statedict/vcpkg.json && ok || bad "vcpkg.json dependencies"
grep -q 'vcpkg_cmake_config_fixup(CONFIG_PATH share/statedict/cmake)' ports/statedict/portfile.cmake && ok || bad "portfile config path"
py=$(command -v /usr/bin/python3 || command -v python3)
if [ -n "$py" ]; then
  "$py" tests/package/vcpkg_format.py "${manifests[@]}" && ok || bad "vcpkg manifests not in canonical form (fix: python3 tests/package/vcpkg_format.py --write FILE)"
  for f in conan/conanfile.py conan/test_package/conanfile.py; do
    "$py" -c "import ast,sys; ast.parse(open(sys.argv[1]).read())" "$f" && ok || bad "$f does not parse"
  done
  "$py" tests/package/recipe_checks.py "$version" && ok || bad "recipe_checks.py (above)"
fi

# The release archive: the portfile's SHA512 is what scripts/release_archive.sh gives for the commit
# the portfile names (where this checkout has that commit: a shallow clone may not).
line=$(grep -E '^set\(STATEDICT_RELEASE_SHA512 ' ports/statedict/portfile.cmake)
sha=$(sed -nE 's/^set\(STATEDICT_RELEASE_SHA512 ([0-9a-f]{128})\).*/\1/p' <<<"$line")
ref=$(sed -nE 's/.*# scripts\/release_archive.sh ([0-9a-f]{40})$/\1/p' <<<"$line")
if [ -z "$sha" ] || [ -z "$ref" ]; then
  bad "portfile: no 'set(STATEDICT_RELEASE_SHA512 <sha512>)  # scripts/release_archive.sh <commit>' line"
elif ! git cat-file -e "$ref^{commit}" 2>/dev/null; then
  echo "note: commit $ref (the release archive's) is not in this checkout; its SHA512 is not checked"
else
  out=$(mktemp -d)
  got=$(bash scripts/release_archive.sh "$ref" "$out" | sed -n 's/^SHA512 //p')
  again=$(bash scripts/release_archive.sh "$ref" "$out" | sed -n 's/^SHA512 //p')
  [ "$got" = "$again" ] && ok || bad "release_archive.sh gives different archives for one commit ($got, $again)"
  [ "$got" = "$sha" ] && ok || bad "portfile's SHA512 is not that of the release archive of $ref ($got)"
  tar -tzf "$out"/statedict-*.tar.gz | grep -qx "statedict-[0-9.]*/include/statedict/statedict.hpp" && ok ||
    bad "the release archive has no statedict-<version>/include/statedict/statedict.hpp"
  rm -rf "$out"
fi

# What `conan create` leaves beside the recipe is ignored by git.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  for f in conan/test_package/CMakeUserPresets.json conan/test_package/build/x conan/CMakeUserPresets.json conan/build/x; do
    git check-ignore -q --no-index "$f" && ok || bad "$f is not ignored by .gitignore"
  done
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
