// A DCP folder in the safetensors format (PyTorch 2.14): the input is rank 1's `.distcp` (its
// safetensors header, DCP_SHARDING_INFO and tensors), next to the real `.metadata` and rank 0's
// file of tests/fixtures/torch214/dcp_st_ranks.
#include "fuzz_common.hpp"

#include <filesystem>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch("dcp_st");
    std::filesystem::create_directories(d);
    for (const char* name : {".metadata", "__0_0.distcp"})
      std::filesystem::copy_file(std::string(STATEDICT_FIXTURES) + "/torch214/dcp_st_ranks/" + name, d + "/" + name,
                                 std::filesystem::copy_options::overwrite_existing);
    return d;
  }();
  std::ofstream(dir + "/__1_0.distcp", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  fuzz::exercise(dir);
  return 0;
}
