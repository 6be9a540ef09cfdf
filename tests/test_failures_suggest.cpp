// The failure classes users report in public issue trackers (issue #40), on checkpoints rebuilt by
// real PyTorch (fixtures/generate_failures.py): each report's first suggestion is followed, the load
// made, and the loaded bytes compared with the source tensors' sha256 as PyTorch listed them.
#include "helpers.hpp"
#include "models.hpp"

using statedict::LoadOptions;

namespace fsug {

namespace nn = torch::nn;

struct BlockImpl : nn::Module {
  nn::Linear attn{nullptr}, mlp{nullptr};
  BlockImpl() : attn(register_module("attn", nn::Linear(8, 8))), mlp(register_module("mlp", nn::Linear(8, 8))) {}
};
TORCH_MODULE(Block);

struct TransformerImpl : nn::Module {
  nn::Embedding wte{nullptr}, wpe{nullptr};
  nn::ModuleList h;
  nn::LayerNorm ln_f{nullptr};
  TransformerImpl()
      : wte(register_module("wte", nn::Embedding(16, 8))), wpe(register_module("wpe", nn::Embedding(8, 8))),
        h(register_module("h", nn::ModuleList(Block(), Block()))), ln_f(register_module("ln_f", nn::LayerNorm(nn::LayerNormOptions({8})))) {
  }
};
TORCH_MODULE(Transformer);

/// An output layer holding the tensor it is given: the input embedding's, for a port that ties them.
struct HeadImpl : nn::Module {
  torch::Tensor weight;
  explicit HeadImpl(torch::Tensor w) : weight(register_parameter("weight", std::move(w))) {}
};
TORCH_MODULE(Head);

/// The GPT of gpt_tied.pt as a LibTorch port: a separate lm_head, or (tied) the embedding's tensor.
struct GptImpl : nn::Module {
  Transformer transformer;
  Head lm_head{nullptr};
  explicit GptImpl(bool tied) : transformer(register_module("transformer", Transformer())) {
    lm_head = register_module("lm_head", Head(tied ? transformer->wte->weight : torch::randn({16, 8})));
  }
};
TORCH_MODULE(Gpt);

struct TinyNetImpl : nn::Module {
  nn::Linear fc1{nullptr}, fc2{nullptr};
  nn::LayerNorm norm{nullptr};
  TinyNetImpl()
      : fc1(register_module("fc1", nn::Linear(4, 8))), fc2(register_module("fc2", nn::Linear(8, 3))),
        norm(register_module("norm", nn::LayerNorm(nn::LayerNormOptions({8})))) {}
};
TORCH_MODULE(TinyNet);

struct LayerScaleImpl : nn::Module {
  torch::Tensor gamma;
  LayerScaleImpl() : gamma(register_parameter("gamma", torch::ones({8}))) {}
};
TORCH_MODULE(LayerScale);

struct ScaledBlockImpl : nn::Module {
  nn::LayerNorm norm{nullptr};
  nn::Linear fc{nullptr};
  LayerScale ls{nullptr};
  ScaledBlockImpl()
      : norm(register_module("norm", nn::LayerNorm(nn::LayerNormOptions({8})))), fc(register_module("fc", nn::Linear(8, 8))),
        ls(register_module("ls", LayerScale())) {}
};
TORCH_MODULE(ScaledBlock);

struct ScaledNetImpl : nn::Module {
  nn::ModuleList blocks;
  nn::LayerNorm norm{nullptr};
  ScaledNetImpl()
      : blocks(register_module("blocks", nn::ModuleList(ScaledBlock(), ScaledBlock()))),
        norm(register_module("norm", nn::LayerNorm(nn::LayerNormOptions({8})))) {}
};
TORCH_MODULE(ScaledNet);

struct LayersImpl : nn::Module {
  nn::Embedding embed{nullptr};
  nn::ModuleList layers;
  nn::Linear head{nullptr};
  LayersImpl()
      : embed(register_module("embed", nn::Embedding(16, 8))), layers(register_module("layers", nn::ModuleList(Block(), Block()))),
        head(register_module("head", nn::Linear(8, 4))) {}
};
TORCH_MODULE(Layers);

/// An encoder layer of a newer port: its rotary inv_freq is a buffer the module computes itself.
struct RotaryImpl : nn::Module {
  nn::Linear q{nullptr};
  torch::Tensor inv_freq;
  explicit RotaryImpl(bool rotary) : q(register_module("q", nn::Linear(8, 8))) {
    if (rotary) inv_freq = register_buffer("inv_freq", 1.0 / torch::pow(10000.0, torch::arange(0, 8, 2).to(torch::kFloat) / 8));
  }
};
TORCH_MODULE(Rotary);

struct EncoderImpl : nn::Module {
  std::shared_ptr<nn::Module> embeddings;
  nn::ModuleList layers;
  explicit EncoderImpl(bool rotary) : embeddings(register_module("embeddings", std::make_shared<nn::Module>())) {
    embeddings->register_module("word_embeddings", nn::Embedding(16, 8));
    layers = register_module("layers", nn::ModuleList(Rotary(rotary), Rotary(rotary)));
  }
};
TORCH_MODULE(Encoder);

std::string path(const std::string& name) { return sdtest::fixture("failures/" + name); }

/// sha256 of each tensor PyTorch saved in fixture `name`, by key.
std::map<std::string, std::string> source_hashes(const std::string& name) {
  std::map<std::string, std::string> out;
  const nlohmann::json listed = sdtest::expected_listing("failures/" + name);  // kept: the loop walks into it
  for (const auto& t : listed["tensors"]) out[t["key"].get<std::string>()] = t["sha256"].get<std::string>();
  return out;
}

/// Every module key holds the bytes of the checkpoint tensor `source_of` names for it ("" = skip).
template <class F> void loaded_from(nn::Module& m, const std::string& name, F source_of) {
  const auto hashes = source_hashes(name);
  for (const auto& t : statedict::detail::module_targets(m)) {
    const std::string src = source_of(t.key);
    if (src.empty()) continue;
    INFO(t.key << " <- " << src);
    REQUIRE(hashes.count(src) == 1);
    CHECK(statedict::tensor_sha256(t.tensor) == hashes.at(src));
  }
}

/// The report's first suggestion passes its dry run, is no bare ignore of an untrained parameter,
/// and, followed, loads.
template <class M> statedict::LoadReport follow_first(M& model, const std::string& name, const std::string& expected_option) {
  const auto plain = statedict::diff(model, path(name));
  REQUIRE_FALSE(plain.ok());
  REQUIRE_FALSE(plain.suggestions.empty());
  const statedict::Suggestion& first = plain.suggestions.front();
  INFO(first.text);
  CHECK(first.option == expected_option);
  REQUIRE(first.passes);
  REQUIRE(first.options);
  const auto r = statedict::load(model, path(name), *first.options);
  INFO(r);
  REQUIRE(r.ok());
  return plain;
}

bool mentions(const statedict::LoadReport& r, const std::string& what) {
  for (const auto& s : r.suggestions)
    if (s.text.find(what) != std::string::npos || s.option.find(what) != std::string::npos) return true;
  return false;
}

}  // namespace fsug

using namespace fsug;

TEST_CASE("tied weights: a file without lm_head.weight gets tie(), never an ignore that leaves the head untrained", "[failures][tie]") {
  Gpt gpt(false);
  const auto plain = follow_first(gpt, "gpt_tied.pt", "tie(\"lm_head.weight\", \"transformer.wte.weight\")");
  for (const auto& s : plain.suggestions) CHECK(s.option.find("ignore_missing") == std::string::npos);
  loaded_from(*gpt, "gpt_tied.pt", [](const std::string& k) { return k == "lm_head.weight" ? std::string("transformer.wte.weight") : k; });
  // The report says which rule filled it.
  const auto r = statedict::diff(gpt, path("gpt_tied.pt"), *plain.suggestions.front().options);
  const auto head = std::find_if(r.matched.begin(), r.matched.end(), [](const auto& m) { return m.target == "lm_head.weight"; });
  REQUIRE(head != r.matched.end());
  CHECK(head->source == "transformer.wte.weight");
  CHECK(head->rule == "tie(\"lm_head.weight\", \"transformer.wte.weight\")");
  // zero_copy: the head gets bytes of its own, so the two parameters stay two.
  Gpt again(false);
  REQUIRE(statedict::load(again, path("gpt_tied.pt"), LoadOptions{}.zero_copy().tie("lm_head.weight", "transformer.wte.weight")).ok());
  {
    torch::NoGradGuard no_grad;
    again->lm_head->weight.add_(1.0);
  }
  CHECK_FALSE(again->lm_head->weight.equal(again->transformer->wte->weight));
  // A tie naming keys that are not there is said, and fills nothing.
  const auto typo = statedict::diff(gpt, path("gpt_tied.pt"), LoadOptions{}.tie("lm_head.weight", "transformer.wte.weights"));
  CHECK_FALSE(typo.ok());
  CHECK(std::any_of(typo.warnings.begin(), typo.warnings.end(), [](const std::string& w) {
    return w.find("the checkpoint has no key \"transformer.wte.weights\"") != std::string::npos;
  }));
}

TEST_CASE("tied weights in the module: loading the embedding fills the head that shares its tensor", "[failures][tie]") {
  Gpt gpt(true);
  const auto r = statedict::load(gpt, path("gpt_tied.pt"));
  INFO(r);
  REQUIRE(r.ok());
  CHECK(r.missing.empty());
  const auto head = std::find_if(r.matched.begin(), r.matched.end(), [](const auto& m) { return m.target == "lm_head.weight"; });
  REQUIRE(head != r.matched.end());
  CHECK(head->rule.find("tied in the module") != std::string::npos);
  loaded_from(*gpt, "gpt_tied.pt", [](const std::string& k) { return k == "lm_head.weight" ? std::string("transformer.wte.weight") : k; });
}

TEST_CASE("EMA and raw copies side by side (timm): each named with the option that loads it; auto_select says its rule",
          "[failures][ema]") {
  TinyNet net;
  const auto plain = statedict::diff(net, path("timm_ema.pt"));
  REQUIRE_FALSE(plain.ok());
  for (const auto& s : plain.suggestions) CHECK(s.text.find("the most of any") == std::string::npos);
  bool raw = false, ema = false;
  for (const auto& s : plain.suggestions) {
    if (!s.passes || !s.options) continue;
    const bool is_ema = s.option.find("state_dict_ema") != std::string::npos;
    CHECK(s.text.find("equally") != std::string::npos);
    TinyNet fresh;
    REQUIRE(statedict::load(fresh, path("timm_ema.pt"), *s.options).ok());
    loaded_from(*fresh, "timm_ema.pt", [&](const std::string& k) { return (is_ema ? "state_dict_ema." : "state_dict.") + k; });
    (is_ema ? ema : raw) = true;
  }
  CHECK(raw);
  CHECK(ema);
  CHECK(source_hashes("timm_ema.pt").at("state_dict.fc1.weight") != source_hashes("timm_ema.pt").at("state_dict_ema.fc1.weight"));
  const auto autod = statedict::load(net, path("timm_ema.pt"), LoadOptions{}.auto_select());
  REQUIRE(autod.ok());
  CHECK(autod.selected == "state_dict");
  CHECK(autod.selected_why.find("the most of any") == std::string::npos);
  CHECK(autod.selected_why.find("fit equally") != std::string::npos);
  CHECK(autod.selected_why.find("select(\"state_dict_ema\")") != std::string::npos);
  loaded_from(*net, "timm_ema.pt", [](const std::string& k) { return "state_dict." + k; });
}

TEST_CASE("EMA copy beside the model in one state_dict (Lightning): each prefix named with the option that loads it", "[failures][ema]") {
  TinyNet net;
  const auto plain = statedict::diff(net, path("lightning_ema.pt"));
  REQUIRE_FALSE(plain.ok());
  REQUIRE(plain.suggestions.front().passes);
  bool raw = false, ema = false;
  for (const auto& s : plain.suggestions) {
    if (!s.passes || !s.options) continue;
    const bool is_ema = s.option.find("model_ema.module.") != std::string::npos;
    TinyNet fresh;
    REQUIRE(statedict::load(fresh, path("lightning_ema.pt"), *s.options).ok());
    loaded_from(*fresh, "lightning_ema.pt",
                [&](const std::string& k) { return (is_ema ? "state_dict.model_ema.module." : "state_dict.model.") + k; });
    (is_ema ? ema : raw) = true;
  }
  CHECK(raw);
  CHECK(ema);
  // auto_prefix takes one copy by its documented rule, and says how to take the other.
  const auto autod = statedict::diff(net, path("lightning_ema.pt"), LoadOptions{}.select("state_dict").auto_prefix());
  CHECK(std::any_of(autod.warnings.begin(), autod.warnings.end(), [](const std::string& w) {
    return w.find("took strip_prefix(\"model.\")") != std::string::npos && w.find("submodule(\"model_ema.module.\")") != std::string::npos;
  }));
}

TEST_CASE("ignores cover exactly the keys listed: a stale position_ids, and no advice on a load that passes", "[failures][ignore]") {
  Encoder enc(false);
  follow_first(enc, "bert_stale.pt", "ignore_unexpected(\"embeddings.position_ids\")");
  loaded_from(*enc, "bert_stale.pt", [](const std::string& k) { return k; });
  // A missing num_batches_tracked is only listed: the load passes and no ignore is suggested.
  sdtest::TinyResNet resnet;
  const auto nbt = statedict::diff(resnet, sdtest::fixture("resnet_no_nbt.pt"));
  REQUIRE(nbt.ok());
  for (const auto& s : nbt.suggestions) CHECK(s.option.find("ignore_missing") == std::string::npos);
}

TEST_CASE("two small problems at once: a stale position_ids and a new inv_freq buffer, fixed together", "[failures][ignore]") {
  Encoder enc(true);
  const torch::Tensor inv_freq = enc->layers->ptr<RotaryImpl>(0)->inv_freq.clone();
  const auto plain = follow_first(enc, "bert_stale.pt", "ignore_missing(\"*.inv_freq\").ignore_unexpected(\"embeddings.position_ids\")");
  CHECK(plain.suggestions.front().text.find("keep the module's own value") != std::string::npos);
  loaded_from(*enc, "bert_stale.pt", [](const std::string& k) { return k.find("inv_freq") == std::string::npos ? k : std::string(); });
  CHECK(enc->layers->ptr<RotaryImpl>(0)->inv_freq.equal(inv_freq));
}

TEST_CASE("legacy LayerNorm gamma/beta: one family rename, never the LayerScale parameter really named gamma", "[failures][rename]") {
  ScaledNet net;
  const auto plain = follow_first(net, "layernorm_gamma.pt", "legacy_names()");
  CHECK_FALSE(mentions(plain, "norm.gamma$\", \"blocks.0.norm.bias"));
  loaded_from(*net, "layernorm_gamma.pt", [](std::string k) {
    if (k.find(".ls.") != std::string::npos) return k;
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"norm.weight", "norm.gamma"}, {"norm.bias", "norm.beta"}})
      if (k.size() >= from.size() && k.compare(k.size() - from.size(), from.size(), from) == 0)
        return k.substr(0, k.size() - from.size()) + to;
    return k;
  });
}

TEST_CASE("wrapper segments inside keys: activation checkpointing, FSDP and a compiled submodule", "[failures][segment]") {
  const auto unwrapped = [](std::string k) {
    for (const std::string seg : {"_checkpoint_wrapped_module.", "_fsdp_wrapped_module.", "_orig_mod."})
      for (auto at = k.find(seg); at != std::string::npos; at = k.find(seg)) k.erase(at, seg.size());
    return k;
  };
  Layers a;
  follow_first(a, "checkpoint_wrapped.pt", "strip_segment(\"_checkpoint_wrapped_module.\")");
  const auto wrapped_key = [](const std::string& k) {
    return k.rfind("layers.", 0) == 0 ? k.substr(0, 9) + "_checkpoint_wrapped_module." + k.substr(9) : k;
  };
  loaded_from(*a, "checkpoint_wrapped.pt", wrapped_key);
  CHECK(unwrapped(wrapped_key("layers.1.mlp.bias")) == "layers.1.mlp.bias");
  Layers b;
  follow_first(b, "fsdp_wrapped.pt", "strip_segment(\"_fsdp_wrapped_module.\").strip_segment(\"_orig_mod.\")");
  loaded_from(*b, "fsdp_wrapped.pt", [](const std::string& k) {
    if (k.rfind("layers.", 0) == 0) return k.substr(0, 9) + "_fsdp_wrapped_module." + k.substr(9);
    if (k.rfind("head.", 0) == 0) return "head._orig_mod." + k.substr(5);
    return k;
  });
}

TEST_CASE("the options of these suggestions go through the recipe file and load the same bytes", "[failures][recipe]") {
  // tie, rename families and strip_segment are entries of the recipe file like the key rules.
  const auto o = LoadOptions{}.strip_segment("_checkpoint_wrapped_module.").legacy_names().tie("lm_head.weight", "transformer.wte.weight");
  const std::string text = o.to_json();
  CHECK(text.find("\"ties\"") != std::string::npos);
  CHECK(text.find("\"rename_families\"") != std::string::npos);
  CHECK(text.find("\"strip_segment\"") != std::string::npos);
  const auto back = LoadOptions::from_json(text);
  CHECK(back.to_json() == text);
  REQUIRE(back.ties().size() == 1);
  CHECK(back.ties()[0].checkpoint_key == "transformer.wte.weight");
  CHECK(back.rename_families().size() == o.rename_families().size());
  // The tie suggestion, written and read back, loads the head from the embedding.
  Gpt gpt(false);
  const auto plain = statedict::diff(gpt, path("gpt_tied.pt"));
  REQUIRE_FALSE(plain.suggestions.empty());
  const auto file = (std::filesystem::temp_directory_path() / "statedict_tie_recipe.json").string();
  plain.suggestions.front().options->to_json_file(file);
  const auto r = statedict::load(gpt, path("gpt_tied.pt"), LoadOptions::from_json_file(file));
  std::filesystem::remove(file);
  INFO(r);
  REQUIRE(r.ok());
  loaded_from(*gpt, "gpt_tied.pt", [](const std::string& k) { return k == "lm_head.weight" ? std::string("transformer.wte.weight") : k; });
  // A tie without its checkpoint key is refused with the place.
  const std::string bad = R"({"statedict_options": 1, "ties": [{"module_key": "lm_head.weight"}]})";
  CHECK(sdtest::error_text([&] { LoadOptions::from_json(bad); }).find("/ties/0") != std::string::npos);
}
