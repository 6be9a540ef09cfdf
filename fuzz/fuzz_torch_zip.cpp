// The zip container and everything inside a torch.save file (records, pickle, storages).
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::exercise(fuzz::write("input.pt", data, size));
  return 0;
}
