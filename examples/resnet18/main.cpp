// torchvision's ResNet-18, trained with nn.DataParallel in Python, loaded into the same network in
// C++: the report before and after auto_prefix(), then the logits compared with Python's.
//
//   resnet18 CHECKPOINT [EXPECTED.json]
#include "resnet.hpp"

#include <statedict/statedict.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: resnet18 CHECKPOINT [EXPECTED.json]\n";
    return 2;
  }
  example::ResNet18 model;
  const statedict::Checkpoint ck = statedict::read(argv[1]);

  std::cout << "=== statedict::load(model, \"" << argv[1] << "\")\n";
  const auto plain = statedict::load(model, ck);
  std::cout << plain << "\n";

  std::cout << "=== statedict::load(model, \"" << argv[1] << "\", LoadOptions{}.auto_prefix())\n";
  const auto fixed = statedict::load(model, ck, statedict::LoadOptions{}.auto_prefix());
  std::cout << fixed;
  if (!fixed.ok()) return 1;
  std::cout << "rule used: " << fixed.matched.front().rule << "\n\n";

  model->eval();
  torch::NoGradGuard no_grad;
  const auto logits = model->forward(example::demo_input())[0];
  const auto top = logits.topk(3);
  std::cout << "top-3 classes for the demo input: ";
  for (int i = 0; i < 3; ++i)
    std::cout << std::get<1>(top)[i].item<int64_t>() << " (" << std::get<0>(top)[i].item<float>() << ")" << (i < 2 ? ", " : "\n");
  if (argc < 3) return 0;
  std::ifstream in(argv[2]);
  const auto want = torch::tensor(nlohmann::json::parse(in)["logits"].get<std::vector<float>>());
  const double err = (logits - want).abs().max().item<double>();
  std::cout << "largest difference from Python's logits: " << err << "\n";
  return err <= 1e-4 ? 0 : 1;
}
