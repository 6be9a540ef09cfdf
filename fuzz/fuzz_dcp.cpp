// A torch.distributed.checkpoint folder: the input is its `.metadata` pickle, next to the two real
// `.distcp` files PyTorch 2.6 wrote for tests/fixtures/torch2/dcp_2ranks.
#include "fuzz_common.hpp"

#include <filesystem>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch("dcp");
    std::filesystem::create_directories(d);
    for (const char* name : {"__0_0.distcp", "__1_0.distcp"})
      std::filesystem::copy_file(std::string(STATEDICT_FIXTURES) + "/torch2/dcp_2ranks/" + name, d + "/" + name,
                                 std::filesystem::copy_options::overwrite_existing);
    return d;
  }();
  std::ofstream(dir + "/.metadata", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  fuzz::exercise(dir);
  return 0;
}
