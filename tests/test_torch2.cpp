// What current PyTorch writes and what old files hold, beyond the listings test_read.cpp compares:
// dtypes this LibTorch may lack, values that cannot be tensors, object keys, legacy whole modules.
#include "helpers.hpp"

using sdtest::fixture;
using statedict::Kind;

namespace {
struct Net2 : torch::nn::Module {
  torch::Tensor w = register_parameter("float8_e4m3fn", torch::zeros({6}));
};
}  // namespace

TEST_CASE("dtypes of PyTorch 2.x are listed, converted, and loaded where this LibTorch has them", "[read][torch2]") {
  const statedict::Checkpoint ck = statedict::read(fixture("torch2/dtypes2.pt"));
  const statedict::Value f8 = ck.at("float8_e4m3fn");
  CHECK(f8.named().dtype() == "float8_e4m3fn");
  CHECK(f8.named().shape() == std::vector<std::int64_t>{6});
#if STATEDICT_HAS_FLOAT8
  CHECK(f8.raw_dtype() == nullptr);
  CHECK(f8.tensor().to(torch::kFloat).equal(torch::tensor({-2.0f, -0.5f, 0.0f, 0.25f, 1.5f, 3.0f})));
#else
  CHECK(std::string(f8.raw_dtype()) == "float8_e4m3fn");
  CHECK(sdtest::error_id([&] { (void)f8.tensor(); }) == "format.unsupported_dtype");
  CHECK(f8.raw_tensor().sizes() == c10::IntArrayRef({6, 1}));
  // Only the load that needs it fails, naming the key and the dtype; the module is untouched.
  Net2 net;
  const auto r = statedict::load(net, ck, statedict::LoadOptions{}.lenient());
  CHECK_FALSE(r.ok());
  REQUIRE(r.dtype_mismatch.size() == 1);
  CHECK(r.dtype_mismatch[0].source_dtype == "float8_e4m3fn");
  std::ostringstream text;
  text << r;
  CHECK(text.str().find("float8_e4m3fn") != std::string::npos);
  CHECK(net.w.sum().item<float>() == 0.0f);
#endif
#if STATEDICT_HAS_UINT16_64
  CHECK(ck.at("uint32").tensor().scalar_type() == c10::ScalarType::UInt32);
#else
  CHECK(std::string(ck.at("uint32").raw_dtype()) == "uint32");
#endif
  // Whatever this LibTorch has, save() writes them back with their bytes and dtype names intact.
  for (const std::string out : {"dtypes2_copy.pt", "dtypes2_copy.safetensors"}) {
    std::vector<statedict::NamedTensor> keep;
    for (auto& t : ck.tensors())
      if (out.find("safetensors") == std::string::npos || statedict::detail::dtype_from_torch(t.dtype())->safetensors != nullptr)
        if (t.dtype() != "complex32" || out.find("safetensors") == std::string::npos) keep.push_back(t);
    const std::string path = sdtest::temp_path(out);
    statedict::save(keep, path);
    const auto back = statedict::read(path);
    const auto want = sdtest::listing(ck.root());
    const auto got = sdtest::listing(back.root());
    INFO(out);
    std::size_t compared = 0;
    for (const auto& g : got)
      for (const auto& w : want)
        if (g["key"] == w["key"]) {
          CHECK(g == w);
          ++compared;
        }
    CHECK(compared == keep.size());
    CHECK(compared >= 5);
  }
}

TEST_CASE("numpy values of every dtype read as tensors; what cannot be one is listed with the reason", "[read][torch2]") {
  for (const std::string dir : {"", "torch2/"}) {
    INFO(dir);
    const auto ck = statedict::read(fixture(dir + "numpy_values.pt"));
    CHECK(ck.at("array_u4").named().dtype() == "uint32");
    CHECK(ck.at("scalar_u8").named().dtype() == "uint64");
    CHECK(ck.at("big_endian").tensor().equal(torch::arange(4, torch::kFloat)));
    CHECK(ck.at("fortran").tensor().equal(torch::arange(6, torch::kInt).reshape({2, 3})));
    CHECK(ck.at("rng_state.numpy.1").named().shape() == std::vector<std::int64_t>{624});  // the MT19937 key, uint32
    std::map<std::string, std::string> why;
    for (const auto& u : ck.unreadable()) why[u.key] = u.reason;
    CHECK(why.size() == 3);
    CHECK(why["strings"].find("'U2'") != std::string::npos);
    CHECK(why["objects"].find("objects") != std::string::npos);
    CHECK(why["longdouble"].find("f16") != std::string::npos);
  }
}

TEST_CASE("quantized and sparse tensors are listed as unreadable; parameters with state and subclasses read", "[read][torch2]") {
  for (const std::string dir : {"", "torch2/"}) {
    INFO(dir);
    const auto ck = statedict::read(fixture(dir + "rebuild.pt"));
    CHECK(ck.at("param_with_state").tensor().equal(torch::ones({3})));
    CHECK(ck.at("subclass").tensor().equal(torch::arange(3, torch::kFloat)));
    const auto bad = ck.unreadable();
    REQUIRE(bad.size() == 2);
    CHECK(bad[0].key == "quantized");
    CHECK(bad[0].type == "torch._utils._rebuild_qtensor");
    CHECK(bad[0].reason.find("quantized") != std::string::npos);
    CHECK(bad[1].key == "sparse");
    CHECK(bad[1].reason.find("sparse") != std::string::npos);
    // A load that needs one of them reports it missing rather than loading something else.
    std::vector<std::string> keys;
    for (const auto& t : ck.tensors()) keys.push_back(t.key);
    CHECK(std::find(keys.begin(), keys.end(), "quantized") == keys.end());
  }
}

TEST_CASE("legacy whole modules, PyTorch 0.3 parameters and object-keyed dicts read as PyTorch lists them", "[read][torch2]") {
  for (const std::string dir : {"", "torch2/"}) {
    INFO(dir);
    const auto mod = statedict::read(fixture(dir + "resnet_module_legacy.pt"));
    CHECK(mod.format() == statedict::Format::torch_legacy);
    CHECK(mod.module_class().find("TinyResNet") != std::string::npos);
    CHECK(mod.at("fc.weight").tensor().dim() == 2);
    const auto old = statedict::read(fixture(dir + "old_parameters.pt"));
    CHECK(old.at("w").tensor().equal(torch::arange(4, torch::kFloat)));
    const auto oldmod = statedict::read(fixture(dir + "old_parameters_module.pt"));
    CHECK(oldmod.at("0.weight").tensor().sizes() == c10::IntArrayRef({2, 3}));
    CHECK(oldmod.at("1.running_var").tensor().equal(torch::ones({2})));
    for (const char* name : {"object_keys.pt", "object_keys_legacy.pt"}) {
      const auto keyed = statedict::read(fixture(dir + name));
      CHECK(keyed.at("state").keys() == std::vector<std::string>{"<tensor#0>", "<tensor#1>", "<tensor#2>"});
      CHECK(keyed.at("state.<tensor#2>.momentum_buffer").tensor().eq(2).all().item<bool>());
      CHECK(keyed.at("by_float").keys() == std::vector<std::string>{"0.5", "1.5", "None", "True"});
      CHECK(keyed.at("mixed").keys() == std::vector<std::string>{"<tensor#1>", "<tensor#1>'"});
      std::set<std::string> unique;
      for (const auto& t : keyed.tensors()) CHECK(unique.insert(t.key).second);
    }
  }
}
