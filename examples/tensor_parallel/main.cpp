// Tensor parallelism in C++: an MLP trained with its layers split over 2 ranks (w1 column-parallel,
// w2 row-parallel) and saved with torch.distributed.checkpoint. Each rank loads only its slices
// with LoadOptions::shard; the ranks' partial outputs, summed, are the whole model's output.
// Here both ranks run in one process, one after the other; in a deployment each is its own process.
//   tensor_parallel CHECKPOINT_FOLDER EXPECTED_JSON [WORLD]
#include <statedict/statedict.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <fstream>
#include <iostream>

// One rank's part of Linear(8, 16) -> ReLU -> Linear(16, 8).
struct MlpShard : torch::nn::Module {
  torch::nn::Linear w1{nullptr}, w2{nullptr};
  MlpShard(std::int64_t in, std::int64_t hidden_part, std::int64_t out)
      : w1(register_module("w1", torch::nn::Linear(in, hidden_part))), w2(register_module("w2", torch::nn::Linear(hidden_part, out))) {}
  // Column-parallel then row-parallel: this rank's hidden units, then their share of the output.
  // The row-parallel layer's bias (replicated) is added once, after the ranks' outputs are summed.
  torch::Tensor partial(const torch::Tensor& x) { return torch::relu(w1(x)).matmul(w2->weight.t()); }
};

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tensor_parallel CHECKPOINT_FOLDER EXPECTED_JSON [WORLD]\n";
    return 2;
  }
  const std::int64_t world = argc > 3 ? std::stoll(argv[3]) : 2;
  std::ifstream in(argv[2]);
  const auto expected = nlohmann::json::parse(in);
  auto rows = [](const nlohmann::json& j) {
    std::vector<torch::Tensor> r;
    for (const auto& row : j) r.push_back(torch::tensor(row.get<std::vector<float>>()));
    return torch::stack(r);
  };
  const torch::Tensor x = rows(expected["x"]), want = rows(expected["y"]);
  torch::NoGradGuard no_grad;
  torch::Tensor sum = torch::zeros_like(want), bias;
  for (std::int64_t rank = 0; rank < world; ++rank) {
    MlpShard m(8, 16 / world, 8);
    const auto options = statedict::LoadOptions{}
                             .shard("w1.*", 0, rank, world)        // column-parallel: rows of w1 and of its bias
                             .shard("w2.weight", 1, rank, world);  // row-parallel: columns of w2
    const statedict::LoadReport r = statedict::load(m, argv[1], options);
    std::cout << "rank " << rank << ": " << r;
    for (const auto& k : r.matched) std::cout << "  " << k.target << " <- " << k.rule << "\n";
    if (!r.ok()) return 1;
    sum += m.partial(x);
    bias = m.w2->bias;
  }
  const torch::Tensor y = sum + bias;
  const double diff = (y - want).abs().max().item<double>();
  std::cout << "sum of " << world << " ranks' outputs vs the whole model's: max abs difference " << diff << "\n";
  return diff <= 1e-5 ? 0 : 1;
}
