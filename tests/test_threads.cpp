// What the "Threads" section of docs/api.md promises: a Checkpoint, once read, is shared by threads that
// load from it into their own modules; separate reads, loads and saves run side by side.
#include "helpers.hpp"
#include "models.hpp"

#include <atomic>
#include <fstream>
#include <set>
#include <thread>

using sdtest::fixture;
using statedict::LoadOptions;

namespace {

constexpr int kThreads = 4, kRounds = 3;

/// Runs f(thread index) on kThreads threads at once; returns how many runs failed.
template <class F> int on_threads(F f) {
  std::atomic<int> failures{0};
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() < kThreads) std::this_thread::yield();  // start together
      try {
        if (!f(i)) ++failures;
      } catch (...) { ++failures; }
    });
  for (auto& t : threads) t.join();
  return failures.load();
}

bool same_tensors(torch::nn::Module& m, const nlohmann::json& expected) {
  std::size_t i = 0;
  for (const auto& t : statedict::state_dict(m)) {
    if (i >= expected.size() || expected[i]["key"] != t.key || expected[i]["sha256"] != statedict::tensor_sha256(t.tensor)) return false;
    ++i;
  }
  return i == expected.size();
}

}  // namespace

TEST_CASE("threads: one Checkpoint shared by threads that load it into their own modules", "[threads]") {
  for (const char* name : {"resnet_plain.pt", "resnet_dataparallel.pt", "resnet_fp16.pt", "resnet.safetensors"}) {
    INFO(name);
    const statedict::Checkpoint shared = statedict::read(fixture(name));
    const LoadOptions opts = std::string(name) == "resnet_dataparallel.pt" ? LoadOptions{}.strip_prefix("module.") : LoadOptions{};
    // What one thread alone loads (cast where the file is fp16) is what every thread must get.
    sdtest::TinyResNet alone;
    REQUIRE(statedict::load(alone, shared, opts).ok());
    const nlohmann::json expected = sdtest::module_listing(*alone);
    const int failures = on_threads([&](int) {
      for (int round = 0; round < kRounds; ++round) {
        sdtest::TinyResNet net;
        const auto d = statedict::diff(net, shared, opts);
        const auto r = statedict::load(net, shared, opts);
        if (!d.ok() || !r.ok() || r.loaded != 122 || !same_tensors(*net, expected)) return false;
      }
      return true;
    });
    CHECK(failures == 0);
  }
}

TEST_CASE("threads: separate reads, loads from paths and saves run side by side", "[threads]") {
  const nlohmann::json expected = sdtest::expected_listing("resnet_plain.pt")["tensors"];
  const int failures = on_threads([&](int i) {
    for (int round = 0; round < kRounds; ++round) {
      sdtest::TinyResNet net;
      if (!statedict::load(net, fixture("resnet_plain.pt")).ok() || !same_tensors(*net, expected)) return false;
      const std::string out = sdtest::temp_path("thread_" + std::to_string(i) + ".safetensors");
      statedict::save(net, out);
      sdtest::TinyResNet back;
      if (!statedict::load(back, out).ok() || !same_tensors(*back, expected)) return false;
    }
    return true;
  });
  CHECK(failures == 0);
}

TEST_CASE("threads: a DCP tensor stored in chunks is assembled once when threads ask for it together", "[threads][dcp]") {
  const statedict::Checkpoint whole = statedict::read(fixture("torch2/dcp_1ranks"));
  const at::Tensor want = whole.at("embed.weight").tensor();
  for (int round = 0; round < kRounds; ++round) {
    const statedict::Checkpoint chunks = statedict::read(fixture("torch2/dcp_4ranks"));
    std::vector<at::Tensor> got(kThreads);
    const int failures = on_threads([&](int i) {
      got[static_cast<std::size_t>(i)] = chunks.at("embed.weight").tensor();
      return got[static_cast<std::size_t>(i)].equal(want);
    });
    CHECK(failures == 0);
    for (const auto& g : got) CHECK(g.data_ptr() == got.front().data_ptr());  // one assembly, shared
  }
}

TEST_CASE("threads: a shared Checkpoint's tensors are read once on first use, whichever thread asks first", "[threads]") {
  for (const char* name : {"resnet_plain.pt", "dtypes.pt", "resnet_legacy.pt"}) {
    INFO(name);
    const statedict::Checkpoint ck = statedict::read(fixture(name));  // nothing read yet
    const auto keys = statedict::detail::lazy_tensors(ck.root());
    const auto want = sdtest::listing(statedict::read(fixture(name), statedict::ReadOptions{}.map_tensors(true)).root());
    std::vector<std::vector<const at::Tensor*>> seen(kThreads);
    CHECK(on_threads([&](int i) {
            for (std::size_t k = 0; k < keys.size(); ++k) {  // each thread in another order
              const std::string key = keys[(k + static_cast<std::size_t>(i) * 7) % keys.size()].key;
              seen[static_cast<std::size_t>(i)].push_back(&ck.at(key).tensor());
            }
            return true;
          }) == 0);
    for (int i = 1; i < kThreads; ++i) {  // every thread got the same tensor objects
      std::set<const at::Tensor*> a(seen[0].begin(), seen[0].end()), b(seen[i].begin(), seen[i].end());
      CHECK(a == b);
    }
    CHECK(sdtest::listing(ck.root()) == want);
  }
}

TEST_CASE("threads: a large storage every thread asks for at once is read once, not once a thread", "[threads]") {
  // One 8 MiB tensor, read with pread on first use: the threads that ask while it is being read
  // wait for that read. The process's read syscalls (/proc/self/io rchar) count its bytes once.
  const std::string path = sdtest::temp_path("threads_big.pt");
  statedict::save(std::vector<statedict::NamedTensor>{{"big", torch::arange(2 << 20, torch::kFloat32)}}, path);
  auto rchar = [] {
    std::ifstream io("/proc/self/io");
    std::string field;
    std::uint64_t value = 0;
    while (io >> field >> value)
      if (field == "rchar:") return value;
    return std::uint64_t{0};
  };
  const statedict::Checkpoint ck = statedict::read(path);
  const std::uint64_t before = rchar();
  std::vector<at::Tensor> got(kThreads);
  CHECK(on_threads([&](int i) {
          got[static_cast<std::size_t>(i)] = ck.at("big").tensor();
          return true;
        }) == 0);
  const std::uint64_t read = rchar() - before;
  CHECK(read >= (8u << 20));
  CHECK(read < (8u << 20) + (1u << 20));  // once (and a little: /proc/self/io itself), never twice
  for (const auto& t : got) CHECK(t.storage().is_alias_of(got[0].storage()));
  CHECK(got[0][(2 << 20) - 1].item<float>() == static_cast<float>((2 << 20) - 1));
}
