#pragma once
// What the snippets of the README and docs/ assume: the umbrella header and a model called Net.
#include <statedict/statedict.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <thread>

struct NetImpl : torch::nn::Module {
  NetImpl() { fc = register_module("fc", torch::nn::Linear(8, 10)); }
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Net);

// The tensor-parallel example's module (examples/tensor_parallel/main.cpp).
struct MlpShard : torch::nn::Module {
  torch::nn::Linear w1{nullptr}, w2{nullptr};
  MlpShard(std::int64_t in, std::int64_t hidden_part, std::int64_t out)
      : w1(register_module("w1", torch::nn::Linear(in, hidden_part))), w2(register_module("w2", torch::nn::Linear(hidden_part, out))) {}
};
