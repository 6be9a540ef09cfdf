// A Hugging Face GPT-2 checkpoint (Conv1D weights stored [in, out], q/k/v fused in c_attn) loaded
// into a LibTorch GPT written the plain way: nn::Linear layers and separate q, k and v. The layout
// transforms (docs/transforms.md) say how the two differ; the options come from a recipe file that
// `statedict diff` wrote, and the logits are compared with the ones PyTorch computed.
//   gpt2 CHECKPOINT INPUT LOGITS OPTIONS_JSON      (tests/fixtures/generate_transforms.py writes the first three)
//   gpt2 --save-model MODEL.pt                     (the port's own state dict: the TARGET of statedict diff)
// The recipe examples/gpt2/gpt2_options.json was written by (one command line):
//   statedict diff MODEL.pt gpt2_tiny.pt --transpose 'h.*.attn.c_attn.weight'
//     --split 'h.*.attn.c_attn.weight=h.*.attn.q.weight,h.*.attn.k.weight,h.*.attn.v.weight@0'
//     --split 'h.*.attn.c_attn.bias=h.*.attn.q.bias,h.*.attn.k.bias,h.*.attn.v.bias@0'
//     --transpose 'h.*.attn.c_proj.weight' --transpose 'h.*.mlp.c_fc.weight' --transpose 'h.*.mlp.c_proj.weight'
//     --write-options gpt2_options.json
#include <statedict/statedict.hpp>

#include <torch/torch.h>

#include <cmath>
#include <iostream>

namespace nn = torch::nn;

constexpr std::int64_t kVocab = 40, kEmbd = 16, kPositions = 12, kLayers = 2, kHeads = 2;

struct AttentionImpl : nn::Module {
  nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, c_proj{nullptr};
  AttentionImpl()
      : q(register_module("q", nn::Linear(kEmbd, kEmbd))), k(register_module("k", nn::Linear(kEmbd, kEmbd))),
        v(register_module("v", nn::Linear(kEmbd, kEmbd))), c_proj(register_module("c_proj", nn::Linear(kEmbd, kEmbd))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    const std::int64_t n = x.size(0), d = kEmbd / kHeads;
    const auto heads = [&](const torch::Tensor& t) { return t.view({n, kHeads, d}).transpose(0, 1); };
    torch::Tensor att = heads(q(x)).matmul(heads(k(x)).transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
    att = att.masked_fill(torch::ones({n, n}, torch::kBool).triu(1), -INFINITY).softmax(-1);
    return c_proj(att.matmul(heads(v(x))).transpose(0, 1).reshape({n, kEmbd}));
  }
};
TORCH_MODULE(Attention);

struct MlpImpl : nn::Module {
  nn::Linear c_fc{nullptr}, c_proj{nullptr};
  MlpImpl()
      : c_fc(register_module("c_fc", nn::Linear(kEmbd, 4 * kEmbd))), c_proj(register_module("c_proj", nn::Linear(4 * kEmbd, kEmbd))) {}
  torch::Tensor forward(const torch::Tensor& x) { return c_proj(torch::gelu(c_fc(x), "tanh")); }
};
TORCH_MODULE(Mlp);

struct BlockImpl : nn::Module {
  nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Attention attn;
  Mlp mlp;
  BlockImpl()
      : ln_1(register_module("ln_1", nn::LayerNorm(nn::LayerNormOptions({kEmbd})))),
        ln_2(register_module("ln_2", nn::LayerNorm(nn::LayerNormOptions({kEmbd})))), attn(register_module("attn", Attention())),
        mlp(register_module("mlp", Mlp())) {}
  torch::Tensor forward(torch::Tensor x) {
    x = x + attn(ln_1(x));
    return x + mlp(ln_2(x));
  }
};
TORCH_MODULE(Block);

struct GptImpl : nn::Module {
  nn::Embedding wte{nullptr}, wpe{nullptr};
  nn::ModuleList h;
  nn::LayerNorm ln_f{nullptr};
  GptImpl()
      : wte(register_module("wte", nn::Embedding(kVocab, kEmbd))), wpe(register_module("wpe", nn::Embedding(kPositions, kEmbd))),
        h(register_module("h", nn::ModuleList())), ln_f(register_module("ln_f", nn::LayerNorm(nn::LayerNormOptions({kEmbd})))) {
    for (std::int64_t i = 0; i < kLayers; ++i) h->push_back(Block());
  }
  /// Logits for a sequence of token ids; the head is tied to the token embedding, as GPT-2's is.
  torch::Tensor forward(const torch::Tensor& ids) {
    torch::Tensor x = wte(ids) + wpe(torch::arange(ids.size(0)));
    for (const auto& block : *h) x = block->as<Block>()->forward(x);
    return ln_f(x).matmul(wte->weight.t());
  }
};
TORCH_MODULE(Gpt);

int main(int argc, char** argv) {
  Gpt model;
  if (argc == 3 && std::string(argv[1]) == "--save-model") {
    statedict::save(model, argv[2]);
    return 0;
  }
  if (argc != 5) {
    std::cerr << "usage: gpt2 CHECKPOINT INPUT LOGITS OPTIONS_JSON | gpt2 --save-model MODEL.pt\n";
    return 2;
  }
  const auto options = statedict::LoadOptions::from_json_file(argv[4]);
  const statedict::LoadReport r = statedict::load(model, argv[1], options);
  if (!r.ok()) {
    std::cerr << r;
    return 1;
  }
  for (const auto& m : r.matched)
    if (m.target.rfind("h.0.", 0) == 0 && m.rule != "exact") std::cout << m.target << " <- " << m.source << ": " << m.rule << "\n";
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = statedict::read(argv[2]).at("ids").tensor();
  const torch::Tensor want = statedict::read(argv[3]).at("logits").tensor();
  const torch::Tensor got = model->forward(ids);
  const double diff = (got - want).abs().max().item<double>();
  std::cout << "loaded " << r.loaded << " of " << r.module_tensors << " tensors; logits " << got.sizes()
            << ", largest difference from PyTorch's: " << diff << "\n";
  return diff < 1e-5 ? 0 : 1;
}
