// PT2 archives: the input's first byte picks a JSON config of a real archive PyTorch 2.14 wrote
// (tests/fixtures/torch214), the rest replaces it: export_mlp.pt2's weights config or constants
// config, or aoti_pickle.pt2's weights_config.json. The archive is rewritten around it and read.
#include "fuzz_common.hpp"

#include <statedict/detail/write/writer.hpp>

#include <map>

namespace {
struct Base {
  std::string fixture, record;  // record below the archive's top folder
};
const Base bases[] = {{"export_mlp.pt2", "data/weights/model_weights_config.json"},
                      {"export_mlp.pt2", "data/constants/model_constants_config.json"},
                      {"aoti_pickle.pt2", "data/aotinductor/model/weights_config.json"}};

/// The fixture's entries, read once: name -> bytes.
const std::vector<std::pair<std::string, std::string>>& entries_of(const std::string& fixture) {
  static std::map<std::string, std::vector<std::pair<std::string, std::string>>> cache;
  auto it = cache.find(fixture);
  if (it != cache.end()) return it->second;
  statedict::detail::ZipArchive z(statedict::detail::MappedFile::open(std::string(STATEDICT_FIXTURES) + "/torch214/" + fixture));
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : z.entries()) out.emplace_back(e.name, z.read(e));
  return cache.emplace(fixture, std::move(out)).first->second;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Base& base = bases[data[0] % 3];
  const std::string path = fuzz::scratch("pt2.pt2");
  {
    statedict::detail::AtomicFile out(path);
    statedict::detail::ZipWriter zip(out);
    for (const auto& [name, bytes] : entries_of(base.fixture)) {
      const bool replaced =
          name.size() > base.record.size() && name.compare(name.size() - base.record.size(), base.record.size(), base.record) == 0;
      if (replaced)
        zip.add(name, data + 1, size - 1);
      else
        zip.add(name, bytes.data(), bytes.size());
    }
    zip.finish();
    out.commit();
  }
  fuzz::exercise(path);
  return 0;
}
