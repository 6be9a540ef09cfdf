// The unpickler alone, on raw bytes (also the legacy format's pickles).
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  statedict::detail::PickleState st;
  statedict::ReadOptions opts;
  try {
    statedict::detail::Unpickler up(st, opts, "fuzz", "data.pkl", data, size, 0, size > 0 && (data[0] & 1));
    up.run();
  } catch (const statedict::Error&) {}
  return 0;
}
