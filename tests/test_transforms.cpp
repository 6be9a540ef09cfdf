// Layout transforms (issue #36): transpose, split, merge, stack, unstack and reshape as load options,
// checked before anything is written, shown in the report, undone by save and convert --reverse,
// written to and read from a recipe file. The fixtures are PyTorch's (generate_transforms.py):
// layouts.pt in the checkpoint's layout, layouts_module.pt what torch makes of it in the module's.
#include "helpers.hpp"

#include <map>

using sdtest::fixture;

namespace {

/// A module with zero-filled parameters at the given dotted keys, in the given shapes.
struct Keyed : torch::nn::Module {
  explicit Keyed(const std::vector<statedict::NamedTensor>& like) {
    std::map<std::string, std::shared_ptr<torch::nn::Module>> subs;
    for (const auto& t : like) {
      torch::nn::Module* parent = this;
      std::string path;
      std::size_t from = 0, dot;
      while ((dot = t.key.find('.', from)) != std::string::npos) {
        const std::string name = t.key.substr(from, dot - from);
        path += name + ".";
        auto& sub = subs[path];
        if (!sub) sub = parent->register_module(name, std::make_shared<torch::nn::Module>());
        parent = sub.get();
        from = dot + 1;
      }
      parent->register_parameter(t.key.substr(from), torch::zeros(t.tensor.sizes(), t.tensor.options()));
    }
  }
};

std::vector<statedict::NamedTensor> module_layout() { return statedict::read(fixture("transforms/layouts_module.pt")).tensors(); }

/// Every transform the fixture needs.
statedict::LoadOptions all_transforms() {
  return statedict::LoadOptions{}
      .transpose("conv.*.weight")
      .split("attn.qkv.weight", {"attn.q.weight", "attn.k.weight", "attn.v.weight"}, 0, {8, 4, 4})
      .split("mlp.gate_up.weight", {"mlp.gate.weight", "mlp.up.weight"}, 0)
      .merge({"mha.q_proj.weight", "mha.k_proj.weight", "mha.v_proj.weight"}, "mha.in_proj_weight", 0)
      .stack("moe.experts.#.w1.weight", "moe.w1")
      .unstack("moe2.w2", "moe2.experts.#.w2.weight")
      .reshape("proj.weight", {-1, -1, 1, 1}, {-1, -1});
}

std::map<std::string, at::Tensor> parameters_now(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

void require_equal(torch::nn::Module& m, const std::map<std::string, at::Tensor>& want) {
  for (const auto& p : m.named_parameters()) {
    INFO(p.key());
    REQUIRE(want.count(p.key()) == 1);
    REQUIRE(p.value().detach().equal(want.at(p.key())));
  }
}

const statedict::MatchedKey& matched(const statedict::LoadReport& r, const std::string& key) {
  for (const auto& m : r.matched)
    if (m.target == key) return m;
  FAIL("no matched entry for " << key);
  return r.matched.front();
}

}  // namespace

TEST_CASE("each transform kind loads what PyTorch makes of the checkpoint, byte for byte", "[transforms]") {
  const auto want = module_layout();
  std::map<std::string, at::Tensor> expected;
  for (const auto& t : want) expected[t.key] = t.tensor;
  // From the torch zip as PyTorch wrote it, from a safetensors copy, and from a mapped read.
  const std::string st = sdtest::temp_path("layouts.safetensors");
  statedict::save(statedict::read(fixture("transforms/layouts.pt")).tensors(), st);
  for (const std::string& src : {fixture("transforms/layouts.pt"), st}) {
    INFO(src);
    Keyed m(want);
    const statedict::LoadReport r = statedict::load(m, src, all_transforms());
    INFO(r);
    REQUIRE(r.ok());
    REQUIRE(r.loaded == want.size());
    require_equal(m, expected);
    // The report says what was done to which checkpoint keys.
    CHECK(matched(r, "attn.k.weight").source == "attn.qkv.weight");
    CHECK(matched(r, "attn.k.weight").rule == "split part 2 of 3: [8, 12) along dim 0 of [16, 6]");
    CHECK(matched(r, "conv.c_sq.weight").rule == "transpose [5, 5] -> [5, 5]");
    CHECK(matched(r, "mha.in_proj_weight").source == "mha.q_proj.weight + mha.k_proj.weight + mha.v_proj.weight");
    CHECK(matched(r, "moe.w1").rule == "stack 4 tensors along dim 0 into [4, 5, 3]");
    CHECK(matched(r, "moe2.experts.2.w2.weight").rule == "unstack 2 of 3 along dim 0 of [3, 2, 5]");
    CHECK(matched(r, "proj.weight").rule == "reshape [6, 4, 1, 1] -> [6, 4]");
    // A mapped checkpoint read once, loaded twice: the same bytes.
    Keyed again(want);
    const auto ck = statedict::read(src, statedict::ReadOptions{}.map_tensors(true));
    REQUIRE(statedict::load(again, ck, all_transforms()).ok());
    require_equal(again, expected);
  }
}

TEST_CASE("a square layer stored transposed loads without a shape error unless transposed", "[transforms]") {
  const auto want = module_layout();
  std::map<std::string, at::Tensor> expected;
  for (const auto& t : want) expected[t.key] = t.tensor;
  Keyed m(want);
  const auto r = statedict::load(m, fixture("transforms/layouts.pt"), statedict::LoadOptions{}.transpose("conv.c_fc.weight").lenient());
  INFO(r);
  REQUIRE(r.ok());
  // Shapes cannot tell [5, 5] from its transpose: without the option, wrong values and no error.
  const at::Tensor sq = m.named_parameters()["conv.c_sq.weight"].detach();
  CHECK(!sq.equal(expected.at("conv.c_sq.weight")));
  CHECK(sq.equal(expected.at("conv.c_sq.weight").t()));
  CHECK(m.named_parameters()["conv.c_fc.weight"].detach().equal(expected.at("conv.c_fc.weight")));
}

TEST_CASE("a transform that does not fit fails the load before anything is written", "[transforms]") {
  const auto want = module_layout();
  Keyed m(want);
  for (auto& p : m.parameters()) p.data().uniform_();
  const auto before = parameters_now(m);
  const std::string file = fixture("transforms/layouts.pt");
  struct Case {
    statedict::LoadOptions opts;
    std::string says;
  };
  const std::vector<Case> cases{
      {statedict::LoadOptions{}.split("attn.qkv.weight", {"a", "b", "c"}, 0, {8, 4, 5}),
       "the sizes add up to 17, but dim 0 of [16, 6] has 16"},
      {statedict::LoadOptions{}.split("mlp.gate_up.weight", {"a", "b", "c"}, 0), "does not split into 3 equal parts"},
      {statedict::LoadOptions{}.split("attn.qkv.weight", {"a", "b"}, 2), "dim 2 does not exist"},
      // A part the checkpoint lacks (the rename moves expert 2 away): nothing is stacked.
      {statedict::LoadOptions{}.rename("^moe\\.experts\\.2\\.", "moe.gone.").stack("moe.experts.#.w1.weight", "moe.w1"),
       "part moe.experts.2.w1.weight is not in the checkpoint"},
      {statedict::LoadOptions{}.merge({"mha.q_proj.weight", "mha.x_proj.weight"}, "mha.in_proj_weight", 0),
       "part mha.x_proj.weight is not in the checkpoint"},
      {statedict::LoadOptions{}.merge({"mha.q_proj.weight", "attn.qkv.weight"}, "mha.in_proj_weight", 1),
       "merged parts may differ only along dim 1"},
      {statedict::LoadOptions{}.merge({"mha.q_proj.weight", "mha.k_proj.weight"}, "mha.in_proj_weight", 0, {6, 5}),
       "has 6 along dim 0, not 5"},
      {statedict::LoadOptions{}.transpose("moe2.w2"), "a 3-d tensor [3, 2, 5]; transpose takes 2-d weights"},
      {statedict::LoadOptions{}.reshape("attn.qkv.weight", {-1, 1}, {-1}), "its shape [16, 6] is not [*, 1]"},
  };
  for (const auto& c : cases) {
    const auto r = statedict::load(m, file, c.opts);
    INFO(r);
    CHECK(!r.ok());
    CHECK(!r.applied);
    bool said = false;
    for (const auto& e : r.errors) said = said || e.find(c.says) != std::string::npos;
    CHECK(said);
    require_equal(m, before);
  }
}

TEST_CASE("transforms that cannot mean anything are refused when given", "[transforms]") {
  using statedict::LoadOptions;
  CHECK(sdtest::error_id([] { LoadOptions{}.split("a.*.w", {"a.*.q"}, 0); }) == "options.bad_transform");
  CHECK(sdtest::error_id([] { LoadOptions{}.split("a.*.w", {"a.*.q", "a.k"}, 0); }) == "options.bad_transform");
  CHECK(sdtest::error_id([] { LoadOptions{}.split("a", {"b", "c"}, 0, {1}); }) == "options.bad_transform");
  CHECK(sdtest::error_id([] { LoadOptions{}.stack("experts.w1", "w1"); }) == "options.bad_transform");
  CHECK(sdtest::error_id([] { LoadOptions{}.reshape("w", {-1, 2}, {-1}); }) == "options.bad_transform");
  CHECK(sdtest::error_id([] { LoadOptions{}.reshape("w", {-1, -1}, {-1}); }) == "options.bad_transform");
  CHECK(sdtest::error_id([] { LoadOptions{}.transpose(""); }) == "options.bad_transform");
}

TEST_CASE("save with the load's options writes the checkpoint's layout back", "[transforms]") {
  const auto want = module_layout();
  Keyed m(want);
  // Keys through rules too: the file's keys carry "model.", the module's do not.
  const std::string prefixed = sdtest::temp_path("layouts_prefixed.safetensors");
  std::vector<statedict::NamedTensor> original = statedict::read(fixture("transforms/layouts.pt")).tensors();
  for (auto& t : original) t.key = "model." + t.key;
  statedict::save(original, prefixed);
  // The rules apply before the transforms: their patterns name the keys without "model.".
  statedict::LoadOptions with_rule = statedict::LoadOptions{}.strip_prefix("model.");
  const statedict::LoadOptions all = all_transforms();
  for (const auto& t : all.transforms()) with_rule.transform(t);
  const auto r = statedict::load(m, prefixed, with_rule);
  INFO(r);
  REQUIRE(r.ok());
  for (const char* ext : {".pt", ".safetensors"}) {
    const std::string out = sdtest::temp_path(std::string("layouts_back") + ext);
    statedict::save(m, out, with_rule);
    const auto back = statedict::read(out).tensors();
    std::map<std::string, at::Tensor> got;
    for (const auto& t : back) got[t.key] = t.tensor;
    REQUIRE(got.size() == original.size());
    for (const auto& t : original) {
      INFO(t.key);
      REQUIRE(got.count(t.key) == 1);
      CHECK(got[t.key].equal(t.tensor));
    }
  }
  // A regex rename has no inverse.
  const auto regex = statedict::LoadOptions{}.rename("^(.*)_proj", "$1");
  CHECK(sdtest::error_id([&] { statedict::save(m, sdtest::temp_path("x.pt"), regex); }) == "options.not_invertible");
}

TEST_CASE("the recipe file gives back the options it was written from", "[transforms][recipe]") {
  auto o = all_transforms();
  o.strip_prefix("module.")
      .rename("^(.*)\\.gamma$", "$1.weight")
      .missing(statedict::Policy::warn)
      .ignore_unexpected("*.num_batches_tracked");
  statedict::detail::add_literal_rename(o, "fc.", "head.", false);
  o.shard("moe.w1", 0, 1, 2).min_coverage(0.5).select("model");
  const std::string text = o.to_json();
  const auto back = statedict::LoadOptions::from_json(text);
  CHECK(back.to_json() == text);
  REQUIRE(back.transforms().size() == o.transforms().size());
  for (std::size_t i = 0; i < o.transforms().size(); ++i) CHECK(back.transforms()[i].text() == o.transforms()[i].text());
  REQUIRE(back.rules().size() == 3);
  CHECK(back.rules()[1].compile != nullptr);  // the regex stays a regex
  CHECK(back.rules()[2].compile == nullptr);  // the literal rename stays literal (no std::regex)
  CHECK(back.missing() == statedict::Policy::warn);
  CHECK(back.shards().size() == 1);
  // Through a file, and loading with what was read gives the same module.
  const std::string path = sdtest::temp_path("recipe.json");
  all_transforms().to_json_file(path);
  Keyed a(module_layout()), b(module_layout());
  REQUIRE(statedict::load(a, fixture("transforms/layouts.pt"), all_transforms()).ok());
  REQUIRE(statedict::load(b, fixture("transforms/layouts.pt"), statedict::LoadOptions::from_json_file(path)).ok());
  require_equal(b, parameters_now(a));
}

TEST_CASE("a bad recipe file is refused, naming the file and the place", "[transforms][recipe]") {
  const std::string file = sdtest::temp_path("bad_recipe.json");
  struct Case {
    std::string text, where, says;
  };
  const std::vector<Case> cases{
      {"{\"statedict_options\": 1, \"transforms\": [{\"kind\": \"transpose\", \"key\": \"a\"}, {\"kind\": \"split\", \"key\": \"b\", "
       "\"parts\": [\"c\", \"d\"], \"dim\": \"0\"}]}",
       "/transforms/1/dim", "expected an integer, found string"},
      {"{\"statedict_options\": 1, \"key_rules\": [{\"kind\": \"strip\", \"prefix\": \"m.\"}]}", "/key_rules/0/kind", "not a key rule"},
      {"{\"statedict_options\": 1, \"polices\": {}}", "/polices", "unknown option"},
      {"{\"statedict_options\": 1, \"policies\": {\"missing\": \"loud\"}}", "/policies/missing", "not a policy"},
      {"{\"statedict_options\": 1, \"transforms\": [{\"kind\": \"split\", \"key\": \"a.*\", \"parts\": [\"b\", \"c\"]}]}", "/transforms/0",
       "as many '*'"},
      {"{\"statedict_options\": 1, \"transforms\": [{\"kind\": \"stack\", \"key\": \"a\", \"parts\": [\"b.#\"], \"size\": 3}]}",
       "/transforms/0/size", "unknown member"},
      {"{\"statedict_options\": 1, \"key_rules\": [{\"kind\": \"rename\", \"pattern\": \"(\", \"replacement\": \"\"}]}",
       "/key_rules/0/pattern", "not a valid regular expression"},
      {"{\"statedict_options\": 2}", "/statedict_options", "version 2; this statedict reads version 1"},
      {"{\"select\": \"model\"}", "/", "not a statedict options file"},
      {"{\"statedict_options\": 1,", "byte ", "not JSON"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    sdtest::write_temp("bad_recipe.json", c.text);
    const std::string what = sdtest::error_text([&] { statedict::LoadOptions::from_json_file(file); });
    CHECK(what.find(file + ": " + c.where) == 0);
    CHECK(what.find(c.says) != std::string::npos);
    CHECK(what.find("[statedict.options.bad_file]") != std::string::npos);
  }
  CHECK(sdtest::error_id([] { statedict::LoadOptions::from_json_file("/nonexistent/recipe.json"); }) == "options.bad_file");
}

TEST_CASE("a recipe file the CLI wrote loads in the library", "[transforms][recipe]") {
  // Written by `statedict diff layouts_module.pt layouts.pt --transpose ... --write-options` (tests/cli_test.sh
  // checks that the CLI still writes exactly this file).
  const auto o = statedict::LoadOptions::from_json_file(fixture("transforms/layouts_recipe.json"));
  CHECK(o.to_json() == all_transforms().to_json());
  Keyed m(module_layout());
  const auto r = statedict::load(m, fixture("transforms/layouts.pt"), o);
  INFO(r);
  REQUIRE(r.ok());
  std::map<std::string, at::Tensor> expected;
  for (const auto& t : module_layout()) expected[t.key] = t.tensor;
  require_equal(m, expected);
}

namespace {
/// The first suggestion of a dry run, followed: a load with its options, which must pass.
std::map<std::string, at::Tensor> follow_first(const std::vector<statedict::NamedTensor>& like, const std::string& file,
                                               statedict::Suggestion& first) {
  Keyed m(like);
  const auto r = statedict::diff(m, file);
  INFO(r);
  REQUIRE(!r.ok());
  REQUIRE(!r.suggestions.empty());
  first = r.suggestions.front();
  REQUIRE(first.options);
  REQUIRE(first.passes);
  const auto loaded = statedict::load(m, file, *first.options);
  INFO(loaded);
  REQUIRE(loaded.ok());
  return parameters_now(m);
}
}  // namespace

TEST_CASE("a GPT-2 checkpoint's transforms are suggested, square layers inferred, and loading with them gives PyTorch's bytes",
          "[transforms][suggest]") {
  const auto port = statedict::read(fixture("transforms/gpt2_port.pt")).tensors();  // what torch makes of it
  statedict::Suggestion first;
  const auto got = follow_first(port, fixture("transforms/gpt2_tiny.pt"), first);
  INFO(first.text);
  CHECK(first.option.find("transpose(\"h.*.mlp.c_fc.weight\")") != std::string::npos);
  CHECK(first.option.find("split(\"h.*.attn.c_attn.weight\", {\"h.*.attn.q.weight\", \"h.*.attn.k.weight\", \"h.*.attn.v.weight\"}, 0)") !=
        std::string::npos);
  // The square c_proj of attention fits as it is; it is transposed because mlp.c_proj is, and the text says so.
  CHECK(first.option.find("transpose(\"h.*.attn.c_proj.weight\")") != std::string::npos);
  CHECK(first.text.find("Inferred, not seen: 'h.*.attn.c_proj.weight'") != std::string::npos);
  CHECK(first.text.find("a guess where parts have one size") != std::string::npos);  // q, k, v: one size each
  for (const auto& t : port) {
    INFO(t.key);
    CHECK(got.at(t.key).equal(t.tensor));
  }
}

TEST_CASE("each transform kind is suggested where shapes and names show it", "[transforms][suggest]") {
  statedict::Suggestion first;
  const auto got = follow_first(module_layout(), fixture("transforms/layouts.pt"), first);
  INFO(first.text);
  for (const char* want : {"transpose(\"conv.c_fc.weight\")",
                           "split(\"attn.qkv.weight\", {\"attn.q.weight\", \"attn.k.weight\", \"attn.v.weight\"}, 0, {8, 4, 4})",
                           "split(\"mlp.gate_up.weight\", {\"mlp.gate.weight\", \"mlp.up.weight\"}, 0)",
                           "merge({\"mha.q_proj.weight\", \"mha.k_proj.weight\", \"mha.v_proj.weight\"}, \"mha.in_proj_weight\", 0)",
                           "stack(\"moe.experts.#.w1.weight\", \"moe.w1\")", "unstack(\"moe2.w2\", \"moe2.experts.#.w2.weight\")",
                           "reshape(\"proj.weight\", {-1, -1, 1, 1}, {-1, -1})"})
    CHECK(first.option.find(want) != std::string::npos);
  for (const auto& t : module_layout()) {
    INFO(t.key);
    // conv.c_sq.weight is square and has no layer of its name stored transposed: nothing tells.
    if (t.key == "conv.c_sq.weight")
      CHECK(got.at(t.key).equal(t.tensor.t()));
    else
      CHECK(got.at(t.key).equal(t.tensor));
  }
}
