#!/usr/bin/env bash
# statedict inspect/diff --trust-package on the package tests/python/aoti_finetune.py wrote.
# Usage: cli_test.sh STATEDICT_BINARY PACKAGE_DIR
set -u
bin=$1
dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

check() {  # check NAME EXPECTED_EXIT PATTERN -- command...
  local name=$1 want=$2 pattern=$3
  shift 4
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL $name: exit $got, expected $want"; sed 's/^/  | /' "$tmp/out" "$tmp/err" | head -8; failed=$((failed + 1)); return
  fi
  if [ -n "$pattern" ] && ! grep -qE -- "$pattern" "$tmp/out" "$tmp/err"; then
    echo "FAIL $name: output lacks /$pattern/"; sed 's/^/  | /' "$tmp/out" "$tmp/err" | head -8; failed=$((failed + 1)); return
  fi
  passed=$((passed + 1))
}
pkg=$dir/net.pt2
folded=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['folded'][0])" "$dir/expected.json")

check inspect 0 '^3 updatable constant\(s\)' -- "$bin" inspect --trust-package "$pkg"
check inspect-row 0 '^fc\.weight +float32 +\[16, 8\]$' -- "$bin" inspect --trust-package "$pkg"
check inspect-models 0 'AOTInductor package, opened with LibTorch.s loader \(models: model' -- "$bin" inspect --trust-package "$pkg"
# --json: the constants PyTorch's loader lists (expected.json), with sha256 under --hash.
"$bin" inspect --trust-package --json --hash "$pkg" >"$tmp/inspect.json" 2>"$tmp/err"
if /usr/bin/python3 - "$tmp/inspect.json" "$dir/expected.json" <<'PY'
import json, sys
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
listed = [{k: c[k] for k in ("key", "dtype", "shape")} for c in got["constants"]]
assert listed == want["constants"], (listed, want["constants"])
assert got["format"] == "aoti_package" and got["models"] == ["model"], got
assert all(len(c["sha256"]) == 64 for c in got["constants"]), got
PY
then passed=$((passed + 1)); else echo "FAIL inspect-json"; failed=$((failed + 1)); fi

check diff-ok 0 '^Would load 3 of 3 tensors into AOTInductor package' -- \
  "$bin" diff --trust-package "$pkg" "$dir/finetuned_constants_dp.pt" --strip-prefix module.
check diff-suggests 1 'strip-prefix module\.' -- "$bin" diff --trust-package "$pkg" "$dir/finetuned_constants_dp.pt"
check diff-folded 1 "the AOTInductor package cannot take \"module\\.$folded\"" -- \
  "$bin" diff --trust-package "$pkg" "$dir/finetuned_dp.pt" --strip-prefix module.
check diff-folded-lenient 0 "warning: the AOTInductor package cannot take" -- \
  "$bin" diff --trust-package "$pkg" "$dir/finetuned_dp.pt" --strip-prefix module. --lenient
check diff-shape 1 'size mismatch for fc\.weight' -- "$bin" diff --trust-package "$pkg" "$dir/wrong_shape_dp.pt" --strip-prefix module.
check diff-json 1 '"unexpected": \[' -- "$bin" diff --trust-package --json "$pkg" "$dir/finetuned_dp.pt" --strip-prefix module.

check not-a-package 2 'not an AOTInductor package.*\[statedict\.aoti\.package\]' -- "$bin" inspect --trust-package "$dir/finetuned_dp.pt"
check no-such-model 2 'model other: the package has no such model \(it holds: model\)' -- \
  "$bin" inspect --trust-package --model other "$pkg"
# Without the flag the loader is never used (it would run the package's code): whatever the file
# readers make of the .pt2, nothing says it was opened with the loader, and an error points to the flag.
"$bin" inspect "$pkg" >"$tmp/out" 2>"$tmp/err"
rc=$?
if grep -q "LibTorch's loader" "$tmp/out"; then
  echo "FAIL plain-inspect: used the loader without --trust-package"; failed=$((failed + 1))
elif [ "$rc" != 0 ] && ! grep -q -- '--trust-package opens it' "$tmp/err"; then
  echo "FAIL plain-inspect: exit $rc without the --trust-package note"; sed 's/^/  | /' "$tmp/err" | head -5; failed=$((failed + 1))
else
  passed=$((passed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
