// Plain pickles read as files (a detectron2 .pkl: pickle.dump of numpy arrays), through
// statedict::read's content detection: the input gets a PROTO prefix unless it starts with one.
#include "fuzz_common.hpp"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> buf;
  if (size < 2 || data[0] != 0x80) buf = {0x80, 0x04};  // the corpus holds whole pickles
  buf.insert(buf.end(), data, data + size);
  fuzz::exercise(fuzz::write("plain.pkl", buf.data(), buf.size()));
  return 0;
}
