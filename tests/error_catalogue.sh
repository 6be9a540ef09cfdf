#!/usr/bin/env bash
# Every error id the library and the CLI can raise must be explained in the README's catalogue.
# Usage: error_catalogue.sh SOURCE_DIR
set -u
cd "$1"
ids=$(grep -rhoE '(Error|fail)\("[a-z_0-9]+\.[a-z_0-9]+"|error_id = "[a-z_.]+"|"load\.failed"' include tools |
      grep -oE '"[a-z_0-9]+\.[a-z_0-9]+"' | tr -d '"' | sort -u)
missing=0
count=0
for id in $ids; do
  count=$((count + 1))
  grep -q "\`$id\`" README.md || { echo "not in the README's error catalogue: $id"; missing=$((missing + 1)); }
done
echo "$((count - missing)) passed, $missing failed"
[ "$missing" = 0 ]
