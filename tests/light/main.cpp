// A unit that includes only <statedict/load.hpp>, as most applications will: it reads and loads
// checkpoints without compiling the TorchScript reader, and a TorchScript archive read here fails
// with format.torchscript naming the header that reads it. (No other unit of this program includes
// <statedict/jit.hpp>, which would turn TorchScript reading on for the whole program.)
#include <statedict/load.hpp>

#include "../models.hpp"

#include "../program.hpp"

#include <cstdio>
#include <string>

using sdtest::check;

int main(int argc, char** argv) {
  const std::string dir = sdtest::fixtures_dir(argc, argv);
  sdtest::TinyResNet model;
  const statedict::LoadReport r = statedict::load(model, dir + "/resnet_dataparallel.pt", statedict::LoadOptions().auto_prefix(true));
  check(r.ok() && r.loaded == r.module_tensors && r.loaded > 0,
        "a DataParallel checkpoint loads: " + std::to_string(r.loaded) + " of " + std::to_string(r.module_tensors) + " " + r.error);

  bool refused = false;
  try {
    statedict::read(dir + "/resnet_script.pt");
  } catch (const statedict::Error& e) {
    refused = e.id() == "format.torchscript" && std::string(e.what()).find("<statedict/jit.hpp>") != std::string::npos &&
              e.file().find("resnet_script.pt") != std::string::npos;
    std::printf("%s\n", e.what());
  }
  check(refused, "a TorchScript archive is refused with format.torchscript, naming the header that reads it");
  const statedict::LoadReport rs = statedict::load(model, dir + "/resnet_script.pt");
  check(!rs.ok() && rs.error_id == "format.torchscript" && !rs.applied, "load() reports it the same way and changes nothing");
  return sdtest::exit_status();
}
