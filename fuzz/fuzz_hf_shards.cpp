// The sharded/ folder of a Hugging Face folder DCP wrote (PyTorch 2.14, save_distributed): the input
// is one rank's shard (safetensors with DCP_SHARDING_INFO) beside the real other three of
// tests/fixtures/torch214/hf_consolidated/sharded; no consolidated files, so the shards are assembled.
#include "fuzz_common.hpp"

#include <filesystem>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch("hf");
    std::filesystem::create_directories(d + "/sharded");
    for (const char* name : {"shard-00001-model-00001-of-00002.safetensors", "shard-00001-model-00002-of-00002.safetensors",
                             "shard-00002-model-00002-of-00002.safetensors"})
      std::filesystem::copy_file(std::string(STATEDICT_FIXTURES) + "/torch214/hf_consolidated/sharded/" + name, d + "/sharded/" + name,
                                 std::filesystem::copy_options::overwrite_existing);
    return d;
  }();
  std::ofstream(dir + "/sharded/shard-00002-model-00001-of-00002.safetensors", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  fuzz::exercise(dir);
  return 0;
}
