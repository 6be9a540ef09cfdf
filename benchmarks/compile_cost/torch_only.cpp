// Baseline: the application without statedict, loading weights as LibTorch allows.
#include "net.hpp"

int run(const std::string& path) {
  Net net;
  torch::serialize::InputArchive archive;
  archive.load_from(path);
  net->load(archive);
  return static_cast<int>(net->forward(torch::zeros({1, 3, 8, 8})).argmax().item<int64_t>());
}
