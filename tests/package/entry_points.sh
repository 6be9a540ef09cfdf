#!/usr/bin/env bash
# statedict::compiled, seen with nm: the library defines statedict's entry points, and a consumer's
# unit that calls them (load reaches detail::run) only refers to them (undefined there, compiled nowhere but the
# library). A header-only consumer would define them itself (weak symbols) and fail this check.
# Usage: entry_points.sh LIBRARY CONSUMER_OBJECT
set -euo pipefail
lib=$1 obj=$2
entry='statedict::(read|save|diff|detail::run)\('
# (nm's output in variables: grep -q ending a pipe early would kill nm with SIGPIPE under pipefail.)
lib_syms=$(nm -C --defined-only "$lib")
obj_syms=$(nm -C "$obj")
obj_defined=$(nm -C --defined-only "$obj")
defined=$(grep -Ec " T $entry" <<<"$lib_syms" || true)
[ "$defined" -ge 4 ] || { echo "$lib defines $defined of statedict's entry points read, save, diff, detail::run" >&2; exit 1; }
grep -Eq " U $entry" <<<"$obj_syms" || { echo "$obj refers to none of statedict's entry points" >&2; exit 1; }
if grep -Eq " [TtWw] $entry" <<<"$obj_defined"; then
  echo "$obj compiles statedict's entry points itself:" >&2
  grep -E " [TtWw] $entry" <<<"$obj_defined" >&2
  exit 1
fi
echo "entry points: defined in $(basename "$lib"), undefined in the consumer's unit"
