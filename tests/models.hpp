#pragma once
// C++ modules that mirror the Python models in fixtures/generate.py, key for key.
#include <torch/torch.h>

namespace sdtest {

struct BasicBlockImpl : torch::nn::Module {
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, bool with_downsample, bool track_stats = true) {
    conv1 =
        register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(inplanes, planes, 3).stride(stride).padding(1).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(planes).track_running_stats(track_stats)));
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(planes, planes, 3).padding(1).bias(false)));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(planes).track_running_stats(track_stats)));
    if (with_downsample)
      downsample = register_module(
          "downsample",
          torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(inplanes, planes, 1).stride(stride).bias(false)),
                                torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(planes).track_running_stats(track_stats))));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto out = torch::relu(bn1(conv1(x)));
    out = bn2(conv2(out));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

/// torchvision's ResNet-18 layout with few channels (TinyResNet in generate.py).
struct TinyResNetImpl : torch::nn::Module {
  explicit TinyResNetImpl(int64_t num_classes = 10, bool track_stats = true) {
    const int64_t w[4] = {4, 8, 8, 8};
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, w[0], 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(w[0]).track_running_stats(track_stats)));
    int64_t inplanes = w[0];
    for (int l = 0; l < 4; ++l) {
      torch::nn::Sequential layer;
      const int64_t stride = l == 0 ? 1 : 2;
      layer->push_back(BasicBlock(inplanes, w[l], stride, stride != 1 || inplanes != w[l], track_stats));
      layer->push_back(BasicBlock(w[l], w[l], 1, false, track_stats));
      inplanes = w[l];
      layers.push_back(register_module("layer" + std::to_string(l + 1), layer));
    }
    fc = register_module("fc", torch::nn::Linear(w[3], num_classes));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(bn1(conv1(x))), 3, 2, 1);
    for (auto& l : layers) x = l->forward(x);
    return fc(torch::flatten(torch::adaptive_avg_pool2d(x, {1, 1}), 1));
  }
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  std::vector<torch::nn::Sequential> layers;
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(TinyResNet);

/// HF BERT naming (TinyBert in generate.py).
struct TinyBertImpl : torch::nn::Module {
  TinyBertImpl(int64_t vocab = 30, int64_t h = 8, int64_t n_layers = 2, int64_t positions = 16) {
    auto emb = std::make_shared<torch::nn::Module>();
    emb->register_module("word_embeddings", torch::nn::Embedding(vocab, h));
    emb->register_module("position_embeddings", torch::nn::Embedding(positions, h));
    emb->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({h})));
    emb->register_buffer("position_ids", torch::arange(positions).expand({1, -1}).contiguous());
    register_module("embeddings", emb);
    auto encoder = std::make_shared<torch::nn::Module>();
    torch::nn::ModuleList layer;
    for (int64_t i = 0; i < n_layers; ++i) {
      auto bl = std::make_shared<torch::nn::Module>();
      auto att = std::make_shared<torch::nn::Module>();
      auto self = std::make_shared<torch::nn::Module>();
      self->register_module("query", torch::nn::Linear(h, h));
      self->register_module("key", torch::nn::Linear(h, h));
      self->register_module("value", torch::nn::Linear(h, h));
      auto out = std::make_shared<torch::nn::Module>();
      out->register_module("dense", torch::nn::Linear(h, h));
      out->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({h})));
      att->register_module("self", self);
      att->register_module("output", out);
      bl->register_module("attention", att);
      layer->push_back(bl);
    }
    encoder->register_module("layer", layer);
    register_module("encoder", encoder);
  }
};
TORCH_MODULE(TinyBert);

/// A model that holds the BERT under "bert." (as task heads do).
struct BertClassifierImpl : torch::nn::Module {
  BertClassifierImpl() {
    bert = register_module("bert", TinyBert());
    classifier = register_module("classifier", torch::nn::Linear(8, 2));
  }
  TinyBert bert{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(BertClassifier);

}  // namespace sdtest
