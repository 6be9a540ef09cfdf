// TorchScript modules (torch::jit::load) as load/diff/save targets: the same matching, reports and
// all-or-nothing loads as for torch::nn modules.
#include "helpers.hpp"

#include <torch/script.h>

using sdtest::fixture;
using statedict::LoadOptions;

namespace {

nlohmann::json jit_listing(const torch::jit::Module& m) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : statedict::state_dict(m))
    out.push_back(
        {{"key", t.key}, {"dtype", t.dtype()}, {"shape", t.tensor.sizes().vec()}, {"sha256", statedict::tensor_sha256(t.tensor)}});
  return out;
}

void scramble(torch::jit::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& t : statedict::state_dict(m)) t.tensor.fill_(0.25);
}

std::string printed(const statedict::LoadReport& r) {
  std::ostringstream os;
  os << r;
  return os.str();
}

}  // namespace

TEST_CASE("state_dict of a scripted module lists Python's state_dict, in its order, aliasing the module", "[jit]") {
  torch::jit::Module scripted = torch::jit::load(fixture("resnet_script.pt"));
  CHECK(jit_listing(scripted) == sdtest::expected_listing("resnet_script.pt")["tensors"]);
  // The tensors are the module's: a write through one shows in the module.
  auto sd = statedict::state_dict(scripted);
  REQUIRE_FALSE(sd.empty());
  {
    torch::NoGradGuard no_grad;
    sd.front().tensor.fill_(3.0);
  }
  const at::Tensor first = (*scripted.named_parameters().begin()).value;
  CHECK(first.sum().item<double>() == 3.0 * static_cast<double>(sd.front().tensor.numel()));
}

TEST_CASE("load into a torch::jit::Module: values land in place, the report names the scripted class", "[jit]") {
  torch::jit::Module scripted = torch::jit::load(fixture("resnet_script.pt"));
  scramble(scripted);
  const auto r = statedict::load(scripted, fixture("resnet_plain.pt"));
  INFO(printed(r));
  REQUIRE(r.ok());
  CHECK(r.applied);
  CHECK(r.loaded == 122);
  CHECK(r.module_name.find("__torch__") == std::string::npos);
  CHECK_FALSE(r.module_name.empty());
  CHECK(jit_listing(scripted) == sdtest::expected_listing("resnet_plain.pt")["tensors"]);
  // The scripted forward runs on what was loaded.
  const at::Tensor out = scripted.forward({at::ones({1, 3, 32, 32})}).toTensor();
  CHECK(out.size(0) == 1);
  CHECK(std::isfinite(out.sum().item<double>()));
}

TEST_CASE("a failed load leaves a scripted module bit for bit unchanged; its suggestions work there too", "[jit]") {
  torch::jit::Module scripted = torch::jit::load(fixture("resnet_script.pt"));
  scramble(scripted);
  const nlohmann::json before = jit_listing(scripted);
  const auto bad = statedict::load(scripted, fixture("resnet_head5.pt"));  // another head size
  INFO(printed(bad));
  CHECK_FALSE(bad.ok());
  CHECK_FALSE(bad.applied);
  CHECK(bad.shape_mismatch.size() == 2);
  CHECK(jit_listing(scripted) == before);

  const auto wrapped = statedict::diff(scripted, fixture("resnet_dataparallel.pt"));
  INFO(printed(wrapped));
  REQUIRE_FALSE(wrapped.suggestions.empty());
  REQUIRE(wrapped.suggestions.front().options);
  CHECK(wrapped.suggestions.front().option == "strip_prefix(\"module.\")");
  CHECK(jit_listing(scripted) == before);  // diff changes nothing
  const auto followed = statedict::load(scripted, fixture("resnet_dataparallel.pt"), *wrapped.suggestions.front().options);
  CHECK(followed.ok());
  CHECK(jit_listing(scripted) == sdtest::expected_listing("resnet_plain.pt")["tensors"]);
}

TEST_CASE("a scripted module loads from a Checkpoint, zero-copy too, and saves as a checkpoint", "[jit]") {
  const statedict::Checkpoint ck = statedict::read(fixture("resnet_plain.pt"));
  torch::jit::Module a = torch::jit::load(fixture("resnet_script.pt"));
  scramble(a);
  REQUIRE(statedict::load(a, ck, LoadOptions{}.zero_copy()).ok());
  CHECK(jit_listing(a) == sdtest::expected_listing("resnet_plain.pt")["tensors"]);

  const std::string path = sdtest::temp_path("scripted_saved.safetensors");
  statedict::save(a, path);
  CHECK(sdtest::listing(statedict::read(path).root()) == sdtest::expected_listing("resnet_plain.pt")["tensors"]);
}
