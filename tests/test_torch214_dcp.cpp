// What PyTorch 2.14's torch.distributed.checkpoint writes beside its classic DCP folders
// (tests/fixtures/generate_torch214_dcp.py, run in the sid root): the safetensors serialization
// format, the zstd stream transform, and Hugging Face folders with consolidation. Read whole, equal
// to what torch loads; chunks split across ranks assembled; every damaged variant refused naming the
// file and the place.
#include "helpers.hpp"

#if STATEDICT_HAVE_ZSTD
#include <zstd.h>
#endif

using sdtest::fixture;

namespace torch214_dcp {
namespace fs = std::filesystem;

const char* const folders[] = {"dcp_st_single",  "dcp_st_ranks",    "dcp_zstd_ranks", "dcp_zstd_st",
                               "dcp_zstd_twice", "hf_consolidated", "hf_sharded"};

nlohmann::json sorted_listing(const statedict::Checkpoint& ck) {
  nlohmann::json l = sdtest::listing(ck.root());
  std::sort(l.begin(), l.end(), [](const auto& a, const auto& b) { return a["key"] < b["key"]; });
  return l;
}

/// A copy of a fixture folder (with its sharded/ folder) to damage.
std::string copy_of(const std::string& name, const std::string& as) {
  const fs::path dst = sdtest::temp_path("t214_" + as);
  fs::remove_all(dst);
  fs::copy(fixture("torch214/" + name), dst, fs::copy_options::recursive);
  return dst.string();
}

/// Replaces the nth occurrence of `from` in a file by `to` (same length).
void patch(const std::string& path, const std::string& from, const std::string& to, int nth = 0) {
  REQUIRE(from.size() == to.size());
  std::string bytes = sdtest::read_bytes(path);
  std::size_t at = bytes.find(from);
  for (int i = 0; i < nth && at != std::string::npos; ++i) at = bytes.find(from, at + 1);
  REQUIRE(at != std::string::npos);
  bytes.replace(at, from.size(), to);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

struct Failure {
  std::string id, file, where, what;
};
Failure failure_of(const std::string& dir) {
  try {
    statedict::read(dir);
  } catch (const statedict::Error& e) { return {e.id(), e.file(), e.where(), e.what()}; }
  return {"read succeeded", "", "", ""};
}

}  // namespace torch214_dcp

using namespace torch214_dcp;

TEST_CASE("DCP and Hugging Face folders of torch 2.14 list the tensors, dtypes, shapes and bytes torch loads", "[dcp][torch214]") {
  for (const char* name : folders) {
    INFO(name);
    const auto expected = sdtest::expected_listing(std::string("torch214/") + name);
    const auto ck = statedict::read(fixture(std::string("torch214/") + name));
    CHECK(statedict::format_name(ck.format()) == expected["format"].get<std::string>());
    CHECK(sorted_listing(ck) == expected["tensors"]);
    if (expected["values"].contains("config")) {
      CHECK(ck.at("config.lr").as_double() == expected["values"]["config"]["lr"].get<double>());
      CHECK(ck.at("config.name").as_string() == expected["values"]["config"]["name"].get<std::string>());
    }
  }
  // One state dict, saved seven ways: the same bytes (the Hugging Face ones hold its floats only).
  const auto base = statedict::read(fixture("torch214/dcp_zstd_ranks"));
  for (const char* name : folders) {
    const auto ck = statedict::read(fixture(std::string("torch214/") + name));
    for (const auto& t : ck.tensors()) {
      INFO(name << " " << t.key);
      CHECK(t.tensor.equal(base.at(t.key).tensor()));
    }
  }
}

TEST_CASE("a tensor split over ranks in the safetensors format or zstd-compressed is assembled, and a rank's slice loads",
          "[dcp][torch214]") {
  struct Half : torch::nn::Module {
    torch::Tensor embed = register_parameter("embed", torch::zeros({5, 6}));
  };
  const auto whole = statedict::read(fixture("torch214/dcp_zstd_ranks")).at("embed.weight").tensor();
  for (const char* name : {"dcp_st_ranks", "dcp_zstd_ranks", "dcp_zstd_st", "hf_consolidated/sharded"}) {
    INFO(name);
    const auto ck = statedict::read(fixture(std::string("torch214/") + name));
    // embed.weight [10, 6] is two chunks of 5 rows, one per rank: listed lazily, assembled when used.
    const auto lazy = statedict::detail::lazy_tensors(ck.root());
    const auto it = std::find_if(lazy.begin(), lazy.end(), [](const auto& t) { return t.key == "embed.weight"; });
    REQUIRE(it != lazy.end());
    CHECK(it->lazy != nullptr);
    for (int rank = 0; rank < 2; ++rank) {
      Half half;
      const auto r = statedict::load(
          half, ck,
          statedict::LoadOptions{}.rename("^embed\\.weight$", "embed").unexpected(statedict::Policy::ignore).shard("embed", 0, rank, 2));
      INFO(r);
      CHECK(r.ok());
      CHECK(half.embed.equal(whole.narrow(0, 5 * rank, 5)));
    }
  }
}

TEST_CASE("a Hugging Face folder reads its consolidated files when complete, else its sharded/ folder", "[dcp][torch214][hf]") {
  const auto want = sorted_listing(statedict::read(fixture("torch214/hf_consolidated")));
  CHECK(statedict::read(fixture("torch214/hf_consolidated")).path() == fixture("torch214/hf_consolidated/model.safetensors.index.json"));
  {
    // Consolidation stopped before the second file: the ranks' shards, assembled, are the same tensors.
    const auto d = copy_of("hf_consolidated", "hf_partial");
    fs::remove(fs::path(d) / "model-00002-of-00002.safetensors");
    const auto ck = statedict::read(d);
    CHECK(ck.path() == (fs::path(d) / "sharded").string());
    CHECK(sorted_listing(ck) == want);
  }
  {
    // No consolidated files at all: the same.
    const auto d = copy_of("hf_consolidated", "hf_none");
    for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"})
      fs::remove(fs::path(d) / f);
    CHECK(sorted_listing(statedict::read(d)) == want);
    // Rank 1's shard of the first file missing: embed.weight's rows 0-4 are a gap, named with the
    // file that holds the rest.
    fs::remove(fs::path(d) / "sharded" / "shard-00001-model-00001-of-00002.safetensors");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "dcp.missing_chunk");
    CHECK(f.where == "embed.weight");
    CHECK(f.what.find("shard-00002-model-00001-of-00002.safetensors") != std::string::npos);
  }
  {
    // With the consolidated index still there, a shard that held whole tensors is missed by name.
    const auto d = copy_of("hf_consolidated", "hf_missing");
    fs::remove(fs::path(d) / "model-00002-of-00002.safetensors");
    fs::remove(fs::path(d) / "sharded" / "shard-00002-model-00002-of-00002.safetensors");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "index.missing_shard");
    CHECK(f.where == "head.bias");
  }
  {
    // ... and the consolidated files that were written give the shapes the shards must assemble.
    const auto d = copy_of("hf_consolidated", "hf_shape");
    fs::remove(fs::path(d) / "model-00002-of-00002.safetensors");
    patch(d + "/model-00001-of-00002.safetensors", "\"shape\": [10, 6]", "\"shape\": [12, 5]");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "dcp.missing_chunk");
    CHECK(f.where == "embed.weight");
    CHECK(f.what.find("model-00001-of-00002.safetensors holds [12, 5]") != std::string::npos);
  }
  // Not distributed: sharded/ holds whole tensors and its own index.
  CHECK(sorted_listing(statedict::read(fixture("torch214/hf_sharded"))) == want);
  {
    const auto d = copy_of("hf_sharded", "hf_sharded_missing");
    fs::remove(fs::path(d) / "sharded" / "model-00002-of-00002.safetensors");
    const auto f = failure_of(d);
    CHECK(f.id == "index.missing_shard");
    CHECK(f.where == "model-00002-of-00002.safetensors");
  }
  {
    // A folder with neither: the old error, at the folder the user gave.
    const auto d = sdtest::temp_path("t214_hf_empty");
    fs::remove_all(d);
    fs::create_directories(fs::path(d) / "sharded");
    const auto f = failure_of(d);
    CHECK(f.id == "index.not_found");
  }
}

TEST_CASE("DCP_SHARDING_INFO that disagrees with the .metadata or the file is refused naming the file and tensor", "[dcp][torch214][bad]") {
  {
    // Rank 1's embed.weight chunk claims to start at row 4, where the .metadata has none.
    const auto d = copy_of("dcp_st_ranks", "st_offsets");
    patch(d + "/__1_0.distcp", "\\\"embed.weight\\\": {\\\"saved_offsets\\\": [5, 0]}",
          "\\\"embed.weight\\\": {\\\"saved_offsets\\\": [4, 0]}");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "dcp.sharding");
    CHECK(f.file == d + "/__1_0.distcp");
    CHECK(f.where == "tensor 'embed.weight'");
  }
  {
    // A chunk the sharding info does not name.
    const auto d = copy_of("dcp_st_ranks", "st_unnamed");
    patch(d + "/__1_0.distcp", "\\\"step\\\": {\\\"saved_offsets\\\"", "\\\"stop\\\": {\\\"saved_offsets\\\"");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "dcp.sharding");
    CHECK(f.file == d + "/__1_0.distcp");
  }
  {
    // The safetensors part holds another shape than the .metadata's chunk.
    const auto d = copy_of("dcp_st_ranks", "st_shape");
    patch(d + "/__1_0.distcp", "\"shape\":[5,6]", "\"shape\":[6,5]");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "dcp.chunk");
    CHECK(f.where == "embed.weight chunk 1");
  }
  {
    // A damaged safetensors header is the safetensors reader's error, at the part's offset.
    const auto d = copy_of("dcp_st_single", "st_header");
    patch(d + "/__0_1.distcp", "\"data_offsets\":[0,", "\"data_offsets\":[1,");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id.rfind("safetensors.", 0) == 0);
    CHECK(f.file == d + "/__0_1.distcp");
  }
  {
    // A .distcp cut short: no safetensors part ends it any more.
    const auto d = copy_of("dcp_st_ranks", "st_truncated");
    fs::resize_file(fs::path(d) / "__1_0.distcp", 800);
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "dcp.file");
    CHECK(f.file == d + "/__1_0.distcp");
  }
  {
    const auto d = copy_of("dcp_st_ranks", "st_missing");
    fs::remove(fs::path(d) / "__1_0.distcp");
    const auto f = failure_of(d);
    CHECK(f.id == "io.open");
    CHECK(f.file == d + "/__1_0.distcp");
  }
  {
    // A Hugging Face shard whose sharding info names a tensor it does not hold.
    const auto d = copy_of("hf_consolidated", "hf_sharding");
    fs::remove(fs::path(d) / "model.safetensors.index.json");
    const std::string shard = d + "/sharded/shard-00002-model-00001-of-00002.safetensors";
    patch(shard, "\\\"embed.weight\\\": {", "\\\"embed.weighs\\\": {");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "dcp.sharding");
    CHECK(f.file == shard);
  }
}

TEST_CASE("damaged zstd items and unknown transforms are refused naming the file, the item and the offset", "[dcp][torch214][bad][zstd]") {
  if (!statedict::detail::have_zstd) {
    // Built without libzstd: a clear refusal that says how to get the support.
    const auto f = failure_of(fixture("torch214/dcp_zstd_ranks"));
    CHECK(f.id == "zstd.unavailable");
    CHECK(f.what.find("libzstd") != std::string::npos);
    return;
  }
  {
    const auto d = copy_of("dcp_zstd_ranks", "zstd_unknown");
    patch(d + "/.metadata", "stream.zstd/1", "stream.zzzz/1");
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "dcp.transform");
    CHECK(f.what.find("'stream.zzzz/1'") != std::string::npos);
    CHECK(f.file == d + "/.metadata");
  }
  {
    const auto d = copy_of("dcp_zstd_ranks", "zstd_version");
    patch(d + "/.metadata", "stream.zstd/1", "stream.zstd/2");
    CHECK(failure_of(d).id == "dcp.transform");
  }
  {
    // A reserved bit set in the first frame's header descriptor.
    const auto d = copy_of("dcp_zstd_ranks", "zstd_corrupt");
    std::string bytes = sdtest::read_bytes(d + "/__1_0.distcp");
    REQUIRE(bytes.compare(0, 4, "\x28\xb5\x2f\xfd") == 0);
    bytes[4] = static_cast<char>(bytes[4] | 0x08);
    std::ofstream(d + "/__1_0.distcp", std::ios::binary | std::ios::trunc) << bytes;
    const auto f = failure_of(d);
    INFO(f.what);
    CHECK(f.id == "zstd.corrupt");
    CHECK(f.file == d + "/__1_0.distcp");
    CHECK(f.where.find("stored at byte 0") != std::string::npos);
  }
#if STATEDICT_HAVE_ZSTD
  {
    // The first item of rank 1's file replaced by a frame of 4 MB of zeros (a zip bomb, padded with
    // a skippable frame to the item's stored length): refused at the bound, never inflated.
    const auto d = copy_of("dcp_zstd_ranks", "zstd_bomb");
    std::string bytes = sdtest::read_bytes(d + "/__1_0.distcp");
    const std::size_t second = bytes.find("\x28\xb5\x2f\xfd", 4);  // the next item's frame
    REQUIRE(second != std::string::npos);
    const std::string zeros(4 << 20, '\0');
    for (const bool declared : {true, false}) {
      std::string frame(ZSTD_compressBound(zeros.size()), '\0');
      std::size_t n = 0;
      if (declared) {
        n = ZSTD_compress(frame.data(), frame.size(), zeros.data(), zeros.size(), 19);
      } else {  // a streamed frame: no content size in its header
        ZSTD_CCtx* c = ZSTD_createCCtx();
        ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
        ZSTD_outBuffer out{frame.data(), frame.size(), 0};
        while (ZSTD_compressStream2(c, &out, &in, ZSTD_e_end) != 0) {}
        n = out.pos;
        ZSTD_freeCCtx(c);
      }
      REQUIRE_FALSE(ZSTD_isError(n));
      REQUIRE(n + 8 <= second);
      frame.resize(n);
      const std::uint32_t pad = static_cast<std::uint32_t>(second - n - 8);
      std::string skip("\x50\x2a\x4d\x18", 4);
      for (int i = 0; i < 4; ++i) skip += static_cast<char>((pad >> (8 * i)) & 0xff);
      std::string damaged = bytes;
      damaged.replace(0, second, frame + skip + std::string(pad, '\0'));
      std::ofstream(d + "/__1_0.distcp", std::ios::binary | std::ios::trunc) << damaged;
      const auto f = failure_of(d);
      INFO(f.what);
      CHECK(f.id == "zstd.too_large");
      CHECK(f.file == d + "/__1_0.distcp");
      CHECK(f.where.find("stored at byte 0") != std::string::npos);
      CHECK(f.where.find("item '") != std::string::npos);
    }
  }
  {
    // The decoder alone: corrupt, truncated, declared too large, inflating too far, trailing garbage.
    using statedict::detail::zstd_decode;
    const std::string text(1000, 'a');
    std::string frame(ZSTD_compressBound(text.size()), '\0');
    frame.resize(ZSTD_compress(frame.data(), frame.size(), text.data(), text.size(), 3));
    const auto* p = reinterpret_cast<const std::uint8_t*>(frame.data());
    std::vector<std::uint8_t> out(2000);
    CHECK(zstd_decode(p, frame.size(), out.data(), 1000, "f", "item") == 1000);
    auto id = [&](std::size_t n, std::size_t cap) { return sdtest::error_id([&] { zstd_decode(p, n, out.data(), cap, "f", "item"); }); };
    CHECK(id(frame.size(), 999) == "zstd.too_large");
    CHECK(id(frame.size() - 1, 1000) == "zstd.corrupt");
    CHECK(id(0, 1000) == "zstd.corrupt");
    std::string garbage = frame + "junk";
    CHECK(sdtest::error_id([&] {
            zstd_decode(reinterpret_cast<const std::uint8_t*>(garbage.data()), garbage.size(), out.data(), 2000, "f", "item");
          }) == "zstd.corrupt");
  }
#endif
}
