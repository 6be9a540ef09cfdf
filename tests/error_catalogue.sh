#!/usr/bin/env bash
# Every error id the library and the CLI can raise must be explained in the error catalogue
# (docs/errors.md, a row per id or group of ids) and named in include/statedict/error_ids.hpp, which
# names no other.
# Usage: error_catalogue.sh SOURCE_DIR
set -u
cd "$1"
ids=$(grep -rhoE --exclude=error_ids.hpp '(Error|fail)\("[a-z_0-9]+\.[a-z_0-9]+"|error_id = "[a-z_.]+"|record\(r_?, "[a-z_.]+"|"load\.failed"' include tools |
      grep -oE '"[a-z_0-9]+\.[a-z_0-9]+"' | tr -d '"' | sort -u)
missing=0
count=0
for id in $ids; do
  count=$((count + 1))
  grep -q "\`$id\`" docs/errors.md || { echo "not in the error catalogue (docs/errors.md): $id"; missing=$((missing + 1)); }
  grep -q "^inline constexpr std::string_view ${id/./_} = \"$id\";$" include/statedict/error_ids.hpp ||
    { echo "not a constant in include/statedict/error_ids.hpp: $id"; missing=$((missing + 1)); }
done
for id in $(grep -oE '= "[a-z_0-9]+\.[a-z_0-9]+";' include/statedict/error_ids.hpp | grep -oE '[a-z_0-9]+\.[a-z_0-9]+'); do
  count=$((count + 1))
  grep -qx "$id" <<<"$ids" || { echo "a constant in error_ids.hpp that nothing raises: $id"; missing=$((missing + 1)); }
done
echo "$((count - missing)) passed, $missing failed"
[ "$missing" = 0 ]
