// Loads a DataParallel checkpoint into a small model: what an app using the package does.
#include <statedict/statedict.hpp>
#include <torch/torch.h>

#include <iostream>

struct Net : torch::nn::Module {
  Net() { fc = register_module("fc", torch::nn::Linear(8, 10)); }
  torch::nn::Linear fc{nullptr};
};

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  Net net;
  auto report = statedict::load(net, argv[1], statedict::LoadOptions{}.auto_prefix().ignore_unexpected("*"));
  std::cout << report;
#ifdef STATEDICT_SEPARATE_COMPILATION
  std::cout << "statedict::compiled\n";
#endif
  std::cout << "statedict " << statedict::version_string << ", fc.weight sum " << net.fc->weight.sum().item<float>() << "\n";
  // to_json() through the umbrella header, in both modes (compiled, report.hpp alone declares it).
  if (report.to_json()["loaded"].get<int>() != 2) return 1;
  return report.ok() && report.loaded == 2 ? 0 : 1;
}
