// The program the fault sweep (sweep.sh) runs under fault_shim: one load or save, then a check of
// what it left. Exit 0: success with the right values; 1: a clean failure (a statedict error that
// names the file, the module unchanged or its written keys reported); 3: a broken promise.
//   statedict_fault_driver dump CHECKPOINT         print the loaded module's tensor hashes (no faults)
//   statedict_fault_driver load CHECKPOINT HASHES [THREADS]
//                                                  load into the model (on THREADS threads, default
//                                                  1) and check against HASHES
//   statedict_fault_driver save OUT                save a fixed model to OUT
#include <statedict/statedict.hpp>

#include "../models.hpp"

#include <fstream>
#include <iostream>
#include <map>

namespace {

std::map<std::string, std::string> hashes(torch::nn::Module& m) {
  std::map<std::string, std::string> out;
  for (const auto& t : statedict::state_dict(m)) out[t.key] = statedict::tensor_sha256(t.tensor);
  return out;
}

int load(const std::string& path, const std::string& expected_path, int threads) {
  std::map<std::string, std::string> expected;
  std::ifstream in(expected_path);
  for (std::string k, h; in >> k >> h;) expected[k] = h;
  sdtest::TinyResNet net;
  const auto before = hashes(*net);
  const statedict::LoadReport r = statedict::load(net, path, statedict::LoadOptions{}.threads(threads));
  const auto after = hashes(*net);
  if (r.ok()) {
    if (after == expected) return 0;
    std::cout << "BROKEN: the load reported ok with other values\n" << r;
    return 3;
  }
  std::cout << r;
  if (r.error.find(path) == std::string::npos) {
    std::cout << "BROKEN: the error does not name the file\n";
    return 3;
  }
  if (r.written.empty() && after != before) {
    std::cout << "BROKEN: a failed load that wrote nothing changed the module\n";
    return 3;
  }
  std::size_t changed = 0;
  for (const auto& [k, h] : after) changed += before.at(k) != h;
  if (changed > r.written.size()) {
    std::cout << "BROKEN: " << changed << " tensors changed, " << r.written.size() << " reported written\n";
    return 3;
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "dump" && argc == 3) {
      sdtest::TinyResNet net;
      statedict::load(net, argv[2]).throw_if_error();
      for (const auto& [k, h] : hashes(*net)) std::cout << k << " " << h << "\n";
      return 0;
    }
    if (mode == "load" && (argc == 4 || argc == 5)) return load(argv[2], argv[3], argc == 5 ? std::stoi(argv[4]) : 1);
    if (mode == "save" && argc == 3) {
      torch::manual_seed(7);
      sdtest::TinyResNet net;
      statedict::save(net, argv[2]);
      return 0;
    }
  } catch (const statedict::Error& e) {
    std::cout << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: statedict_fault_driver dump CHECKPOINT | load CHECKPOINT HASHES [THREADS] | save OUT\n";
  return 2;
}
