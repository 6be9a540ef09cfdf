#pragma once
// What the README's snippets assume: the umbrella header and a model called Net.
#include <statedict/statedict.hpp>
#include <torch/torch.h>

#include <iostream>

struct NetImpl : torch::nn::Module {
  NetImpl() { fc = register_module("fc", torch::nn::Linear(8, 10)); }
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Net);
