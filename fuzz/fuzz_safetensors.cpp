// safetensors header and layout validation.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::exercise(fuzz::write("input.safetensors", data, size));
  return 0;
}
