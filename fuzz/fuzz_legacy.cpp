// Legacy (pre-1.6) files: the input is appended to the legacy magic number so the legacy reader runs.
#include "fuzz_common.hpp"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
  std::vector<std::uint8_t> buf(magic, magic + sizeof magic);
  if (size >= sizeof magic && std::equal(magic, magic + 14, data)) buf.clear();  // the corpus holds whole legacy files
  buf.insert(buf.end(), data, data + size);
  fuzz::exercise(fuzz::write("legacy.pt", buf.data(), buf.size()));
  return 0;
}
