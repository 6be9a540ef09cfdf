// Properties that must hold for any checkpoint: transactional loads under random damage, and
// several threads reading and loading at once.
#include "helpers.hpp"
#include "models.hpp"

#include <random>
#include <thread>

using sdtest::fixture;

namespace {
std::map<std::string, at::Tensor> snapshot(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& t : statedict::detail::module_targets(m)) out[t.key] = t.tensor.clone();
  return out;
}
bool bitwise_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() && statedict::tensor_sha256(a) == statedict::tensor_sha256(b);
}
}  // namespace

TEST_CASE("random missing, extra, reshaped and retyped tensors: a failed load changes nothing, a good one copies exactly",
          "[robustness][transaction]") {
  const auto base = statedict::read(fixture("resnet_plain.pt")).tensors();
  std::mt19937 rng(1234);
  int failures = 0, successes = 0;
  for (int round = 0; round < 40; ++round) {
    std::vector<statedict::NamedTensor> ck;
    for (const auto& t : base) {
      const auto dice = rng() % 20;
      if (dice == 0) continue;  // missing
      at::Tensor x = t.tensor.clone();
      if (dice == 1 && x.dim() > 0) x = at::zeros({x.numel() + 1}, x.options());    // another shape
      if (dice == 2 && x.is_floating_point()) x = x.to(at::kHalf);                  // another dtype, lossless direction
      if (dice == 3 && x.is_floating_point()) x = (x * 100).round().to(at::kLong);  // float into int checkpoint: cast back is lossless
      ck.push_back({t.key, x});
      if (dice == 4) ck.push_back({t.key + "_extra", at::ones({2})});  // unexpected
    }
    const std::string path = sdtest::temp_path("random_" + std::to_string(round) + ".pt");
    statedict::save(ck, path);
    sdtest::TinyResNet net;
    const auto before = snapshot(*net);
    statedict::LoadOptions opts = (rng() % 2) ? statedict::LoadOptions{}.lenient() : statedict::LoadOptions{};
    const auto r = statedict::load(net, path, opts);
    const auto after = snapshot(*net);
    INFO("round " << round);
    if (!r.ok()) {
      ++failures;
      for (const auto& [k, v] : before) CHECK(bitwise_equal(v, after.at(k)));
      continue;
    }
    ++successes;
    std::map<std::string, at::Tensor> source;
    for (const auto& t : ck) source[t.key] = t.tensor;
    std::set<std::string> loaded;
    for (const auto& m : r.matched) loaded.insert(m.target);
    for (const auto& s : r.skipped) loaded.erase(s);
    for (const auto& [k, v] : after) {
      if (loaded.count(k))
        CHECK(bitwise_equal(v, source.at(k).to(v.scalar_type())));
      else
        CHECK(bitwise_equal(v, before.at(k)));
    }
  }
  CHECK(failures > 0);
  CHECK(successes > 0);
}

TEST_CASE("several threads read the same file and load into their own modules at once", "[robustness][threads]") {
  const auto expected = sdtest::expected_listing("resnet_plain.pt")["tensors"];
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        sdtest::TinyResNet net;
        const auto r = statedict::load(net, fixture(t % 2 ? "resnet_plain.pt" : "resnet_legacy.pt"));
        if (r.ok() && sdtest::module_listing(*net) == expected) ++good;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(good == 20);
}
