// zstd frames, twice: the decoder alone with a bound taken from the input's first two bytes, then as
// rank 1's `.distcp` of tests/fixtures/torch214/dcp_zstd_ranks (every item a zstd frame), next to
// the real `.metadata` and rank 0's file.
#include "fuzz_common.hpp"

#include <filesystem>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch("zstd");
    std::filesystem::create_directories(d);
    for (const char* name : {".metadata", "__0_0.distcp"})
      std::filesystem::copy_file(std::string(STATEDICT_FIXTURES) + "/torch214/dcp_zstd_ranks/" + name, d + "/" + name,
                                 std::filesystem::copy_options::overwrite_existing);
    return d;
  }();
  if (size >= 2) {
    std::vector<std::uint8_t> out(static_cast<std::size_t>(data[0]) << 8 | data[1]);
    try {
      const std::size_t n = statedict::detail::zstd_decode(data + 2, size - 2, out.data(), out.size(), "input", "frame");
      if (n > out.size()) __builtin_trap();  // the bound is the contract
    } catch (const statedict::Error&) {}
  }
  std::ofstream(dir + "/__1_0.distcp", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  fuzz::exercise(dir);
  return 0;
}
