// A program built with separate compilation (as a user who copies statedict's headers into the tree
// would build it): every unit is compiled with STATEDICT_SEPARATE_COMPILATION, and only
// statedict_src.cpp includes <statedict/src.hpp>. This unit compiles declarations: it loads a
// DataParallel checkpoint written by PyTorch and compares each loaded tensor's bytes with the listing
// generate.py wrote for it, then reads a TorchScript archive (src.hpp covers <statedict/jit.hpp>).
// Without statedict_src.cpp it does not link (the test separate_without_src_fails_to_link).
#include <statedict/inspect.hpp>
#include <statedict/load.hpp>

#include "../models.hpp"

#include <nlohmann/json.hpp>

#include "../program.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

static_assert(STATEDICT_DEFINITIONS == 0, "units other than the one including <statedict/src.hpp> compile declarations only");

using sdtest::check;

int main(int argc, char** argv) {
  const std::string dir = sdtest::fixtures_dir(argc, argv);
  sdtest::TinyResNet model;
  const statedict::LoadReport r = statedict::load(model, dir + "/resnet_dataparallel.pt", statedict::LoadOptions().auto_prefix(true));
  std::cout << r;
  check(r.ok() && r.loaded == r.module_tensors && r.loaded > 0,
        "the DataParallel checkpoint loads: " + std::to_string(r.loaded) + " tensors");

  // generate.py's listing of the file (keys as saved, "module." first): the bytes PyTorch saved.
  std::ifstream in(dir + "/expected/resnet_dataparallel.pt.json");
  const auto listing = nlohmann::json::parse(in);
  std::map<std::string, std::string> expected;
  for (const auto& t : listing.at("tensors")) expected[t.at("key").get<std::string>()] = t.at("sha256").get<std::string>();
  std::size_t same = 0, compared = 0;
  for (const auto& p : model->named_parameters(/*recurse=*/true)) {
    ++compared;
    same += expected["module." + p.key()] == statedict::tensor_sha256(p.value()) ? 1 : 0;
  }
  for (const auto& b : model->named_buffers(/*recurse=*/true)) {
    ++compared;
    same += expected["module." + b.key()] == statedict::tensor_sha256(b.value()) ? 1 : 0;
  }
  check(compared == expected.size() && same == compared, std::to_string(same) + " of " + std::to_string(compared) +
                                                             " loaded tensors hold the bytes PyTorch saved (" +
                                                             std::to_string(expected.size()) + " in the file)");

  const statedict::Checkpoint script = statedict::read(dir + "/resnet_script.pt");
  check(script.format() == statedict::Format::torchscript && !script.tensors().empty(),
        "a TorchScript archive reads: " + std::to_string(script.tensors().size()) + " tensors");
  return sdtest::exit_status();
}
