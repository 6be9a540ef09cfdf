// The library's answer to the used/unused/missing key check people paste into training scripts:
// a dry run that counts, lists a few of each, and fails when nothing matched.
//
//   check_keys CHECKPOINT [--select PATH] [--auto]
#include "../resnet18/resnet.hpp"

#include <statedict/statedict.hpp>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: check_keys CHECKPOINT [--select PATH] [--auto]\n";
    return 2;
  }
  statedict::LoadOptions options = statedict::LoadOptions{}.lenient();
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--auto")
      options.auto_select().auto_prefix();
    else if (a == "--select" && i + 1 < argc)
      options.select(argv[++i]);
  }
  example::ResNet18 model;
  const statedict::LoadReport r = statedict::diff(model, argv[1], options);  // never touches the model
  if (!r.error.empty()) {
    std::cout << r;
    return 2;
  }
  auto show = [](const char* what, std::size_t n, const std::vector<std::string>& keys) {
    std::cout << what << ": " << n;
    for (std::size_t i = 0; i < keys.size() && i < 3; ++i) std::cout << (i ? ", " : "  e.g. ") << keys[i];
    std::cout << "\n";
  };
  std::vector<std::string> used;
  for (const auto& m : r.matched) used.push_back(m.source);
  show("used keys", r.matched.size(), used);
  show("unused keys", r.unexpected.size(), r.unexpected);
  show("missing keys", r.missing.size(), r.missing);
  for (const auto& s : r.suggestions) std::cout << "suggestion: " << s.text << "\n";
  if (r.matched.empty()) {
    std::cout << "nothing matched: this checkpoint does not fit the model\n";
    return 1;
  }
  return 0;
}
