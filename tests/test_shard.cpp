// Tensor-parallel loading: LoadOptions::shard gives each rank the torch.chunk slice of a checkpoint
// tensor (DTensor's Shard(dim)), from every source, reading only about its share of the bytes.
#include "helpers.hpp"

using sdtest::fixture;

namespace {
struct Slices : torch::nn::Module {
  torch::Tensor rows, cols;
  Slices(std::vector<std::int64_t> r, std::vector<std::int64_t> c)
      : rows(register_parameter("rows", torch::zeros(r))), cols(register_parameter("cols", torch::zeros(c))) {}
};

/// Bytes this process has read from files so far (/proc/self/io rchar).
std::uint64_t bytes_read() {
  std::ifstream io("/proc/self/io");
  std::string k;
  std::uint64_t v = 0;
  while (io >> k >> v)
    if (k == "rchar:") return v;
  return 0;
}
}  // namespace

TEST_CASE("each rank gets the torch.chunk slice along the dim, from every source", "[shard]") {
  // embed.weight [10, 6] and proj.weight [5, 8] as PyTorch 2.6 wrote them: one file, and DCP folders.
  const auto whole = statedict::read(fixture("torch2/dcp_1ranks"));
  const at::Tensor embed = whole.at("embed.weight").tensor(), proj = whole.at("proj.weight").tensor();
  const std::string pt = sdtest::temp_path("shard_src.pt"), st = sdtest::temp_path("shard_src.safetensors");
  statedict::save(whole.tensors(), pt);
  statedict::save(whole.tensors(), st);
  for (const std::string& src : {pt, st, fixture("torch2/dcp_2ranks"), fixture("torch2/dcp_4ranks")}) {
    for (std::int64_t world : {1, 2, 3, 4}) {
      for (std::int64_t rank = 0; rank < world; ++rank) {
        INFO(src << " rank " << rank << " of " << world);
        const auto rows = embed.chunk(world, 0), cols = proj.chunk(world, 1);
        const at::Tensor want_rows =
            rank < static_cast<std::int64_t>(rows.size()) ? rows[static_cast<std::size_t>(rank)] : embed.narrow(0, 10, 0);
        const at::Tensor want_cols =
            rank < static_cast<std::int64_t>(cols.size()) ? cols[static_cast<std::size_t>(rank)] : proj.narrow(1, 8, 0);
        Slices m(want_rows.sizes().vec(), want_cols.sizes().vec());
        const auto o = statedict::LoadOptions{}
                           .rename("^embed\\.weight$", "rows")
                           .rename("^proj\\.weight$", "cols")
                           .ignore_unexpected("*")
                           .shard("rows", 0, rank, world)
                           .shard("cols", -1, rank, world);
        const auto r = statedict::load(m, src, o);
        INFO(r);
        REQUIRE(r.ok());
        CHECK(m.rows.equal(want_rows));
        CHECK(m.cols.equal(want_cols));
        CHECK(r.matched[0].rule.find("shard rank " + std::to_string(rank) + " of " + std::to_string(world)) != std::string::npos);
      }
    }
  }
}

TEST_CASE("legacy files shard too", "[shard]") {
  const at::Tensor fc = statedict::read(fixture("resnet_plain.pt")).at("fc.weight").tensor();  // [10, 8]
  for (std::int64_t rank = 0; rank < 3; ++rank) {
    const at::Tensor want = fc.chunk(3, 0)[static_cast<std::size_t>(rank)];
    Slices m(want.sizes().vec(), {1});
    const auto r = statedict::load(
        m, fixture("resnet_legacy.pt"),
        statedict::LoadOptions{}.rename("^fc\\.weight$", "rows").ignore_unexpected("*").ignore_missing("cols").shard("rows", 0, rank, 3));
    INFO(r);
    REQUIRE(r.ok());
    CHECK(m.rows.equal(want));
  }
}

TEST_CASE("a module shape that is not the rank's slice is a shape mismatch naming both and the slice", "[shard]") {
  Slices m({4, 6}, {5, 4});
  const auto r = statedict::diff(m, fixture("torch2/dcp_2ranks"),
                                 statedict::LoadOptions{}
                                     .rename("^embed\\.weight$", "rows")
                                     .rename("^proj\\.weight$", "cols")
                                     .ignore_unexpected("*")
                                     .shard("rows", 0, 1, 2)
                                     .shard("cols", 1, 0, 2));
  CHECK_FALSE(r.ok());
  REQUIRE(r.shape_mismatch.size() == 1);
  CHECK(r.shape_mismatch[0].key == "rows");
  std::ostringstream text;
  text << r;
  CHECK(text.str().find(
            "[5, 6] from checkpoint (the slice of rank 1 of 2: [5, 10) along dim 0 of [10, 6]), the shape in current model is [4, 6]") !=
        std::string::npos);
  CHECK(sdtest::error_id([] { statedict::LoadOptions{}.shard("x", 0, 2, 2); }) == "options.bad_shard");
  const auto bad_dim = statedict::diff(
      m, fixture("torch2/dcp_2ranks"),
      statedict::LoadOptions{}.rename("^embed\\.weight$", "rows").ignore_unexpected("*").ignore_missing("cols").shard("rows", 2, 0, 2));
  CHECK_FALSE(bad_dim.ok());
}

TEST_CASE("with 2 ranks a dim-0 shard reads about half of the tensor's bytes", "[shard]") {
  // 8 MiB of rows: rank 1 of 2 loads the second half with pread, straight into the parameter.
  const at::Tensor big = torch::arange(2048 * 1024, torch::kFloat).reshape({2048, 1024});
  const std::string path = sdtest::temp_path("shard_big.pt");
  statedict::save(std::vector<statedict::NamedTensor>{{"w", big}}, path);
  Slices m({1024, 1024}, {1});
  const std::uint64_t before = bytes_read();
  const auto r = statedict::load(m, path, statedict::LoadOptions{}.rename("^w$", "rows").ignore_missing("cols").shard("rows", 0, 1, 2));
  const std::uint64_t read = bytes_read() - before;
  REQUIRE(r.ok());
  CHECK(m.rows.equal(big.narrow(0, 1024, 1024)));
  const auto tensor_bytes = static_cast<std::uint64_t>(big.numel()) * 4;
  INFO("read " << read << " of " << tensor_bytes);
  CHECK(read <= tensor_bytes * 55 / 100);
  CHECK(read >= tensor_bytes / 2);
}

TEST_CASE("with 2 ranks a dim-1 shard of wide rows reads only its half of each row", "[shard]") {
  // Rows of 8 KiB: each rank's half-row is a 4 KiB run, read with pread run by run rather than by
  // touching (and reading ahead) whole rows of the mapping.
  const at::Tensor big = torch::arange(1024 * 2048, torch::kFloat).reshape({1024, 2048});
  const std::string path = sdtest::temp_path("shard_wide.safetensors");
  statedict::save(std::vector<statedict::NamedTensor>{{"w", big}}, path);
  for (std::int64_t rank : {0, 1}) {
    Slices m({1024, 1024}, {1});
    const std::uint64_t before = bytes_read();
    const auto r =
        statedict::load(m, path, statedict::LoadOptions{}.rename("^w$", "rows").ignore_missing("cols").shard("rows", 1, rank, 2));
    const std::uint64_t read = bytes_read() - before;
    REQUIRE(r.ok());
    CHECK(m.rows.equal(big.narrow(1, rank * 1024, 1024)));
    const auto tensor_bytes = static_cast<std::uint64_t>(big.numel()) * 4;
    INFO("rank " << rank << " read " << read << " of " << tensor_bytes);
    CHECK(read <= tensor_bytes * 55 / 100);
    CHECK(read >= tensor_bytes / 2);
  }
}

TEST_CASE("a rank's dim-1 slice of a tensor in chunks is read run by run from the one chunk that holds it", "[shard][dcp]") {
  // A chunk as a DCP folder's are: a view of its file, not read. Rows of 8 KiB; each rank's half of
  // a row is a 4 KiB run, which the load reads with pread straight into the parameter (the chunk's
  // view), not by reading the whole span first (the lazy tensor's get()).
  const at::Tensor big = torch::arange(1024 * 2048, torch::kFloat).reshape({1024, 2048});
  const std::string path = sdtest::temp_path("shard_chunk.safetensors");
  statedict::save(std::vector<statedict::NamedTensor>{{"w", big}}, path);
  const auto ck = statedict::read(path);
  const auto listed = statedict::detail::lazy_tensors(ck.root());
  REQUIRE(listed.size() == 1);
  auto pieces = std::make_shared<statedict::detail::Pieces>();
  pieces->key = "w";
  pieces->dtype = statedict::detail::find_dtype(at::kFloat);
  pieces->size = {1024, 2048};
  pieces->parts.push_back({{0, 0}, {1024, 2048}, listed[0].tensor});
  for (std::int64_t rank : {0, 1}) {
    INFO("rank " << rank);
    const std::vector<statedict::detail::Target> targets{{"w", torch::zeros({1024, 1024})}};
    const auto lazy = std::make_shared<const statedict::detail::LazyTensor>(
        statedict::detail::LazyTensor{pieces, {}, 1, rank * 1024, 1024, std::nullopt});
    const std::vector<statedict::detail::Copy> copies{{0, torch::zeros({1024, 1024}), lazy, true}};
    std::vector<std::string> warnings, written;
    const std::function<void(std::uint64_t, std::uint64_t)> none;
    statedict::detail::ProgressSink progress(none, warnings);  // holds the function by reference
    const std::uint64_t before = bytes_read();
    statedict::detail::apply(targets, copies, false, true, 1, std::nullopt, progress, written);
    const std::uint64_t read = bytes_read() - before;
    CHECK(targets[0].tensor.equal(big.narrow(1, rank * 1024, 1024)));
    const auto tensor_bytes = static_cast<std::uint64_t>(big.numel()) * 4;
    INFO("read " << read << " of " << tensor_bytes);
    CHECK(read >= tensor_bytes / 2);
    CHECK(read <= tensor_bytes * 55 / 100);
  }
}
