// LoadOptions::threads: a load written by several threads gives the values one thread gives, for
// every format and path (straight reads, pieces of large tensors, casts, zero-copy, slices); the
// progress callback stays on the calling thread; the report still says what a failed load wrote.
#include "helpers.hpp"
#include "models.hpp"

#include <thread>

using sdtest::fixture;
using sdtest::module_listing;
using statedict::LoadOptions;

namespace {

/// A module of one tensor several pieces large (12 MB, 3 pieces of 8 MiB at most), one that is not
/// a whole number of pieces, and small ones around them.
struct BigNetImpl : torch::nn::Module {
  BigNetImpl() {
    register_parameter("head", torch::zeros({7}));
    register_parameter("big", torch::zeros({3, 1000, 1000}));
    register_buffer("odd", torch::zeros({2100001}, torch::kFloat64));
    register_parameter("tail", torch::zeros({5, 3}));
  }
};
TORCH_MODULE(BigNet);

/// Its values, saved by statedict (at `dtype` for the floating-point tensors).
std::vector<statedict::NamedTensor> big_values(at::ScalarType dtype) {
  torch::manual_seed(7);
  return {{"head", torch::randn({7}).to(dtype)},
          {"big", torch::randn({3, 1000, 1000}).to(dtype)},
          {"odd", torch::randn({2100001}, torch::kFloat64).to(dtype)},
          {"tail", torch::randn({5, 3}).to(dtype)}};
}

/// True when every tensor of the module equals the value of its name, cast to the module's dtype.
bool holds(torch::nn::Module& m, const std::vector<statedict::NamedTensor>& values) {
  for (const auto& v : values) {
    bool found = false;
    for (const auto& t : statedict::state_dict(m))
      if (t.key == v.key) found = torch::equal(t.tensor, v.tensor.to(t.tensor.scalar_type()));
    if (!found) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("threads: every thread count loads Python's values, for each format and a cast", "[threads][parallel]") {
  const std::vector<std::pair<std::string, std::string>> files{{"resnet_plain.pt", "resnet_plain.pt"},
                                                               {"resnet.safetensors", "resnet.safetensors"},
                                                               {"resnet_legacy.pt", "resnet_legacy.pt"},
                                                               {"resnet_fp16.pt", "loaded_resnet_fp16.pt"},
                                                               {"sharded_st", "sharded_st"}};
  for (const auto& [file, expected] : files) {
    for (int threads : {1, 2, 3, 8}) {
      INFO(file << " on " << threads << " threads");
      sdtest::TinyResNet net;
      const auto r = statedict::load(net, fixture(file), LoadOptions{}.threads(threads));
      INFO(r);
      REQUIRE(r.ok());
      CHECK(r.loaded == 122);
      const nlohmann::json want = sdtest::expected_listing(expected);
      CHECK(module_listing(*net) == want["tensors"]);
    }
  }
}

TEST_CASE("threads: a tensor larger than a piece is read in pieces, straight or cast, on any thread count", "[threads][parallel]") {
  for (const auto dtype : {at::kFloat, at::kHalf}) {
    for (const char* ext : {".pt", ".safetensors"}) {
      const auto values = big_values(dtype);
      const std::string path = sdtest::temp_path(std::string("parallel_big_") + c10::toString(dtype) + ext);
      statedict::save(values, path);
      for (int threads : {1, 2, 4}) {
        INFO(path << " on " << threads << " threads");
        BigNet net;
        const auto r = statedict::load(net, path, LoadOptions{}.threads(threads));
        INFO(r);
        REQUIRE(r.ok());
        CHECK(r.loaded == 4);
        CHECK(holds(*net, values));
        // Each way of reading into the parameters, forced: straight, and through the thread's buffer.
        for (bool buffered : {false, true}) {
          INFO("buffered_reads(" << buffered << ")");
          BigNet forced;
          REQUIRE(statedict::load(forced, path, LoadOptions{}.threads(threads).buffered_reads(buffered)).ok());
          CHECK(holds(*forced, values));
        }
        // From a Checkpoint read once (pread-only, not owned by the load): the same.
        BigNet again;
        REQUIRE(statedict::load(again, statedict::read(path), LoadOptions{}.threads(threads)).ok());
        CHECK(holds(*again, values));
      }
      std::remove(path.c_str());
    }
  }
}

TEST_CASE("threads: zero-copy and tensor-parallel slices on several threads equal one thread's", "[threads][parallel]") {
  const auto values = big_values(at::kFloat);
  const std::string path = sdtest::temp_path("parallel_slices.pt");
  statedict::save(values, path);
  {
    BigNet net;
    REQUIRE(statedict::load(net, path, LoadOptions{}.zero_copy().threads(4)).ok());
    CHECK(holds(*net, values));
  }
  // Rank 1 of 2 along dim 1 (strided runs of 2 KB: cast through a buffer) and dim 2 (runs of 2 KB).
  for (std::int64_t dim : {1, 2}) {
    INFO("dim " << dim);
    auto make = [dim] {
      auto m = std::make_shared<torch::nn::Module>();
      std::vector<std::int64_t> shape{3, 1000, 1000};
      shape[static_cast<std::size_t>(dim)] = 500;
      m->register_parameter("big", torch::zeros(shape));
      return m;
    };
    const auto opts = LoadOptions{}.shard("big", dim, 1, 2).unexpected(statedict::Policy::ignore);
    auto one = make(), four = make();
    REQUIRE(statedict::load(one, path, LoadOptions(opts).threads(1)).ok());
    REQUIRE(statedict::load(four, path, LoadOptions(opts).threads(4)).ok());
    CHECK(torch::equal(one->named_parameters()["big"], values[1].tensor.narrow(dim, 500, 500)));
    CHECK(torch::equal(four->named_parameters()["big"], values[1].tensor.narrow(dim, 500, 500)));
  }
  std::remove(path.c_str());
}

TEST_CASE("threads: progress is called on the calling thread, from 0 to the total, never backwards", "[threads][parallel]") {
  const auto values = big_values(at::kHalf);  // cast pieces: the slowest jobs
  const std::string path = sdtest::temp_path("parallel_progress.pt");
  statedict::save(values, path);
  BigNet net;
  std::uint64_t expected_total = 0;
  for (const auto& t : statedict::state_dict(*net))
    expected_total += static_cast<std::uint64_t>(t.tensor.numel()) * t.tensor.element_size();
  const auto caller = std::this_thread::get_id();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> calls;
  bool elsewhere = false;
  const auto r = statedict::load(net, path, LoadOptions{}.threads(4).progress([&](std::uint64_t done, std::uint64_t total) {
    elsewhere = elsewhere || std::this_thread::get_id() != caller;
    calls.emplace_back(done, total);
  }));
  REQUIRE(r.ok());
  CHECK_FALSE(elsewhere);
  REQUIRE(calls.size() >= 2);
  CHECK(calls.front() == std::make_pair(std::uint64_t{0}, expected_total));
  CHECK(calls.back() == std::make_pair(expected_total, expected_total));
  for (std::size_t i = 1; i < calls.size(); ++i) CHECK(calls[i].first >= calls[i - 1].first);
  std::remove(path.c_str());
}

TEST_CASE("threads: a negative count is options.bad_threads; 0 is automatic", "[threads][parallel]") {
  CHECK(sdtest::error_id([] { LoadOptions{}.threads(-1); }) == statedict::errors::options_bad_threads);
  CHECK(LoadOptions{}.threads() == 0);
  CHECK(LoadOptions{}.threads(3).threads() == 3);
}

TEST_CASE("threads: a file changed before the copies fails on every thread count with the module unchanged", "[threads][parallel]") {
  const auto values = big_values(at::kFloat);
  const std::string path = sdtest::temp_path("parallel_changed.pt");
  statedict::save(values, path);
  const statedict::Checkpoint ck = statedict::read(path);
  {
    std::ofstream grow(path, std::ios::app | std::ios::binary);
    grow << "more bytes";
  }
  for (int threads : {1, 4}) {
    BigNet net;
    const auto r = statedict::load(net, ck, LoadOptions{}.threads(threads));
    CHECK(r.error_id == "file.changed");
    CHECK(r.written.empty());
    CHECK_FALSE(r.applied);
    for (const auto& t : statedict::state_dict(*net)) CHECK(torch::count_nonzero(t.tensor).item<std::int64_t>() == 0);
  }
  std::remove(path.c_str());
}

TEST_CASE("zero-copy into parameters that are not on the CPU says they are copied", "[load][parallel]") {
  // Parameters on the meta device stand in for a GPU's here (no GPU): diff plans without copying.
  auto fc = [](at::Device device) {
    auto m = std::make_shared<torch::nn::Module>();
    m->register_parameter("weight", torch::empty({10, 8}, torch::TensorOptions().device(device)));
    m->register_parameter("bias", torch::empty({10}, torch::TensorOptions().device(device)));
    return m;
  };
  const auto opts = LoadOptions{}.submodule("fc").zero_copy();
  const auto r = statedict::diff(fc(torch::kMeta), fixture("resnet_plain.pt"), opts);
  INFO(r);
  REQUIRE(r.ok());
  bool warned = false;
  for (const auto& w : r.warnings)
    warned = warned || (w.find("zero_copy: 2 of the module's tensors are not on the CPU (meta)") != std::string::npos);
  CHECK(warned);
  for (const auto& w : statedict::diff(fc(torch::kCPU), fixture("resnet_plain.pt"), opts).warnings)
    CHECK(w.find("not on the CPU") == std::string::npos);
}

TEST_CASE("threads: one tensor under two names (tied weights) loads as on one thread, the later name winning", "[threads][parallel]") {
  torch::manual_seed(11);
  const auto first = torch::randn({3, 1000, 1000}), second = torch::randn({3, 1000, 1000});
  const std::string path = sdtest::temp_path("parallel_tied.pt");
  statedict::save({{"a", first}, {"b", second}}, path);
  for (bool zero : {false, true}) {
    for (int threads : {1, 4}) {
      INFO((zero ? "zero-copy" : "copy") << " on " << threads << " threads");
      auto m = std::make_shared<torch::nn::Module>();
      const auto shared = torch::zeros({3, 1000, 1000});
      m->register_parameter("a", shared);
      m->register_parameter("b", shared);
      std::size_t names = 0;
      for (const auto& t : statedict::state_dict(*m)) names += t.tensor.is_same(shared) || t.tensor.data_ptr() == shared.data_ptr();
      const auto r = statedict::load(m, path, LoadOptions{}.threads(threads).zero_copy(zero).unexpected(statedict::Policy::ignore));
      INFO(r);
      REQUIRE(r.ok());
      // Both names hold the tensor the later one loaded, as a serial load leaves them.
      const auto params = m->named_parameters();
      CHECK(torch::equal(params["b"], names == 2 ? second : first));
      CHECK(torch::equal(params["a"], params["b"]));
    }
  }
  std::remove(path.c_str());
}

TEST_CASE("threads: a zero-copy load counts only the bytes it copies, so one that hands memory over stays on one thread",
          "[threads][parallel]") {
  using statedict::detail::Applier;
  const std::vector<statedict::detail::Target> targets{{"same", torch::zeros({1024, 4096})}, {"cast", torch::zeros({1024, 4096})}};
  const std::uint64_t each = 1024u * 4096u * 4u;  // 16 MiB: enough for several threads on its own
  const auto same = torch::ones({1024, 4096}), cast = torch::ones({1024, 4096}, torch::kFloat64);
  const std::vector<statedict::detail::Copy> only_shared{{0, same, nullptr}};
  const std::vector<statedict::detail::Copy> both{{0, same, nullptr}, {1, cast, nullptr}};
  for (const bool zero : {false, true}) {
    INFO((zero ? "zero-copy" : "copy"));
    Applier one(targets, only_shared, zero, false, std::nullopt);
    one.plan_jobs();
    CHECK(one.total() == each);
    CHECK(one.copied() == (zero ? 0 : each));
    Applier two(targets, both, zero, false, std::nullopt);
    two.plan_jobs();
    CHECK(two.total() == 2 * each);
    CHECK(two.copied() == (zero ? each : 2 * each));  // the cast is copied either way
    // Lazy sources (DCP chunks, a rank's slice of them) count the same way: what one piece holds
    // as it is can be handed over; a cast is made, and copied.
    using statedict::detail::LazyTensor;
    const auto held = std::make_shared<const LazyTensor>(LazyTensor{nullptr, same, -1, 0, 0, std::nullopt});
    const auto made = std::make_shared<const LazyTensor>(LazyTensor{nullptr, cast, -1, 0, 0, c10::kFloat});
    const std::vector<statedict::detail::Copy> lazy{{0, same, held}, {1, same, made}};
    Applier three(targets, lazy, zero, false, std::nullopt);
    three.plan_jobs();
    CHECK(three.total() == 2 * each);
    CHECK(three.copied() == (zero ? each : 2 * each));
  }
  CHECK(statedict::detail::apply_threads(0, 0, 32) == 1);
  CHECK(statedict::detail::apply_threads(0, each, 32) == std::min(statedict::detail::usable_cpus(), 4));
  CHECK(statedict::detail::apply_threads(0, each, 1) == 1);  // never more threads than jobs
  CHECK(statedict::detail::apply_threads(3, 0, 32) == 3);    // a count the caller set is kept
}

TEST_CASE("threads: the automatic count is the CPUs the process may use, fewer when OMP_NUM_THREADS says so", "[threads][parallel]") {
  using statedict::detail::usable_cpus;
  const char* before = std::getenv("OMP_NUM_THREADS");
  const std::string saved = before != nullptr ? before : "";
  ::unsetenv("OMP_NUM_THREADS");
  const int cpus = usable_cpus();
  CHECK(cpus >= 1);
  CHECK(cpus <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  ::setenv("OMP_NUM_THREADS", "1", 1);
  CHECK(usable_cpus() == 1);
  CHECK(statedict::detail::apply_threads(0, 1u << 30, 64) == 1);
  for (const char* ignored : {"0", "-3", "many", ""}) {  // not a count: the CPUs
    ::setenv("OMP_NUM_THREADS", ignored, 1);
    CHECK(usable_cpus() == cpus);
  }
  ::setenv("OMP_NUM_THREADS", "100000", 1);  // more than there are: the CPUs
  CHECK(usable_cpus() == cpus);
  if (before != nullptr)
    ::setenv("OMP_NUM_THREADS", saved.c_str(), 1);
  else
    ::unsetenv("OMP_NUM_THREADS");
}
