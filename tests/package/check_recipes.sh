#!/usr/bin/env bash
# What can be checked of the vcpkg port and the Conan recipe without vcpkg or Conan: the port's JSON
# parses and names its dependencies, the recipe parses as Python and declares a header library, and the
# versions agree with include/statedict/version.hpp.
# Usage: check_recipes.sh SOURCE_DIR
set -u
cd "$1"
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
version=$(sed -nE 's/#define STATEDICT_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)/\2/p' include/statedict/version.hpp | paste -sd.)
for j in ports/statedict/vcpkg.json ports/example-app/vcpkg.json ports/example-app/vcpkg-configuration.json; do
  cmake -DFILE="$j" -P tests/package/json_valid.cmake && ok || bad "$j is not valid JSON"
done
grep -q "\"version-semver\": \"$version\"" ports/statedict/vcpkg.json && ok || bad "vcpkg.json version is not $version"
grep -q '"libtorch"' ports/statedict/vcpkg.json && grep -q '"nlohmann-json"' ports/statedict/vcpkg.json && ok || bad "vcpkg.json dependencies"
grep -q 'vcpkg_cmake_config_fixup(CONFIG_PATH share/statedict/cmake)' ports/statedict/portfile.cmake && ok || bad "portfile config path"
py=$(command -v /usr/bin/python3 || command -v python3)
if [ -n "$py" ]; then
  for f in conan/conanfile.py conan/test_package/conanfile.py; do
    "$py" -c "import ast,sys; ast.parse(open(sys.argv[1]).read())" "$f" && ok || bad "$f does not parse"
  done
  "$py" - "$version" <<'PY' && ok || bad "conanfile.py fields"
import ast, sys
tree = ast.parse(open("conan/conanfile.py").read())
fields = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets
          if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
assert fields["package_type"] == "header-library", fields
assert fields["version"] == sys.argv[1], fields
src = open("conan/conanfile.py").read()
assert "self.info.clear()" in src and "libtorch/" in src and "nlohmann_json/" in src
PY
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
