// statedict::save: torch zip and safetensors that read back bit-exactly, sharding, atomic writes.
#include "helpers.hpp"
#include "models.hpp"

using sdtest::fixture;

TEST_CASE("a saved torch zip reads back bit-exactly, storages still shared", "[save]") {
  const auto src = statedict::read(fixture("dtypes.pt"));
  const std::string out = sdtest::temp_path("roundtrip.pt");
  statedict::save(src.tensors(), out);
  const auto back = statedict::read(out);
  CHECK(back.format() == statedict::Format::torch_zip);
  CHECK(sdtest::listing(back.root()) == sdtest::listing(src.root()));
  CHECK(back.at("tied_a").tensor().storage().is_alias_of(back.at("row_view").tensor().storage()));
  CHECK(back.at("transposed").tensor().strides() == at::IntArrayRef({1, 6}));
}

TEST_CASE("a saved safetensors file reads back bit-exactly with its metadata", "[save]") {
  const auto src = statedict::read(fixture("resnet_bf16.pt"));
  const std::string out = sdtest::temp_path("roundtrip.safetensors");
  statedict::save(src.tensors(), out, statedict::SaveOptions{}.metadata("format", "pt"));
  const auto back = statedict::read(out);
  CHECK(back.format() == statedict::Format::safetensors);
  CHECK(back.metadata().at("format") == "pt");
  CHECK(sdtest::listing(back.root()) == sdtest::listing(src.root()));
  // The header is padded to a multiple of 8 bytes.
  const std::string bytes = sdtest::read_bytes(out);
  CHECK(statedict::detail::rd64(reinterpret_cast<const std::uint8_t*>(bytes.data())) % 8 == 0);
}

TEST_CASE("a module saves its state dict, and sharded output comes with an index", "[save]") {
  sdtest::TinyResNet net;
  REQUIRE(statedict::load(net, fixture("resnet_plain.pt")).ok());
  for (const char* name : {"sharded.safetensors", "sharded.bin"}) {
    INFO(name);
    const std::string out = sdtest::temp_path(name);
    statedict::save(net, out, statedict::SaveOptions{}.max_shard_size(8000));
    CHECK_FALSE(std::filesystem::exists(out));
    const auto back = statedict::read(out + ".index.json");
    CHECK(sdtest::listing(back.root()) == sdtest::expected_listing("resnet_plain.pt")["tensors"]);
    const auto index = nlohmann::json::parse(sdtest::read_bytes(out + ".index.json"));
    std::set<std::string> shards;
    for (auto& [k, v] : index["weight_map"].items()) shards.insert(v.get<std::string>());
    CHECK(shards.size() > 2);
  }
}

TEST_CASE("a failed write leaves no half file and keeps the old one", "[save]") {
  const std::string out = sdtest::temp_path("keep.safetensors");
  const auto src = statedict::read(fixture("resnet_plain.pt"));
  statedict::save(src.tensors(), out);
  const std::string before = sdtest::read_bytes(out);
  std::vector<statedict::NamedTensor> bad = src.tensors();
  bad.push_back({"complex", at::zeros({2}, at::kComplexDouble)});  // safetensors has no complex128
  CHECK(sdtest::error_id([&] { statedict::save(bad, out); }) == "format.unsupported_dtype");
  CHECK(sdtest::read_bytes(out) == before);
  std::size_t leftovers = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(out).parent_path()))
    leftovers += e.path().filename().string().find(".tmp-") != std::string::npos;
  CHECK(leftovers == 0);
  CHECK(sdtest::error_id([&] { statedict::save(src.tensors(), "/nonexistent-dir/x.pt"); }) == "io.write");
}
