// A sharded index: the input is the index JSON, next to two small valid shards.
#include "fuzz_common.hpp"

#include <filesystem>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch("index");
    std::filesystem::create_directories(d);
    const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    std::string shard(8, '\0');
    for (int i = 0; i < 8; ++i) shard[static_cast<std::size_t>(i)] = static_cast<char>(header.size() >> (8 * i));
    shard += header + std::string(8, '\0');
    for (const char* name : {"/s1.safetensors", "/s2.safetensors"}) std::ofstream(d + name, std::ios::binary) << shard;
    return d;
  }();
  const std::string p = dir + "/model.safetensors.index.json";
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  fuzz::exercise(p);
  return 0;
}
