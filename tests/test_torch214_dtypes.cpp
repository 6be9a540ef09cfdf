// What PyTorch 2.7-2.14 writes that older statedict refused (issue #35, classes 6 and 7): the
// float8_e8m0fnu, float4_e2m1fn_x2 and fnuz float8 dtypes in torch zips and safetensors, and
// `_extra_state` values that are io.BytesIO. Fixtures and listings: generate_torch214_dtypes.py,
// run with torch 2.14; every stack compares with them (native tensors where the LibTorch has the
// dtype, raw bytes carrying the dtype's name where it does not).
#include "helpers.hpp"

#include <statedict/detail/sha256.hpp>

using sdtest::fixture;
using statedict::Kind;

namespace {

std::string sha256_of(const std::string& bytes) {
  statedict::detail::Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.hex();
}

/// The listing torch 2.14 gave, and each tensor held natively or as raw bytes as this LibTorch can.
void check_against_torch(const statedict::Checkpoint& ck, const nlohmann::json& want) {
  const nlohmann::json got = sdtest::listing(ck.root());
  REQUIRE(got.size() == want["tensors"].size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(want["tensors"][i]["key"]);
    CHECK(got[i] == want["tensors"][i]);
  }
  for (const auto& t : ck.tensors()) {
    INFO(t.key);
    const statedict::detail::Dtype d = statedict::detail::dtype_from_torch(t.dtype());
    REQUIRE(d != nullptr);
    if (statedict::detail::native(d)) {
      CHECK(t.raw_dtype == nullptr);
      CHECK(t.tensor.scalar_type() == d->type);
    } else {
      REQUIRE(t.raw_dtype != nullptr);
      CHECK(std::string(t.raw_dtype) == t.dtype());
      CHECK(t.tensor.scalar_type() == at::kByte);
      CHECK(t.tensor.size(-1) == d->size);
    }
  }
}

/// Whether this LibTorch must have the dtype: what the three stacks (1.13, 2.6, 2.14) are known to have.
bool expected_native(const std::string& name) {
  const bool f8 = name == "float8_e4m3fn" || name == "float8_e5m2", fnuz = name.find("fnuz") != std::string::npos;
  if (name == "float8_e8m0fnu" || name == "float4_e2m1fn_x2") return STATEDICT_TORCH_AT_LEAST(2, 14);
  if (f8) return STATEDICT_TORCH_AT_LEAST(2, 1);
  if (fnuz) return STATEDICT_TORCH_AT_LEAST(2, 2);
  return true;
}

}  // namespace

TEST_CASE("torch 2.14 zips of the new float8 and float4 dtypes read as torch loads them", "[read][torch214]") {
  const statedict::Checkpoint ck = statedict::read(fixture("torch214/dtypes_torch.pt"));
  check_against_torch(ck, sdtest::expected_listing("torch214/dtypes_torch.pt"));
  for (const auto& t : ck.tensors()) {
    INFO(t.key);
    CHECK(statedict::detail::native(statedict::detail::dtype_from_torch(t.dtype())) == expected_native(t.dtype()));
  }
  // The row view shares its storage with the whole tensor, as in PyTorch.
  const auto whole = ck.at("float8_e8m0fnu").raw_tensor(), row = ck.at("float8_e8m0fnu_row1").raw_tensor();
  CHECK(static_cast<const std::uint8_t*>(row.data_ptr()) == static_cast<const std::uint8_t*>(whole.data_ptr()) + 4);
#if STATEDICT_TORCH_AT_LEAST(2, 14)
  CHECK(ck.at("float4_e2m1fn_x2").tensor().scalar_type() == c10::ScalarType::Float4_e2m1fn_x2);
  CHECK(ck.at("float8_e8m0fnu").tensor().scalar_type() == c10::ScalarType::Float8_e8m0fnu);
#else
  CHECK(sdtest::error_id([&] { (void)ck.at("float4_e2m1fn_x2").tensor(); }) == "format.unsupported_dtype");
  CHECK(ck.at("float4_e2m1fn_x2").raw_tensor().sizes() == c10::IntArrayRef({2, 6, 1}));
#endif
}

TEST_CASE("safetensors F8_E8M0, F4 (logical shape), FNUZ float8s and C64 read as torch loads them", "[read][torch214]") {
  const auto want = sdtest::expected_listing("torch214/dtypes_st.safetensors");
  const statedict::Checkpoint ck = statedict::read(fixture("torch214/dtypes_st.safetensors"));
  check_against_torch(ck, want);
  // The header's F4 shape counts fp4 values; the tensor's counts bytes, two values each.
  CHECK(want["header_shapes"]["float4_e2m1fn_x2"] == nlohmann::json::array({2, 12}));
  CHECK(ck.at("float4_e2m1fn_x2").named().shape() == std::vector<std::int64_t>{2, 6});
}

TEST_CASE("saving the new dtypes keeps their names and bytes, in torch zips and safetensors", "[save][torch214]") {
  for (const std::string src : {"torch214/dtypes_torch.pt", "torch214/dtypes_st.safetensors"}) {
    const statedict::Checkpoint ck = statedict::read(fixture(src));
    for (const std::string ext : {".pt", ".safetensors"}) {
      INFO(src << " -> " << ext);
      const std::string path = sdtest::temp_path("torch214_copy" + ext);
      statedict::save(ck.tensors(), path);
      const statedict::Checkpoint back = statedict::read(path);
      CHECK(sdtest::listing(back.root()) == sdtest::listing(ck.root()));
      if (ext == ".safetensors") {
        // Written as safetensors 0.8 writes them: F4 with the logical shape, the others by their names.
        const std::string bytes = sdtest::read_bytes(path);
        const auto header =
            nlohmann::json::parse(bytes.substr(8, statedict::detail::rd64(reinterpret_cast<const std::uint8_t*>(bytes.data()))));
        CHECK(header["float4_e2m1fn_x2"]["dtype"] == "F4");
        CHECK(header["float4_e2m1fn_x2"]["shape"] == nlohmann::json::array({2, 12}));
        CHECK(header["float8_e8m0fnu"]["dtype"] == "F8_E8M0");
        CHECK(header["float8_e4m3fnuz"]["dtype"] == "F8_E4M3FNUZ");
        CHECK(header["float8_e5m2fnuz"]["dtype"] == "F8_E5M2FNUZ");
      }
    }
  }
}

TEST_CASE("an _extra_state io.BytesIO reads as its bytes; a checkpoint inside reads like any other", "[read][torch214]") {
  const auto want = sdtest::expected_listing("torch214/extra_state_bytesio.pt");
  const statedict::Checkpoint ck = statedict::read(fixture("torch214/extra_state_bytesio.pt"));
  check_against_torch(ck, want);
  const auto& b = want["bytesio"][0];
  const statedict::Value extra = ck.at(b["key"].get<std::string>());
  REQUIRE(extra.kind() == Kind::bytes);
  const std::string bytes = extra.as_string();
  CHECK(bytes.size() == b["size"].get<std::size_t>());
  CHECK(sha256_of(bytes) == b["sha256"].get<std::string>());
  // Its bytes are a torch.save file: read as one, they list what torch.load of them lists.
  const statedict::Checkpoint nested = statedict::read(sdtest::write_temp("extra_state_nested.pt", bytes));
  CHECK(sdtest::listing(nested.root()) == b["nested"]);
  CHECK(nested.at("recipe").as_string() == "delayed");

  // Plain bytes stay plain bytes: all of them, whatever the position the BytesIO was left at.
  const auto want_raw = sdtest::expected_listing("torch214/extra_state_raw.pt");
  const statedict::Checkpoint raw = statedict::read(fixture("torch214/extra_state_raw.pt"));
  check_against_torch(raw, want_raw);
  for (const auto& e : want_raw["bytesio"]) {
    INFO(e["key"]);
    const statedict::Value v = raw.at(e["key"].get<std::string>());
    REQUIRE(v.kind() == Kind::bytes);
    CHECK(v.as_string().size() == e["size"].get<std::size_t>());
    CHECK(sha256_of(v.as_string()) == e["sha256"].get<std::string>());
  }
}
