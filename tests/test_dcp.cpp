// torch.distributed.checkpoint folders written by PyTorch 2.6 (tests/fixtures/generate_dcp.py): read
// whole (test_read.cpp compares them with dcp_to_torch_save's listing), loaded, converted, and every
// malformed metadata or chunk refused with an error that names the tensor or file.
#include "helpers.hpp"

using sdtest::fixture;

namespace {
namespace fs = std::filesystem;

/// A copy of a fixture folder to damage.
std::string copy_folder(const std::string& name, const std::string& as) {
  const fs::path dst = sdtest::temp_path(as);
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(fixture("torch2/" + name))) fs::copy_file(e.path(), dst / e.path().filename());
  return dst.string();
}

/// Replaces the n-th occurrence (0-based) of `from` in the folder's .metadata with `to` (same length).
void patch_metadata(const std::string& dir, const std::string& from, const std::string& to, int nth = 0) {
  REQUIRE(from.size() == to.size());
  const std::string path = dir + "/.metadata";
  std::string bytes = sdtest::read_bytes(path);
  std::size_t at = bytes.find(from);
  for (int i = 0; i < nth && at != std::string::npos; ++i) at = bytes.find(from, at + 1);
  REQUIRE(at != std::string::npos);
  bytes.replace(at, from.size(), to);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string failure(const std::string& dir) {
  try {
    statedict::read(dir);
  } catch (const statedict::Error& e) { return std::string(e.id()) + " | " + e.what(); }
  return "read succeeded";
}

struct Mlp : torch::nn::Module {
  torch::Tensor embed = register_parameter("embed", torch::zeros({10, 6}));
  torch::Tensor proj = register_parameter("proj", torch::zeros({5, 8}));
};
}  // namespace

TEST_CASE("DCP folders from 1, 2 and 4 ranks read the same tensors and values", "[dcp]") {
  const auto one = statedict::read(fixture("torch2/dcp_1ranks"));
  CHECK(one.format() == statedict::Format::dcp);
  for (const char* name : {"dcp_2ranks", "dcp_4ranks"}) {
    const auto many = statedict::read(fixture(std::string("torch2/") + name));
    INFO(name);
    for (const char* key : {"embed.weight", "proj.weight", "norm.weight", "head.weight", "step_count", "plain"})
      CHECK(many.at(key).tensor().equal(one.at(key).tensor()));
    CHECK(many.at("config.lr").as_double() == 0.001);
    CHECK(many.at("config.name").as_string() == "tp-mlp");
    CHECK(many.at("config.layers").size() == 2);
  }
  // 4 ranks over 10 rows: torch.chunk sizes 3, 3, 3, 1, assembled in place.
  CHECK(one.at("embed.weight").tensor().sizes() == c10::IntArrayRef({10, 6}));
}

TEST_CASE("a DCP folder loads into a module and converts to a single file", "[dcp]") {
  Mlp m;
  const auto r = statedict::load(
      m, fixture("torch2/dcp_4ranks"),
      statedict::LoadOptions{}.rename("^embed\\.weight$", "embed").rename("^proj\\.weight$", "proj").unexpected(statedict::Policy::ignore));
  INFO(r);
  CHECK(r.ok());
  const auto one = statedict::read(fixture("torch2/dcp_1ranks"));
  CHECK(m.embed.equal(one.at("embed.weight").tensor()));
  const std::string out = sdtest::temp_path("dcp_whole.safetensors");
  statedict::save(statedict::read(fixture("torch2/dcp_2ranks")).tensors(), out);
  // The order of keys in .metadata depends on the ranks that wrote it: compare by key.
  auto by_key = [](nlohmann::json l) {
    std::sort(l.begin(), l.end(), [](const auto& a, const auto& b) { return a["key"] < b["key"]; });
    return l;
  };
  CHECK(by_key(sdtest::listing(statedict::read(out).root())) == by_key(sdtest::listing(one.root())));
}

TEST_CASE("malformed DCP metadata and chunks are refused naming the tensor or file", "[dcp][bad]") {
  // dcp_2ranks: embed.weight [10, 6] is two chunks, offsets (0, 0) and (5, 0), sizes (5, 6).
  const std::string sizes56 = "K\x05K\x06\x86", off50 = std::string("K\x05K\x00\x86", 5);
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_bounds");
    patch_metadata(d, sizes56, "K\x06K\x06\x86", 1);  // second chunk: rows 5..11 of 10
    const auto f = failure(d);
    CHECK(f.rfind("dcp.bounds", 0) == 0);
    CHECK(f.find("embed.weight chunk 1") != std::string::npos);
  }
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_overlap");
    patch_metadata(d, off50, std::string("K\x04K\x00\x86", 5));  // second chunk starts at row 4
    const auto f = failure(d);
    CHECK(f.rfind("dcp.overlap", 0) == 0);
    CHECK(f.find("embed.weight") != std::string::npos);
  }
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_gap");
    patch_metadata(d, sizes56, "K\x04K\x06\x86", 0);  // first chunk 4 rows: row 4 is nowhere
    const auto f = failure(d);
    CHECK(f.rfind("dcp.missing_chunk", 0) == 0);
    CHECK(f.find("embed.weight") != std::string::npos);
  }
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_dtype");
    patch_metadata(d, "float32", "float64");  // the metadata says float64, the chunk holds float32
    const auto f = failure(d);
    CHECK(f.rfind("dcp.chunk", 0) == 0);
    CHECK(f.find("embed.weight chunk 0") != std::string::npos);
  }
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_path");
    patch_metadata(d, "__0_0.distcp", "../_0.distcp");
    CHECK(failure(d).rfind("dcp.file", 0) == 0);
  }
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_missing_file");
    fs::remove(fs::path(d) / "__1_0.distcp");
    const auto f = failure(d);
    CHECK(f.rfind("io.open", 0) == 0);
    CHECK(f.find("__1_0.distcp") != std::string::npos);
  }
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_truncated");
    fs::resize_file(fs::path(d) / "__1_0.distcp", 100);
    const auto f = failure(d);
    CHECK(f.rfind("dcp.file", 0) == 0);
    CHECK(f.find("__1_0.distcp") != std::string::npos);
  }
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_not_metadata");
    std::ofstream(d + "/.metadata", std::ios::binary | std::ios::trunc) << std::string("\x80\x04}.", 4);
    CHECK(failure(d).rfind("dcp.metadata", 0) == 0);
  }
  {
    const auto d = copy_folder("dcp_2ranks", "dcp_bad_pickle");
    std::ofstream(d + "/.metadata", std::ios::binary | std::ios::trunc) << std::string("\x80\x04\x95\x01", 4);
    CHECK(failure(d).rfind("pickle.truncated", 0) == 0);
  }
}

TEST_CASE("a tensor stored in chunks is assembled only when used; a slice reads only the chunks it overlaps", "[dcp][lazy]") {
  const at::Tensor full = torch::arange(24, torch::kFloat).reshape({6, 4});
  auto pieces = std::make_shared<statedict::detail::Pieces>();
  pieces->dtype = statedict::detail::find_dtype(at::kFloat);
  pieces->size = {6, 4};
  // The second chunk's bytes are poison: any slice that touches them throws.
  pieces->parts.push_back({{0, 0}, {3, 4}, full.narrow(0, 0, 3).clone()});
  pieces->parts.push_back({{3, 0}, {3, 4}, at::Tensor()});
  const at::Tensor first = pieces->slice(0, 0, 3);
  CHECK(first.equal(full.narrow(0, 0, 3)));
  CHECK(first.data_ptr() == pieces->parts[0].data.data_ptr());  // one chunk holds it: a view, no copy
  CHECK(pieces->slice(0, 1, 2).equal(full.narrow(0, 1, 2)));
  CHECK_THROWS(pieces->slice(1, 0, 2));  // columns cross both chunks
  pieces->parts[1].data = full.narrow(0, 3, 3).clone();
  CHECK(pieces->slice(1, 1, 2).equal(full.narrow(1, 1, 2)));
  CHECK(pieces->slice(0, 2, 3).equal(full.narrow(0, 2, 3)));
  CHECK(pieces->whole().equal(full));
  CHECK(pieces->whole().data_ptr() == pieces->whole().data_ptr());  // assembled once

  // In a DCP folder from 4 ranks, embed.weight [10, 6] is 4 chunks: listed lazily for matching and
  // convert, assembled for Value::tensor() and tensors().
  const auto four = statedict::read(fixture("torch2/dcp_4ranks"));
  const auto one = statedict::read(fixture("torch2/dcp_1ranks"));
  {
    // Its repr (what a dict key's text and the CLI show) reads no chunk: here every chunk file has
    // changed since the read, so reading one would be file.changed.
    const std::string dir = sdtest::temp_path("dcp_repr");
    std::filesystem::remove_all(dir);
    std::filesystem::copy(fixture("torch2/dcp_4ranks"), dir, std::filesystem::copy_options::recursive);
    const auto copy = statedict::read(dir);
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".distcp") std::ofstream(e.path(), std::ios::app) << 'x';
    CHECK(copy.at("embed.weight").repr() == "tensor(float32, [10, 6])");
    CHECK(sdtest::error_id([&] { copy.at("embed.weight").tensor(); }) == "file.changed");
  }
  const auto lazy = statedict::detail::lazy_tensors(four.root());
  const auto it = std::find_if(lazy.begin(), lazy.end(), [](const auto& t) { return t.key == "embed.weight"; });
  REQUIRE(it != lazy.end());
  REQUIRE(it->lazy != nullptr);
  CHECK(it->tensor.sizes() == c10::IntArrayRef({10, 6}));
  CHECK(it->tensor.storage().nbytes() <= 4);  // a placeholder, not the data
  CHECK(statedict::detail::resolve(*it).equal(one.at("embed.weight").tensor()));
  for (const auto& t : statedict::detail::lazy_tensors(one.root())) CHECK(t.lazy == nullptr);
  for (const auto& t : four.tensors()) CHECK(t.lazy == nullptr);
}

TEST_CASE("a chunked tensor changed through Value::tensor() loads as changed, like any tensor the caller holds", "[dcp][lazy]") {
  const auto four = statedict::read(fixture("torch2/dcp_4ranks"));
  const auto one = statedict::read(fixture("torch2/dcp_1ranks"));
  const at::Tensor held = four.at("embed.weight").tensor();  // 4 chunks, assembled here; the same tensor, not a copy
  held.mul_(2);
  Mlp m;
  const auto opts =
      statedict::LoadOptions{}.rename("^embed\\.weight$", "embed").rename("^proj\\.weight$", "proj").unexpected(statedict::Policy::ignore);
  const auto r = statedict::load(m, four, opts);
  INFO(r);
  CHECK(r.ok());
  CHECK(m.embed.equal(one.at("embed.weight").tensor() * 2));  // the caller's values, not the file's
  CHECK(m.proj.equal(one.at("proj.weight").tensor()));        // not asked for: read from the chunks
  // The same in a tensor-parallel load: the rank's rows of the changed tensor.
  struct Half : torch::nn::Module {
    torch::Tensor embed = register_parameter("embed", torch::zeros({5, 6}));
    torch::Tensor proj = register_parameter("proj", torch::zeros({5, 8}));
  } half;
  const auto rt = statedict::load(half, four, statedict::LoadOptions(opts).shard("embed", 0, 1, 2));
  INFO(rt);
  CHECK(rt.ok());
  CHECK(half.embed.equal(one.at("embed.weight").tensor().narrow(0, 5, 5) * 2));
}

TEST_CASE("a DCP folder converts through lazy tensors, sliced and cast, to the bytes torch.chunk gives", "[dcp][lazy]") {
  const auto one = statedict::read(fixture("torch2/dcp_1ranks"));
  std::vector<statedict::NamedTensor> out;
  for (const auto& t : statedict::detail::lazy_tensors(statedict::read(fixture("torch2/dcp_4ranks")).root())) {
    if (t.key != "embed.weight") continue;
    statedict::detail::LazyTensor make = *t.lazy;
    make.dim = 1;
    make.start = 2;
    make.len = 2;
    make.cast = at::kDouble;
    out.push_back({"rank1", statedict::detail::placeholder(statedict::detail::find_dtype(at::kDouble), {10, 2}), nullptr,
                   std::make_shared<const statedict::detail::LazyTensor>(make)});
  }
  REQUIRE(out.size() == 1);
  const at::Tensor want = one.at("embed.weight").tensor().chunk(3, 1)[1].to(at::kDouble);
  for (const char* name : {"lazy.pt", "lazy.safetensors"}) {
    const std::string path = sdtest::temp_path(name);
    statedict::save(out, path);
    INFO(name);
    CHECK(statedict::read(path).at("rank1").tensor().equal(want));
  }
}

TEST_CASE("a lazy region one chunk holds is a view of that chunk, unread; one over several chunks or cast is made", "[dcp][lazy]") {
  using statedict::detail::LazyTensor;
  using statedict::detail::Pieces;
  auto pieces = std::make_shared<Pieces>();
  pieces->key = "w";
  pieces->dtype = statedict::detail::find_dtype(at::kFloat);
  pieces->size = {4, 6};
  const at::Tensor whole = torch::arange(24, torch::kFloat).reshape({4, 6});
  pieces->parts.push_back({{0, 0}, {2, 6}, whole.narrow(0, 0, 2).clone()});  // rows 0-1
  pieces->parts.push_back({{2, 0}, {2, 6}, whole.narrow(0, 2, 2).clone()});  // rows 2-3
  const auto lazy = [&](std::int64_t dim, std::int64_t start, std::int64_t len, std::optional<c10::ScalarType> cast = std::nullopt) {
    LazyTensor t;
    t.pieces = pieces;
    t.dim = dim;
    t.start = start;
    t.len = len;
    t.cast = cast;
    return t;
  };
  // Rows 2-3 lie in the second chunk: a view of its memory.
  const at::Tensor rows = lazy(0, 2, 2).view();
  REQUIRE(rows.defined());
  CHECK(rows.data_ptr() == pieces->parts[1].data.data_ptr());
  CHECK(torch::equal(rows, whole.narrow(0, 2, 2)));
  // A column slice spans both chunks: no view; get() assembles it.
  CHECK_FALSE(lazy(1, 1, 3).view().defined());
  CHECK(torch::equal(lazy(1, 1, 3).get(), whole.narrow(1, 1, 3)));
  // Rows 1-2 span both chunks too; a cast region is always made.
  CHECK_FALSE(lazy(0, 1, 2).view().defined());
  CHECK(torch::equal(lazy(0, 1, 2).get(), whole.narrow(0, 1, 2)));
  CHECK_FALSE(lazy(0, 0, 2, at::kDouble).view().defined());
  CHECK(torch::equal(lazy(0, 0, 2, at::kDouble).get(), whole.narrow(0, 0, 2).to(at::kDouble)));
  // The same region through get() and view(): equal values.
  CHECK(torch::equal(lazy(0, 0, 2).get(), lazy(0, 0, 2).view()));
}
