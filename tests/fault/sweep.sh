#!/usr/bin/env bash
# The fault sweep of issue #15: every open/pread/mmap of a load, and every write/fsync/rename of a
# save and a convert, made to fail in turn (EIO, ENOSPC, EINTR or a short count) by fault_shim.
# Each run must end in success or a clean error: no crash, the module unchanged or its written keys
# reported, the old output file whole and no temporary file left.
# Usage: sweep.sh SHIM DRIVER CLI FIXTURES WORKDIR   (STATEDICT_FAULT_SWEEP=quick: at most 4 N a call)
set -uo pipefail
shim=$1 driver=$2 cli=$3 fx=$4 work=$5
rm -rf "$work" && mkdir -p "$work"
# An ASan build checks that its runtime is the first library; the shim comes before it on purpose.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
runs=0 failed=0 clean_errors=0

# count FILTER command...: how many matching calls of each kind the command makes without faults.
count() {
  local filter=$1; shift
  rm -f "$work/counts"
  STATEDICT_FAULT_PATH=$filter STATEDICT_FAULT_COUNT=$work/counts LD_PRELOAD=$shim "$@" >/dev/null 2>&1
  awk '{ c[$1] += $2 } END { for (k in c) print k, c[k] }' "$work/counts"
}
calls_of() { awk -v k="$1" '$1 == k { print $2 }' "$work/counts.sum"; }

# inject NAME FILTER SPEC OK_EXITS command...: runs once with the fault; returns its exit status.
inject() {
  local name=$1 filter=$2 spec=$3; shift 3
  STATEDICT_FAULT=$spec STATEDICT_FAULT_PATH=$filter LD_PRELOAD=$shim "$@" >"$work/out" 2>&1
  local got=$?
  echo "$got"
}

fail() { echo "FAIL $1"; sed 's/^/  | /' "$work/out" | head -8; failed=$((failed + 1)); }

# Which N to try for a call made `total` times: all of them when at most `max`, else a spread that
# keeps the first and the last (each run starts a process that loads LibTorch: about 0.8 s).
points() {
  local total=$1 max=$2 step=1
  [ "${STATEDICT_FAULT_SWEEP:-}" = quick ] && max=4  # the sanitizer run: every call kind, fewer N
  [ "$total" -gt "$max" ] && step=$(( (total + max - 1) / max ))
  seq 1 "$step" "$total"; [ $(( (total - 1) % step )) -ne 0 ] && echo "$total"
}

# 1. Loads: a torch zip, a cast (fp16 into fp32: through the pread buffer) and safetensors, on 1
#    thread and on 2.
for src in resnet_plain.pt resnet_fp16.pt resnet.safetensors; do
  ck="$work/ck_$src"
  cp "$fx/$src" "$ck"
  "$driver" dump "$ck" >"$work/expected_$src" || { echo "FAIL dump $src"; failed=$((failed + 1)); continue; }
  count "ck_$src" "$driver" load "$ck" "$work/expected_$src" >"$work/counts.sum"
  for call in open pread mmap; do
    total=$(calls_of "$call"); total=${total:-0}
    for kind in EIO short EINTR; do
      [ "$call" != pread ] && [ "$kind" != EIO ] && continue
      max=8; [ "$kind" = EIO ] && max=16; [ "$kind$src" = EIOresnet_plain.pt ] && max=40
      for n in $(points "$total" "$max"); do
        runs=$((runs + 1))
        got=$(inject "load-$src" "ck_$src" "$call:$n:$kind" "$driver" load "$ck" "$work/expected_$src")
        case $got in
          0) ;;
          1) clean_errors=$((clean_errors + 1)) ;;
          *) fail "load $src with $call:$n:$kind: exit $got" ;;
        esac
      done
    done
  done
  # The same load on 2 threads (LoadOptions::threads): a read that fails on one thread stops the
  # other; which tensors were written is reported whichever thread was where.
  total=$(calls_of pread); total=${total:-0}
  for n in $(points "$total" 12); do
    runs=$((runs + 1))
    got=$(inject "load-$src" "ck_$src" "pread:$n:EIO" "$driver" load "$ck" "$work/expected_$src" 2)
    case $got in
      0) ;;
      1) clean_errors=$((clean_errors + 1)) ;;
      *) fail "load $src on 2 threads with pread:$n:EIO: exit $got" ;;
    esac
  done
done

# 2. Saves over an existing file: the old file stays whole unless the new one is complete.
out="$work/saved_model.pt"
"$driver" save "$out" && cp "$out" "$work/clean_save.pt"
echo "old bytes" >"$work/old_save"
count "saved_model" "$driver" save "$out" >"$work/counts.sum"
for call in write fsync rename; do
  total=$(calls_of "$call"); total=${total:-0}
  kinds="EIO"; [ "$call" = write ] && kinds="EIO ENOSPC short EINTR"
  for n in $(points "$total" 12); do
    for kind in $kinds; do
      runs=$((runs + 1))
      cp "$work/old_save" "$out"
      got=$(inject "save" "saved_model" "$call:$n:$kind" "$driver" save "$out")
      if ls -a "$work" | grep -q '^\.saved_model\.pt\.tmp-'; then fail "save with $call:$n:$kind left a temporary file"; rm -f "$work"/.saved_model.pt.tmp-*; fi
      case $got in
        0) cmp -s "$out" "$work/clean_save.pt" || fail "save with $call:$n:$kind: exit 0 but the file differs" ;;
        1) clean_errors=$((clean_errors + 1))
           cmp -s "$out" "$work/old_save" || fail "save with $call:$n:$kind: failed and the old file is gone"
           grep -q "saved_model.pt" "$work/out" || fail "save with $call:$n:$kind: the error does not name the file" ;;
        *) fail "save with $call:$n:$kind: exit $got" ;;
      esac
    done
  done
done

# 3. convert: faults on the input's reads, then on the output's writes.
in="$work/convert_in.pt"
cp "$fx/resnet_plain.pt" "$in"
"$cli" convert "$in" "$work/clean_convert.safetensors" >/dev/null
for side in convert_in convert_out; do
  count "$side" "$cli" convert "$in" "$work/convert_out.safetensors" >"$work/counts.sum"
  for call in open pread mmap write fsync rename; do
    total=$(calls_of "$call"); total=${total:-0}
    for n in $(points "$total" 12); do
      runs=$((runs + 1))
      echo "old bytes" >"$work/convert_out.safetensors"
      got=$(inject "convert" "$side" "$call:$n:EIO" "$cli" convert "$in" "$work/convert_out.safetensors")
      if ls -a "$work" | grep -q '^\.convert_out\.safetensors\.tmp-'; then fail "convert with $side $call:$n left a temporary file"; rm -f "$work"/.convert_out.safetensors.tmp-*; fi
      case $got in
        0) cmp -s "$work/convert_out.safetensors" "$work/clean_convert.safetensors" || fail "convert with $side $call:$n: exit 0 but the output differs" ;;
        2) clean_errors=$((clean_errors + 1))
           grep -q '^statedict: error: .*convert_' "$work/out" || fail "convert with $side $call:$n: no one-line error naming the file"
           grep -qx "old bytes" "$work/convert_out.safetensors" || fail "convert with $side $call:$n: failed and the old output is gone" ;;
        *) fail "convert with $side $call:$n: exit $got" ;;
      esac
    done
  done
done

echo "$runs runs with a fault: $clean_errors clean errors, $((runs - clean_errors - failed)) successes, $failed broken"
[ "$runs" -gt 40 ] || { echo "FAIL: too few runs ($runs); did the shim load?"; exit 1; }
[ "$failed" = 0 ]
