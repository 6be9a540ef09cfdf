#!/usr/bin/env bash
# The statedict CLI as a user meets it: exit codes, the first lines of output, error lines.
# Usage: cli_test.sh STATEDICT_BINARY FIXTURE_DIR [PART]
# PART 1 or 2 runs one half (ctest's cli and cli_more, which ctest -j runs side by side: each check
# starts a process that loads LibTorch); without it, both.
set -u
bin=$1
fx=$2
part=${3:-all}
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
    echo "FAIL $name: exit $got, expected $want"; sed 's/^/  | /' "$tmp/err" | head -5; failed=$((failed + 1)); return
  fi
  if [ -n "$pattern" ] && ! grep -qE -- "$pattern" "$tmp/out" "$tmp/err"; then
    echo "FAIL $name: output lacks /$pattern/"; head -5 "$tmp/out" "$tmp/err" | sed 's/^/  | /'; failed=$((failed + 1)); return
  fi
  passed=$((passed + 1))
}

if [ "$part" != 2 ]; then  # part 1: reading, listing, bad arguments, convert, suggestions followed
check version 0 '^statedict [0-9]+\.[0-9]+\.[0-9]+$' -- "$bin" --version
check help-inspect 0 'FILE' -- "$bin" inspect --help
check help-diff 0 'TARGET' -- "$bin" diff --help
check no-command 2 '' -- "$bin"
check inspect-top 0 'model +dict of 122: 122 tensors' -- "$bin" inspect "$fx/training.pt"
check inspect-table 0 '^model\.conv1\.weight +float32 +\[4, 3, 7, 7\]' -- "$bin" inspect "$fx/training.pt"
check inspect-select 0 '"key": "conv1.weight"' -- "$bin" inspect "$fx/training.pt" --select model --json
check inspect-hash 0 '"sha256": "[0-9a-f]{64}"' -- "$bin" inspect "$fx/resnet.safetensors" --json --hash
check inspect-values 0 '^  args +argparse\.Namespace: argparse\.Namespace\(' -- "$bin" inspect "$fx/training.pt"
check inspect-values-nested 0 '^  optimizer\.param_groups\.0\.lr +float: 0\.1$' -- "$bin" inspect "$fx/training.pt"
check inspect-values-json 0 '"key": "epoch",$' -- "$bin" inspect "$fx/training.pt" --json
"$bin" inspect "$fx/training.pt" --json | python3 -c '
import json, sys
v = {e["key"]: e for e in json.load(sys.stdin)["values"]}
assert v["epoch"] == {"key": "epoch", "type": "int", "value": 5}, v["epoch"]
assert v["optimizer.param_groups.0.lr"]["value"] == 0.1
assert v["args"]["type"] == "argparse.Namespace" and "tiny_resnet" in v["args"]["value"]
assert "model.conv1.weight" not in v
' && passed=$((passed + 1)) || { echo "FAIL inspect-values-json-fields"; failed=$((failed + 1)); }
# Shaped like public checkpoints (generate_public_shapes.py): an object of any class that holds
# tensors (OpenNMT-py 2017's onmt.Optim.Optim) is walked, never failing the listing; a dict keyed by
# classes (Lightning 1.2's callbacks) names each key by the class's qualified name.
check inspect-object-values 0 '^  optim\.optimizer\.param_groups\.0\.momentum +float: 0\.9$' -- "$bin" inspect "$fx/onmt_2017.pt"
check inspect-object-top 0 '^  optim +onmt\.Optim\.Optim: 24 tensors' -- "$bin" inspect "$fx/onmt_2017.pt"
check inspect-object-tensors 0 '^optim\.optimizer\.state\.<tensor#7>\.momentum_buffer +float32 +\[8\]' -- "$bin" inspect "$fx/onmt_2017.pt"
"$bin" inspect "$fx/onmt_2017.pt" --json | python3 -c '
import json, sys
got = json.load(sys.stdin)
v = {e["key"]: e for e in got["values"]}
assert v["optim.lr"] == {"key": "optim.lr", "type": "float", "value": 1.0}, v.get("optim.lr")
assert v["optim.method"]["value"] == "sgd" and v["epoch"]["value"] == 13
assert v["dicts.src"]["type"] == "onmt.Dict.Dict" and v["opt"]["type"] == "argparse.Namespace"
assert v["optim.optimizer.defaults.momentum"]["value"] == 0.9
assert len(got["tensors"]) == 32 and not any(k.startswith("model.") for k in v), sorted(v)
' && passed=$((passed + 1)) || { echo "FAIL inspect-object-values-json"; failed=$((failed + 1)); }
check inspect-class-keys 0 '^  callbacks\.pytorch_lightning\.callbacks\.early_stopping\.EarlyStopping\.patience +int: 3$' -- \
  "$bin" inspect "$fx/lightning_callbacks.pt"
check inspect-class-keys-tensor 0 '^callbacks\.pytorch_lightning\.callbacks\.model_checkpoint\.ModelCheckpoint\.best_model_score +float32 +\[\]' -- \
  "$bin" inspect "$fx/lightning_callbacks.pt"
check inspect-class-keys-unique 0 "^collision\.pytorch_lightning\.callbacks\.early_stopping\.EarlyStopping' +float32" -- \
  "$bin" inspect "$fx/lightning_callbacks.pt"
check inspect-class-keys-select 0 '"key": "wait_count",$' -- \
  "$bin" inspect "$fx/lightning_callbacks.pt" --select callbacks.pytorch_lightning.callbacks.early_stopping.EarlyStopping --json
check inspect-module 0 'whole pickled module __main__.TinyResNet' -- "$bin" inspect "$fx/resnet_module.pt"
check inspect-missing 2 '^statedict: error: .*nope\.pt: cannot open' -- "$bin" inspect "$fx/nope.pt"
check inspect-bad-select 2 "no key 'model_state_dict'.*'model'" -- "$bin" inspect "$fx/training.pt" --select model_state_dict
check inspect-evil 2 'statedict: error: .*evil_os_system\.pt.*posix\.system' -- "$bin" inspect "$fx/evil_os_system.pt"
printf 'garbage that is no checkpoint' >"$tmp/garbage.pt"
check inspect-garbage 2 'garbage\.pt: offset 0: not a recognised checkpoint format' -- "$bin" inspect "$tmp/garbage.pt"
: >"$tmp/empty.pt"
check inspect-empty 2 'empty\.pt: file is empty' -- "$bin" inspect "$tmp/empty.pt"
head -c 3000 "$fx/resnet_plain.pt" >"$tmp/truncated.pt"
check inspect-truncated 2 'truncated\.pt' -- "$bin" inspect "$tmp/truncated.pt"
check diff-ok 0 '^Would load 122 of 122 tensors' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_legacy.pt"
check diff-dp 1 "strip_prefix\(\"module\.\"\)" -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_dataparallel.pt"
check diff-dp-fixed 0 'Would load 122' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_dataparallel.pt" --strip-prefix module.
check diff-auto 0 "Would load 122 .*auto_select 'state_dict'" -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_lightning.pt" --auto
check diff-order 0 'Would load 122' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_wrapper.pt" --add-prefix x. --strip-prefix x.model.
check diff-rename 0 'Would load 122' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_compiled.pt" --rename '^_orig_mod\.='
check diff-head 1 'size mismatch for fc.weight: copying a param with shape \[5, 8\] from checkpoint, the shape in current model is \[10, 8\]' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_head5.pt"
check diff-lenient 0 'skipped 2 tensor' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_head5.pt" --lenient
check diff-json 1 '"source_shape": \[' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_head5.pt" --json
check diff-select-wrong 1 'select\("model"\)' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/training.pt" --select model_state_dict
check diff-unreadable 2 'statedict: error: .*nope\.pt' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/nope.pt"
# What PyTorch 2.x writes: DCP folders, unreadable values listed, rank files cut for tensor parallelism.
check inspect-dcp 0 '^format: +dcp' -- "$bin" inspect "$fx/torch2/dcp_4ranks"
check inspect-unreadable 0 'quantized +torch\._utils\._rebuild_qtensor: a quantized tensor' -- "$bin" inspect "$fx/rebuild.pt"
check inspect-unreadable-json 0 '"reason": "a sparse tensor' -- "$bin" inspect "$fx/rebuild.pt" --json
check convert-dcp 0 'wrote 6 tensors' -- "$bin" convert "$fx/torch2/dcp_2ranks" "$tmp/dcp.safetensors"
check convert-shard 0 'wrote 6 tensors' -- "$bin" convert "$fx/torch2/dcp_2ranks" "$tmp/rank1.pt" --shard 'embed.*:0:1:4' --shard 'proj.weight:1:1:2'
check convert-shard-rows 0 '^embed\.weight +float32 +\[3, 6\]' -- "$bin" inspect "$tmp/rank1.pt"
check convert-shard-cols 0 '^proj\.weight +float32 +\[5, 4\]' -- "$bin" inspect "$tmp/rank1.pt"
check convert-shard-bad 2 'options\.bad_shard' -- "$bin" convert "$fx/torch2/dcp_2ranks" "$tmp/x.pt" --shard 'embed.*:0:4:4'
check diff-shard 0 'Would load' -- "$bin" diff "$tmp/rank1.pt" "$fx/torch2/dcp_4ranks" --shard 'embed.*:0:1:4' --shard 'proj.weight:1:1:2'
# PyTorch 2.14's .pt2: torch.export archives read as their state dict; AOTInductor packages say where their weights are.
p2="$fx/torch214"
check inspect-pt2 0 '^format: +pt2$' -- "$bin" inspect "$p2/export_mlp.pt2"
check inspect-pt2-table 0 '^fc\.weight +float32 +\[3, 4\]' -- "$bin" inspect "$p2/export_pickle.pt2"
check inspect-pt2-constants 0 "^constants of program 'model' \(2, not in its state dict" -- "$bin" inspect "$p2/export_mlp.pt2"
check inspect-pt2-constant-row 0 '^  mask +float32 +\[3\]$' -- "$bin" inspect "$p2/export_mlp.pt2"
"$bin" inspect "$p2/export_mlp.pt2" --json --hash | python3 -c '
import json, sys
got = json.load(sys.stdin)
want = json.load(open(sys.argv[1]))
assert got["format"] == "pt2" and got["tensors"] == want["tensors"], got
assert [c["key"] for c in got["programs"][0]["constants"]] == [c["key"] for c in want["constants"]]
' "$p2/expected/export_mlp.pt2.json" && passed=$((passed + 1)) || { echo "FAIL inspect-pt2-json"; failed=$((failed + 1)); }
check inspect-aoti-so 0 "the package's 3 constants are compiled into data/aotinductor/model/[a-z0-9]+\.wrapper\.so; it holds no weight files" -- "$bin" inspect "$p2/aoti_so.pt2"
check inspect-aoti-so-rows 0 '^    out\.weight +float32 +\[4, 16\]$' -- "$bin" inspect "$p2/aoti_so.pt2"
check inspect-aoti-so-json 0 '"weights": "in_library"' -- "$bin" inspect "$p2/aoti_so.pt2" --json
check inspect-aoti-pickle 0 '^fc\.weight +float32 +\[16, 8\]' -- "$bin" inspect "$p2/aoti_pickle.pt2"
check inspect-aoti-blob 0 '^out\.weight +float32 +\[4, 16\]' -- "$bin" inspect "$p2/aoti_blob.pt2"
check convert-pt2 0 'wrote 6 tensors' -- "$bin" convert "$p2/export_mlp.pt2" "$tmp/pt2.safetensors"
check diff-pt2 0 'Would load 6 of 6' -- "$bin" diff "$tmp/pt2.safetensors" "$p2/export_pickle.pt2"
check convert-aoti-so 2 'aoti_so\.pt2: aoti_so/data/aotinductor/model: the package.s 3 constants are compiled into .*pt2\.compiled_in' -- "$bin" convert "$p2/aoti_so.pt2" "$tmp/aoti.pt"
# Bad arguments are exit 2 with one line; a mistyped command names the right one.
check diff-bad-rename 2 'options\.bad_rename' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_dataparallel.pt" --rename '['
check diff-bad-regex 2 '^statedict: error: --rename \[=x: not a valid regular expression.*options\.bad_regex' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_dataparallel.pt" --rename '[=x'
check unknown-flag 2 '' -- "$bin" inspect "$fx/resnet_plain.pt" --no-such-flag
check unknown-command 2 "unknown command 'insepct'; did you mean 'inspect'\?" -- "$bin" insepct "$fx/resnet_plain.pt"
check unknown-command-far 2 "unknown command 'frobnicate' \(commands: inspect, diff, convert" -- "$bin" frobnicate
# A key rule that changes nothing is named, in the report and by convert.
check diff-unused-rule 1 'warning: strip_prefix\("modul\."\) changed no key: no checkpoint key starts with "modul\."' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_dataparallel.pt" --strip-prefix modul.
check diff-unused-rule-json 1 '"warnings": \[$' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/resnet_dataparallel.pt" --strip-prefix modul. --json
check convert-unused-rule 0 'warning: rename\("\^head\\\.", "fc\."\) changed no key' -- "$bin" convert "$fx/resnet_plain.pt" "$tmp/r.pt" --rename '^head\.=fc.'
# convert writes only the formats it names, never into a directory's name, and says what it left.
check convert-onnx 2 'OUT .*out\.onnx: convert writes a torch\.save zip.*--format.*options\.bad_output' -- "$bin" convert "$fx/resnet_plain.pt" "$tmp/out.onnx"
[ ! -e "$tmp/out.onnx" ] || { echo "FAIL convert-onnx wrote a file"; failed=$((failed + 1)); }
mkdir -p "$tmp/outdir"
check convert-dir 2 'is a directory; name the file to write, e\.g\. .*outdir/model\.safetensors' -- "$bin" convert "$fx/resnet_plain.pt" "$tmp/outdir"
check convert-format 0 'wrote 122 tensors' -- "$bin" convert "$fx/resnet_plain.pt" "$tmp/weights.data" --format safetensors
check convert-format-read 0 '^format: +safetensors' -- "$bin" inspect "$tmp/weights.data"
check convert-left-behind 0 'not carried over \([0-9]+ value\(s\) that are not tensors\):.*epoch \(int\)' -- "$bin" convert "$fx/training.pt" "$tmp/training.safetensors"
# One part of a larger model: --submodule.
"$bin" convert "$fx/resnet_plain.pt" "$tmp/detector.pt" --add-prefix backbone. >/dev/null
check diff-submodule 0 '^Would load 122 of 122' -- "$bin" diff "$fx/resnet_plain.pt" "$tmp/detector.pt" --submodule backbone
check diff-submodule-none 1 'submodule\("neck\."\) matched no checkpoint key' -- "$bin" diff "$fx/resnet_plain.pt" "$tmp/detector.pt" --submodule neck.
# The first suggestion of `diff --json`, its "cli" flags followed, makes the same diff pass.
for src in resnet_dataparallel.pt training.pt training_proto4.pt resnet_compiled.pt resnet_wrapper.pt resnet_head5.pt resnet_lightning.pt resnet_ema.pt resnet_no_running_stats.pt; do
  flags=$("$bin" diff "$fx/resnet_plain.pt" "$fx/$src" --json |
          python3 -c 'import json, sys; s = json.load(sys.stdin)["suggestions"]; print(s[0]["cli"] if s and s[0].get("passes") else "")')
  eval "check follow-$src 0 '^Would load' -- \"\$bin\" diff \"\$fx/resnet_plain.pt\" \"\$fx/$src\" $flags"
done
# The same for a renamed layer (a regex flag that must survive the shell), a misspelt --select (the
# suggested flag replaces it) and BatchNorm statistics the model lacks (globs).
"$bin" convert "$fx/resnet_plain.pt" "$tmp/renamed.pt" --rename '^fc\.=classifier.' >/dev/null
check suggest-rename-cli 1 "CLI: --rename '\^classifier\\\\.=fc\.'" -- "$bin" diff "$fx/resnet_plain.pt" "$tmp/renamed.pt"
check suggest-select-cli 1 '\(CLI: --select model\)' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/training.pt" --select modle
for case in "renamed.pt" "renamed.pt --lenient" "training.pt --select modle" "training.pt --strip-prefix model."; do
  set -- $case
  src=$1; shift
  [ -e "$tmp/$src" ] && path="$tmp/$src" || path="$fx/$src"
  flags=$("$bin" diff "$fx/resnet_plain.pt" "$path" "$@" --json |
          python3 -c 'import json, sys; s = json.load(sys.stdin)["suggestions"]; print(s[0]["cli"] if s and s[0].get("passes") else "")')
  [ -n "$flags" ] || { echo "FAIL follow-$case: no passing first suggestion with flags"; failed=$((failed + 1)); continue; }
  eval "check 'follow-$case' 0 '^Would load' -- \"\$bin\" diff \"\$fx/resnet_plain.pt\" \"\$path\" $* $flags"
done
fi  # part 1

if [ "$part" != 1 ]; then  # part 2: issue #40's failure classes, files, layout transforms, recipe files
# Issue #40's failure classes (fixtures/failures, generate_failures.py): tied weights get --tie, on
# diff and convert; wrapper segments --strip-segment; legacy LayerNorm names --legacy-names. Each
# first suggestion's flags, followed, make the diff pass.
ff="$fx/failures"
check tie-suggested 1 'CLI: --tie lm_head\.weight=transformer\.wte\.weight\)' -- "$bin" diff "$ff/gpt_port_target.pt" "$ff/gpt_tied.pt"
check tie-diff 0 '^Would load 13 of 13' -- "$bin" diff "$ff/gpt_port_target.pt" "$ff/gpt_tied.pt" --tie lm_head.weight=transformer.wte.weight
"$bin" diff "$ff/gpt_port_target.pt" "$ff/gpt_tied.pt" --tie lm_head.weight=transformer.wte.weight --json | python3 -c '
import json, sys
m = {e["target"]: e for e in json.load(sys.stdin)["matched"]}
assert m["lm_head.weight"]["source"] == "transformer.wte.weight", m["lm_head.weight"]
assert m["lm_head.weight"]["rule"] == "tie(\"lm_head.weight\", \"transformer.wte.weight\")", m["lm_head.weight"]
' && passed=$((passed + 1)) || { echo "FAIL tie-diff-rule"; failed=$((failed + 1)); }
check tie-bad 2 'options\.bad_tie' -- "$bin" diff "$ff/gpt_port_target.pt" "$ff/gpt_tied.pt" --tie lm_head.weight
check tie-convert 0 '^wrote 13 tensors' -- "$bin" convert "$ff/gpt_tied.pt" "$tmp/gpt_untied.safetensors" --tie lm_head.weight=transformer.wte.weight
check tie-converted 0 '^Would load 13 of 13' -- "$bin" diff "$ff/gpt_port_target.pt" "$tmp/gpt_untied.safetensors"
check tie-convert-missing 2 'options\.bad_tie' -- "$bin" convert "$ff/gpt_tied.pt" "$tmp/x.pt" --tie lm_head.weight=nowhere.weight
# The tie in the recipe file: written by diff, read by diff (and by the library: test_failures_suggest.cpp).
check tie-recipe-write 0 'wrote the options given to' -- "$bin" diff "$ff/gpt_port_target.pt" "$ff/gpt_tied.pt" --tie lm_head.weight=transformer.wte.weight --legacy-names --write-options "$tmp/tie.json"
check tie-recipe-read 0 '^Would load 13 of 13' -- "$bin" diff "$ff/gpt_port_target.pt" "$ff/gpt_tied.pt" --options "$tmp/tie.json"
check tie-reverse-refused 2 'statedict\.options\.not_invertible' -- "$bin" convert "$tmp/gpt_untied.safetensors" "$tmp/x.pt" --tie lm_head.weight=transformer.wte.weight --reverse
check segment-suggested 1 'CLI: --strip-segment _checkpoint_wrapped_module\.\)' -- "$bin" diff "$ff/layers_target.pt" "$ff/checkpoint_wrapped.pt"
check legacy-suggested 1 'CLI: --legacy-names\)' -- "$bin" diff "$ff/scaled_target.pt" "$ff/layernorm_gamma.pt"
check legacy-convert 0 '^wrote 12 tensors' -- "$bin" convert "$ff/layernorm_gamma.pt" "$tmp/ln.pt" --legacy-names
check legacy-converted 0 '^Would load 12 of 12' -- "$bin" diff "$ff/scaled_target.pt" "$tmp/ln.pt"
for case in "gpt_port_target.pt gpt_tied.pt" "layers_target.pt checkpoint_wrapped.pt" "layers_target.pt fsdp_wrapped.pt" \
            "scaled_target.pt layernorm_gamma.pt"; do
  set -- $case
  flags=$("$bin" diff "$ff/$1" "$ff/$2" --json |
          python3 -c 'import json, sys; s = json.load(sys.stdin)["suggestions"]; print(s[0]["cli"] if s and s[0].get("passes") else "")')
  [ -n "$flags" ] || { echo "FAIL follow-$2: no passing first suggestion with flags"; failed=$((failed + 1)); continue; }
  eval "check 'follow-$2' 0 '^Would load' -- \"\$bin\" diff \"\$ff/$1\" \"\$ff/$2\" $flags"
done
# Issue #40: files that are not what their user thinks (fixtures/generate_files.py), folded reports, --hash.
fl="$fx/files"
check inspect-hash-text 0 '^conv1\.weight +float32 +\[4, 3, 7, 7\] +6ca4188a074c8c97fcd24e354d0dbd4e2f0e038ba3e2e0a9b7ea696c5cc2022f$' -- "$bin" inspect "$fx/resnet_plain.pt" --hash
check inspect-no-hash 0 '^conv1\.weight +float32 +\[4, 3, 7, 7\]$' -- "$bin" inspect "$fx/resnet_plain.pt"
check inspect-pkl 0 '^format: +pickle$' -- "$bin" inspect "$fl/detectron2_zoo.pkl"
check inspect-pkl-top 0 '^  model +dict of 122: 122 tensors' -- "$bin" inspect "$fl/detectron2_zoo.pkl"
check inspect-pkl-author 0 "^  __author__ +str: 'Detectron2 Model Zoo'" -- "$bin" inspect "$fl/detectron2_zoo.pkl"
check inspect-pkl-py2 0 '^blobs\.conv1_w +float32 +\[4, 3, 3, 3\]' -- "$bin" inspect "$fl/detectron1_blobs_py2.pkl"
check inspect-pkl-object 0 '^  names +numpy\.ndarray: numpy array of Python objects' -- "$bin" inspect "$fl/numpy_arrays_p5.pkl"
"$bin" inspect "$fl/numpy_arrays_p5.pkl" --json --hash | python3 -c '
import json, sys
got = json.load(sys.stdin)
want = json.load(open(sys.argv[1]))
assert got["format"] == "pickle" and got["tensors"] == want["tensors"], got["tensors"]
assert [u["key"] for u in got["unreadable"]] == want["unreadable"]
' "$fl/expected/numpy_arrays_p5.pkl.json" && passed=$((passed + 1)) || { echo "FAIL inspect-pkl-json"; failed=$((failed + 1)); }
check diff-pkl-select 0 '^Would load 122 of 122' -- "$bin" diff "$fx/resnet_plain.pt" "$fl/detectron2_zoo.pkl" --select model
check diff-pkl-auto 0 "^Would load 122 of 122 .*auto_select 'model'" -- "$bin" diff "$fx/resnet_plain.pt" "$fl/detectron2_zoo.pkl" --auto
check convert-pkl 0 'wrote 122 tensors' -- "$bin" convert "$fl/detectron2_zoo.pkl" "$tmp/d2.safetensors" --select model
check convert-pkl-read 0 '^Would load 122 of 122' -- "$bin" diff "$fx/resnet_plain.pt" "$tmp/d2.safetensors"
cp "$fx/resnet_plain.pt" "$tmp/zip_named.safetensors"
check inspect-misnamed 0 "^note: +named '\.safetensors', but it is a torch\.save zip \(PyTorch 1\.6 or later\): read as that$" -- "$bin" inspect "$tmp/zip_named.safetensors"
check inspect-misnamed-format 0 '^format: +torch_zip$' -- "$bin" inspect "$tmp/zip_named.safetensors"
check inspect-misnamed-json 0 '"notes": \[$' -- "$bin" inspect "$tmp/zip_named.safetensors" --json
check diff-misnamed 0 "note: named '\.safetensors', but it is a torch\.save zip" -- "$bin" diff "$fx/resnet_plain.pt" "$tmp/zip_named.safetensors"
cp "$fl/detectron2_zoo.pkl" "$tmp/pickle_named.bin"
check inspect-pickle-named-bin 0 "^note: +named '\.bin', but it is a plain pickle" -- "$bin" inspect "$tmp/pickle_named.bin"
printf '<html><head><title>Sign in</title></head></html>' >"$tmp/page.pt"
check inspect-html 2 'page\.pt: offset 0: not a recognised checkpoint format.*it is an HTML page' -- "$bin" inspect "$tmp/page.pt"
check inspect-optimizer 0 "^note: +this file is an optimizer's state_dict\(\) \(keys 'state' and 'param_groups'\), not a model's" -- "$bin" inspect "$fl/optimizer_adam.pt"
check inspect-optimizer-select 0 "^note: +'optimizer' is an optimizer's state_dict\(\)" -- "$bin" inspect "$fx/training.pt" --select optimizer
check diff-optimizer 1 "optimizer_adam\.pt: the checkpoint is an optimizer's state_dict\(\)" -- "$bin" diff "$fx/resnet_plain.pt" "$fl/optimizer_adam.pt"
check diff-optimizer-json 1 '"id": "load\.optimizer_state"' -- "$bin" diff "$fx/resnet_plain.pt" "$fl/optimizer_adam.pt" --json
check diff-folded 1 'Missing key\(s\) in state_dict: "layers\.\{0\.\.95\}\.attn\.\{q,k,v\}\.weight" \(288\), "layers\.\{0\.\.95\}\.norm\.weight" \(96\), "head\.weight"; 385 keys in all\.' -- "$bin" diff "$fl/layers96.pt" "$fx/resnet_plain.pt"
check diff-folded-gap 1 '"layers\.\{0\.\.4,6\.\.95\}\.attn\.k\.weight" \(95\)' -- "$bin" diff "$fl/layers96.pt" "$fx/resnet_plain.pt" --ignore-missing layers.5.attn.k.weight
check diff-folded-json 1 '"layers\.95\.attn\.v\.weight",$' -- "$bin" diff "$fl/layers96.pt" "$fx/resnet_plain.pt" --json
# Layout transforms (#36): convert with them gives the module's layout (each tensor's bytes as PyTorch
# made them, layouts_module.pt); convert --reverse with the same flags gives the input back bit for bit.
tf=(--transpose 'conv.*.weight' --split 'attn.qkv.weight=attn.q.weight,attn.k.weight,attn.v.weight@0:8,4,4'
    --split 'mlp.gate_up.weight=mlp.gate.weight,mlp.up.weight@0' --merge 'mha.q_proj.weight,mha.k_proj.weight,mha.v_proj.weight=mha.in_proj_weight@0'
    --stack 'moe.experts.#.w1.weight=moe.w1' --unstack 'moe2.w2=moe2.experts.#.w2.weight' --reshape 'proj.weight=-1,-1,1,1:-1,-1')
"$bin" convert "$fx/transforms/layouts.pt" "$tmp/layouts.safetensors" >/dev/null
check convert-transforms 0 'wrote 13 tensors' -- "$bin" convert "$tmp/layouts.safetensors" "$tmp/module.safetensors" "${tf[@]}"
check convert-transforms-diff 0 '^Would load 13 of 13' -- "$bin" diff "$fx/transforms/layouts_module.pt" "$tmp/module.safetensors"
hashes() { "$bin" inspect "$1" --json --hash | python3 -c 'import json, sys; print(sorted((t["key"], t["sha256"]) for t in json.load(sys.stdin)["tensors"]))'; }
[ "$(hashes "$tmp/module.safetensors")" = "$(hashes "$fx/transforms/layouts_module.pt")" ] && passed=$((passed + 1)) ||
  { echo "FAIL convert-transforms-bytes: the converted tensors are not PyTorch's"; failed=$((failed + 1)); }
mkdir -p "$tmp/orig" "$tmp/back"
for ext in safetensors pt; do  # the same file name: a torch zip's records are under its stem
  "$bin" convert "$fx/transforms/layouts.pt" "$tmp/orig/layouts.$ext" >/dev/null
  # Key rules too (a literal rename is undone; the transforms name the keys the rules give).
  "$bin" convert "$tmp/orig/layouts.$ext" "$tmp/fwd.$ext" --rename '^conv\.=layer.' "${tf[@]:2}" --transpose 'layer.*.weight' >/dev/null
  check "convert-reverse-$ext" 0 'wrote 13 tensors' -- "$bin" convert "$tmp/fwd.$ext" "$tmp/back/layouts.$ext" --rename '^conv\.=layer.' "${tf[@]:2}" --transpose 'layer.*.weight' --reverse
  cmp -s "$tmp/orig/layouts.$ext" "$tmp/back/layouts.$ext" && passed=$((passed + 1)) || { echo "FAIL convert-reverse-$ext-bytes: not the input back"; failed=$((failed + 1)); }
done
check convert-reverse-regex 2 'statedict\.options\.not_invertible' -- "$bin" convert "$tmp/orig/layouts.pt" "$tmp/x.pt" --rename '^(conv)\.=$1_' --reverse
check transform-bad-flag 2 "--split a=b,c: expected @DIM at the end.*options\.bad_transform" -- "$bin" diff "$fx/transforms/layouts_module.pt" "$fx/transforms/layouts.pt" --split 'a=b,c'
check transform-no-fit 1 'the sizes add up to 17, but dim 0 of \[16, 6\] has 16' -- "$bin" diff "$fx/transforms/layouts_module.pt" "$fx/transforms/layouts.pt" --split 'attn.qkv.weight=attn.q.weight,attn.k.weight,attn.v.weight@0:8,4,5'
check transform-rule-json 1 '"rule": "split part 2 of 3: \[8, 12\) along dim 0 of \[16, 6\]"' -- "$bin" diff "$fx/transforms/layouts_module.pt" "$fx/transforms/layouts.pt" --split 'attn.qkv.weight=attn.q.weight,attn.k.weight,attn.v.weight@0:8,4,4' --json
# The recipe file: diff --write-options writes what passes; --options reads it in diff and convert,
# and the library reads the same file (test_transforms.cpp reads one the CLI wrote: see below).
check recipe-write 0 'wrote the options given to' -- "$bin" diff "$fx/transforms/layouts_module.pt" "$fx/transforms/layouts.pt" "${tf[@]}" --write-options "$tmp/fix.json"
check recipe-read 0 '^Would load 13 of 13' -- "$bin" diff "$fx/transforms/layouts_module.pt" "$fx/transforms/layouts.pt" --options "$tmp/fix.json"
check recipe-convert 0 'wrote 13 tensors' -- "$bin" convert "$tmp/layouts.safetensors" "$tmp/recipe.safetensors" --options "$tmp/fix.json"
cmp -s "$tmp/recipe.safetensors" "$tmp/module.safetensors" && passed=$((passed + 1)) || { echo "FAIL recipe-convert-bytes: not what the flags wrote"; failed=$((failed + 1)); }
check recipe-reverse 0 'wrote 13 tensors' -- "$bin" convert "$tmp/recipe.safetensors" "$tmp/recipe_back.safetensors" --options "$tmp/fix.json" --reverse
cmp -s "$tmp/recipe_back.safetensors" "$tmp/layouts.safetensors" && passed=$((passed + 1)) || { echo "FAIL recipe-reverse-bytes"; failed=$((failed + 1)); }
check recipe-suggested 1 'wrote the options of suggestion 1 \(transpose' -- "$bin" diff "$fx/transforms/layouts_module.pt" "$fx/transforms/layouts.pt" --write-options "$tmp/suggested.json"
check recipe-suggested-read 0 '^Would load 13 of 13' -- "$bin" diff "$fx/transforms/layouts_module.pt" "$fx/transforms/layouts.pt" --options "$tmp/suggested.json"
check recipe-none-passes 1 'no options file written' -- "$bin" diff "$fx/resnet_plain.pt" "$fx/transforms/layouts.pt" --write-options "$tmp/none.json"
printf '{"statedict_options": 1, "transforms": [{"kind": "transpose"}]}' >"$tmp/bad.json"
check recipe-bad 2 "bad\.json: /transforms/0: \"key\" is missing \[statedict\.options\.bad_file\]" -- "$bin" diff "$fx/transforms/layouts_module.pt" "$fx/transforms/layouts.pt" --options "$tmp/bad.json"
# The library reads what the CLI writes: transforms/layouts_recipe.json, which test_transforms.cpp
# loads with LoadOptions::from_json_file, is what this diff writes (regenerate it so if the format changes).
cmp -s "$tmp/fix.json" "$fx/transforms/layouts_recipe.json" && passed=$((passed + 1)) ||
  { echo "FAIL recipe-fixture: diff --write-options no longer writes tests/fixtures/transforms/layouts_recipe.json"; failed=$((failed + 1)); }

# Suggested transforms (GPT-2: Conv1D weights, fused c_attn, a square attn.c_proj inferred): the first
# suggestion's flags make the diff pass; convert with them gives PyTorch's port layout (gpt2_port.pt)
# tensor for tensor; --reverse with them gives the original back bit for bit.
gflags=$("$bin" diff "$fx/transforms/gpt2_port.pt" "$fx/transforms/gpt2_tiny.pt" --json |
         python3 -c 'import json, sys; s = json.load(sys.stdin)["suggestions"]; print(s[0]["cli"] if s and s[0].get("passes") else "")')
case "$gflags" in *"--transpose 'h.*.attn.c_proj.weight'"*) passed=$((passed + 1)) ;; *) echo "FAIL suggest-transforms-cli: $gflags"; failed=$((failed + 1)) ;; esac
eval "check suggest-transforms-follow 0 '^Would load 36 of 36' -- \"\$bin\" diff \"\$fx/transforms/gpt2_port.pt\" \"\$fx/transforms/gpt2_tiny.pt\" $gflags"
eval "\"\$bin\" convert \"\$fx/transforms/gpt2_tiny.pt\" \"\$tmp/gpt2_port.safetensors\" $gflags" >/dev/null
[ "$(hashes "$tmp/gpt2_port.safetensors")" = "$(hashes "$fx/transforms/gpt2_port.pt")" ] && passed=$((passed + 1)) ||
  { echo "FAIL suggest-transforms-bytes: following the suggestion did not give PyTorch's port layout"; failed=$((failed + 1)); }
"$bin" convert "$fx/transforms/gpt2_tiny.pt" "$tmp/orig/gpt2.safetensors" >/dev/null
eval "\"\$bin\" convert \"\$tmp/gpt2_port.safetensors\" \"\$tmp/back/gpt2.safetensors\" $gflags --reverse" >/dev/null
cmp -s "$tmp/orig/gpt2.safetensors" "$tmp/back/gpt2.safetensors" && passed=$((passed + 1)) ||
  { echo "FAIL suggest-transforms-reverse: not the original back"; failed=$((failed + 1)); }
fi  # part 2

echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
