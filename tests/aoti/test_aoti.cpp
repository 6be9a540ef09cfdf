// AOTInductor packages as load targets (issue #35): a model fine-tuned in PyTorch after its package
// was compiled from the initial weights (tests/python/aoti_finetune.py, run by ctest into the build
// directory just before) loads into the package from C++ through DataParallel's "module." prefix,
// and the package's outputs become PyTorch's; what the package cannot take fails a strict load by
// name, and a failed load leaves the package's outputs bit for bit as they were.
#include <statedict/aoti.hpp>

#include "../catch.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

using statedict::LoadOptions;
using Loader = torch::inductor::AOTIModelPackageLoader;

namespace {

/// Where aoti_finetune.py wrote the package, checkpoints and expected.json (ctest sets it).
std::string dir() {
  const char* d = std::getenv("STATEDICT_AOTI_DIR");
  REQUIRE(d != nullptr);  // run through ctest, or set STATEDICT_AOTI_DIR to aoti_finetune.py's OUTDIR
  return d;
}
std::string path(const std::string& name) { return dir() + "/" + name; }

const nlohmann::json& expected() {
  static const nlohmann::json j = [] {
    std::ifstream in(path("expected.json"));
    REQUIRE(in.good());
    return nlohmann::json::parse(in);
  }();
  return j;
}

at::Tensor tensor_of(const char* values, const char* shape) {
  const std::vector<double> v = expected()[values].get<std::vector<double>>();
  const std::vector<std::int64_t> s = expected()[shape].get<std::vector<std::int64_t>>();
  return at::tensor(v, at::kDouble).reshape(s).to(at::kFloat);
}

std::unique_ptr<Loader> open_package() { return std::make_unique<Loader>(path("net.pt2"), "model"); }

at::Tensor run(Loader& loader) {
  const std::vector<at::Tensor> out = loader.run({tensor_of("input", "input_shape")});
  REQUIRE(out.size() == 1);
  return out[0];
}

// The package runs compiled kernels, PyTorch eager ones: the same math in another order.
constexpr double kRtol = 1e-5, kAtol = 1e-6;
bool close(const at::Tensor& got, const char* expected_values) {
  const at::Tensor want = tensor_of(expected_values, "output_shape");
  INFO("got " << got << "\nPyTorch " << want << "\nmax abs difference " << (got - want).abs().max().item<double>());
  return at::allclose(got, want, kRtol, kAtol);
}

std::string printed(const statedict::LoadReport& r) {
  std::ostringstream os;
  os << r;
  return os.str();
}

/// The package's constants as they are now, deep-copied (state_dict aliases them).
std::vector<at::Tensor> snapshot(Loader& loader) {
  std::vector<at::Tensor> out;
  for (const auto& t : statedict::state_dict(loader)) out.push_back(t.tensor.clone());
  return out;
}
bool same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!a[i].equal(b[i])) return false;
  return true;
}

const std::string& folded_key() {
  static const std::string key = [] {
    const auto folded = expected()["folded"].get<std::vector<std::string>>();
    // The failing-load tests need a tensor the package cannot take; if a future AOTInductor folds
    // nothing for this model, this test needs another model, and says so.
    REQUIRE_FALSE(folded.empty());
    return "module." + folded.front();
  }();
  return key;
}

}  // namespace

TEST_CASE("the package's constants are what PyTorch's loader lists, under the same FQNs, shapes and dtypes", "[aoti]") {
  // The package was compiled against this LibTorch's Python twin: its .so must match.
  CHECK(std::string(expected()["torch_version"]).rfind(TORCH_VERSION, 0) == 0);
  auto loader = open_package();
  nlohmann::json got = nlohmann::json::array();
  for (const auto& t : statedict::state_dict(*loader))
    got.push_back({{"key", t.key}, {"dtype", t.dtype()}, {"shape", t.tensor.sizes().vec()}});
  CHECK(got == expected()["constants"]);
  CHECK_FALSE(folded_key().empty());
  CHECK(close(run(*loader), "initial_output"));
}

TEST_CASE("fine-tuned weights load into the package through DataParallel's prefix: its outputs become PyTorch's", "[aoti]") {
  auto loader = open_package();
  REQUIRE(close(run(*loader), "initial_output"));
  REQUIRE_FALSE(close(run(*loader), "finetuned_output"));  // the fine-tuning changed the outputs: the check below can fail

  SECTION("strip_prefix(\"module.\")") {
    const auto r = statedict::load(*loader, path("finetuned_constants_dp.pt"), LoadOptions{}.strip_prefix("module."));
    INFO(printed(r));
    REQUIRE(r.ok());
    CHECK(r.applied);
    CHECK(r.module_name == "AOTInductor package");
    CHECK(r.loaded == expected()["constants"].size());
    CHECK(r.unexpected.empty());
    CHECK(r.missing.empty());
  }
  SECTION("auto_prefix()") {
    const auto r = statedict::load(*loader, path("finetuned_constants_dp.pt"), LoadOptions{}.auto_prefix());
    INFO(printed(r));
    REQUIRE(r.ok());
    CHECK(r.loaded == expected()["constants"].size());
  }
  SECTION("a float64 checkpoint is cast to the package's float32, as for a module") {
    const auto r = statedict::load(*loader, statedict::read(path("finetuned_f64_dp.pt")), LoadOptions{}.strip_prefix("module."));
    INFO(printed(r));
    REQUIRE(r.ok());
    CHECK(r.dtype_mismatch.size() == expected()["constants"].size());
    for (const auto& d : r.dtype_mismatch) CHECK(d.cast);
  }
  CHECK(close(run(*loader), "finetuned_output"));
  // The constants the package now runs with are the checkpoint's, bit for bit.
  const statedict::Checkpoint ck = statedict::read(path("finetuned_constants_dp.pt"));
  for (const auto& t : statedict::state_dict(*loader)) CHECK(t.tensor.equal(ck.at("module." + t.key).tensor()));
}

TEST_CASE("after a load the previous constants wait in the inactive buffer: swapping goes back to them", "[aoti]") {
  auto loader = open_package();
  const auto r = statedict::load(*loader, path("finetuned_constants_dp.pt"), LoadOptions{}.strip_prefix("module."));
  INFO(printed(r));
  REQUIRE(r.ok());
  REQUIRE(close(run(*loader), "finetuned_output"));
  loader->get_runner()->swap_constant_buffer();
  CHECK(close(run(*loader), "initial_output"));
  // A second load writes the inactive buffer again (the fine-tuned one), and swaps it in.
  const auto again = statedict::load(*loader, path("finetuned_constants_dp.pt"), LoadOptions{}.strip_prefix("module."));
  REQUIRE(again.ok());
  CHECK(close(run(*loader), "finetuned_output"));
}

TEST_CASE("runs on another thread while loads and swaps go on see the old constants or the new, never a mix", "[aoti]") {
  auto loader = open_package();
  const at::Tensor input = tensor_of("input", "input_shape");
  const at::Tensor initial = tensor_of("initial_output", "output_shape"), finetuned = tensor_of("finetuned_output", "output_shape");
  std::atomic<bool> stop{false};
  std::atomic<int> runs{0}, old_ones{0}, new_ones{0}, others{0};
  std::thread runner([&] {
    while (!stop.load()) {
      const at::Tensor out = loader->run({input}).at(0);
      if (at::allclose(out, initial, kRtol, kAtol))
        ++old_ones;
      else if (at::allclose(out, finetuned, kRtol, kAtol))
        ++new_ones;
      else
        ++others;
      ++runs;
    }
  });
  // Each state is run at least once (a run that began after the change), while the loads themselves
  // overlap runs of the other thread.
  const auto a_run_after = [&runs] {
    const int seen = runs.load();
    while (runs.load() < seen + 2) std::this_thread::yield();
  };
  a_run_after();
  int loads = 0, loads_ok = 0;
  for (; loads < 50; ++loads) {
    loads_ok += statedict::load(*loader, path("finetuned_constants_dp.pt"), LoadOptions{}.strip_prefix("module.")).ok();
    a_run_after();
    loader->get_runner()->swap_constant_buffer();  // back to the initial constants, for the next load to change
    a_run_after();
  }
  stop = true;
  runner.join();
  INFO(loads << " loads, " << runs << " runs: " << old_ones << " initial, " << new_ones << " fine-tuned, " << others << " neither");
  CHECK(loads_ok == loads);
  CHECK(new_ones >= 50);
  CHECK(old_ones >= 50);
  CHECK(others == 0);
}

TEST_CASE("a tensor folded into the compiled code fails a strict load by name, and the package is unchanged", "[aoti]") {
  auto loader = open_package();
  const at::Tensor before = run(*loader);
  const auto constants = snapshot(*loader);
  const auto r = statedict::load(*loader, path("finetuned_dp.pt"), LoadOptions{}.strip_prefix("module."));
  const std::string text = printed(r);
  INFO(text);
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.applied);
  CHECK(r.loaded == 0);
  CHECK(r.unexpected == std::vector<std::string>{folded_key()});
  CHECK(text.find("Unexpected key(s) in state_dict: \"" + folded_key() + "\"") != std::string::npos);
  CHECK(text.find("the AOTInductor package cannot take \"" + folded_key() + "\"") != std::string::npos);
  CHECK(text.find("folded") != std::string::npos);
  CHECK(run(*loader).equal(before));
  CHECK(same(snapshot(*loader), constants));
}

TEST_CASE("a lenient load reports the folded tensor as unexpected, with the reason, and loads the rest", "[aoti]") {
  auto loader = open_package();
  const auto r = statedict::load(*loader, path("finetuned_dp.pt"), LoadOptions{}.strip_prefix("module.").lenient());
  const std::string text = printed(r);
  INFO(text);
  REQUIRE(r.ok());
  CHECK(r.applied);
  CHECK(r.unexpected == std::vector<std::string>{folded_key()});
  CHECK(text.find("warning: the AOTInductor package cannot take \"" + folded_key() + "\"") != std::string::npos);
  // The folded tensor kept its exported value in the fine-tuning too (aoti_finetune.py froze it),
  // so the outputs are the fine-tuned model's.
  CHECK(close(run(*loader), "finetuned_output"));
}

TEST_CASE("a checkpoint tensor of another shape fails the load, and the package is unchanged", "[aoti]") {
  auto loader = open_package();
  const at::Tensor before = run(*loader);
  const auto constants = snapshot(*loader);
  const auto r = statedict::load(*loader, path("wrong_shape_dp.pt"), LoadOptions{}.strip_prefix("module."));
  INFO(printed(r));
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.applied);
  REQUIRE(r.shape_mismatch.size() == 1);
  CHECK(r.shape_mismatch[0].key == "fc.weight");
  CHECK(r.shape_mismatch[0].source_shape == std::vector<std::int64_t>{16, 9});
  CHECK(r.shape_mismatch[0].target_shape == std::vector<std::int64_t>{16, 8});
  CHECK(printed(r).find("size mismatch for fc.weight") != std::string::npos);
  CHECK(run(*loader).equal(before));
  CHECK(same(snapshot(*loader), constants));
}

TEST_CASE("a load that fails after the checks (the file changed under it) swaps nothing in", "[aoti]") {
  auto loader = open_package();
  const at::Tensor before = run(*loader);
  const auto constants = snapshot(*loader);
  const std::string copy = path("shrunk_dp.pt");
  std::filesystem::copy_file(path("finetuned_constants_dp.pt"), copy, std::filesystem::copy_options::overwrite_existing);
  const statedict::Checkpoint ck = statedict::read(copy);
  REQUIRE(::truncate(copy.c_str(), static_cast<off_t>(std::filesystem::file_size(copy) / 2)) == 0);
  // The checks pass (they read no bytes); the copies into the inactive buffer then find the file changed.
  const auto r = statedict::load(*loader, ck, LoadOptions{}.strip_prefix("module."));
  INFO(printed(r));
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.applied);
  CHECK(r.error_id == "file.changed");
  CHECK(r.error.find("the package's constants are unchanged") != std::string::npos);
  CHECK(r.written.empty());
  CHECK(run(*loader).equal(before));
  CHECK(same(snapshot(*loader), constants));
  // The package takes the next load as if nothing had happened.
  const auto next = statedict::load(*loader, path("finetuned_constants_dp.pt"), LoadOptions{}.strip_prefix("module."));
  INFO(printed(next));
  REQUIRE(next.ok());
  CHECK(close(run(*loader), "finetuned_output"));
}

TEST_CASE("diff on a package is the load's report without the load; its suggestions work", "[aoti]") {
  auto loader = open_package();
  const at::Tensor before = run(*loader);
  const auto d = statedict::diff(*loader, path("finetuned_constants_dp.pt"));
  INFO(printed(d));
  CHECK_FALSE(d.ok());
  CHECK(d.dry_run);
  CHECK_FALSE(d.applied);
  REQUIRE_FALSE(d.suggestions.empty());
  REQUIRE(d.suggestions.front().options);
  CHECK(d.suggestions.front().option == "strip_prefix(\"module.\")");
  CHECK(d.suggestions.front().passes);
  CHECK(run(*loader).equal(before));

  const auto fixed = statedict::load(*loader, path("finetuned_constants_dp.pt"), *d.suggestions.front().options);
  INFO(printed(fixed));
  CHECK(fixed.ok());
  CHECK(close(run(*loader), "finetuned_output"));

  // Keys that miss only a prefix are not called folded: the suggestion fixes them, and then the
  // one tensor the package cannot take is explained.
  const auto wrapped = statedict::diff(*loader, path("finetuned_dp.pt"));
  INFO(printed(wrapped));
  CHECK(printed(wrapped).find("cannot take") == std::string::npos);
  REQUIRE_FALSE(wrapped.suggestions.empty());
  REQUIRE(wrapped.suggestions.front().options);
  // No fix leaves the folded tensor aside: the load would pass and the package run on with the
  // value it was exported with, not the fine-tuned one.
  for (const auto& s : wrapped.suggestions) {
    CHECK(s.option.find("ignore_unexpected") == std::string::npos);
    if (s.options) CHECK(s.options->ignore_unexpected().empty());
  }
  const auto stripped = statedict::diff(*loader, path("finetuned_dp.pt"), *wrapped.suggestions.front().options);
  INFO(printed(stripped));
  CHECK(printed(stripped).find("cannot take \"" + folded_key() + "\"") != std::string::npos);
}

TEST_CASE("an unreadable checkpoint is a report, not an exception, and the package is unchanged", "[aoti]") {
  auto loader = open_package();
  const at::Tensor before = run(*loader);
  const auto r = statedict::load(*loader, path("no_such_checkpoint.pt"));
  INFO(printed(r));
  CHECK_FALSE(r.ok());
  CHECK(r.error_id == "io.open");
  CHECK(r.module_name == "AOTInductor package");
  CHECK(run(*loader).equal(before));
}

TEST_CASE("the documentation's example: fine-tuned weights into a package, the report, then a run", "[aoti]") {
  // As in the docs, with this test's files for "net.pt2" and "finetuned.pt".
  torch::inductor::AOTIModelPackageLoader package(path("net.pt2"));
  const statedict::LoadReport report =
      statedict::load(package, path("finetuned_constants_dp.pt"), statedict::LoadOptions{}.strip_prefix("module."));
  std::ostringstream printed_report;
  printed_report << report;  // what was loaded, or why nothing was
  INFO(printed_report.str());
  REQUIRE(report.ok());
  CHECK(printed_report.str().rfind("Loaded 3 of 3 tensors into AOTInductor package", 0) == 0);
  const std::vector<at::Tensor> out = package.run({tensor_of("input", "input_shape")});
  CHECK(close(out.at(0), "finetuned_output"));
}
