// .pt2 archives written by PyTorch 2.14 (tests/fixtures/generate_torch214_pt2.py): torch.export.save
// archives read as the state dict torch.export.load gives (raw and pickled weights), loaded into a
// module and converted; AOTInductor packages read where their weights are files and refused, with
// the reason, where they are compiled into the .so; every malformed config refused naming the file,
// the record and the key.
#include "helpers.hpp"

#include <statedict/detail/formats/pt2.hpp>
#include <statedict/detail/write/writer.hpp>

#include <map>
#include <optional>

// Everything in a named namespace: the unity build puts this file in one unit with others, whose
// helpers of the same names (failure, Mlp) live in their anonymous namespaces; these hide them.
namespace pt2test {

using sdtest::fixture;

nlohmann::json expected(const std::string& name) { return sdtest::expected_listing("torch214/" + name); }

/// The archive's entries (name below the top folder -> bytes).
std::vector<std::pair<std::string, std::string>> entries(const std::string& path, std::string* top = nullptr) {
  statedict::detail::ZipArchive z(statedict::detail::MappedFile::open(path));
  if (top != nullptr) *top = z.top();
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : z.entries()) out.emplace_back(e.name.substr(z.top().size() + 1), z.read(e));
  return out;
}

/// A copy of a fixture with some records replaced (a value) or dropped (nullopt), and others added.
std::string rewrite(const std::string& name, const std::string& as, const std::map<std::string, std::optional<std::string>>& change) {
  std::string top;
  auto all = entries(fixture("torch214/" + name), &top);
  const std::string out = sdtest::temp_path(as);
  statedict::detail::AtomicFile f(out);
  statedict::detail::ZipWriter zip(f);
  std::map<std::string, std::optional<std::string>> left = change;
  for (auto& [rel, bytes] : all) {
    auto it = left.find(rel);
    if (it == left.end()) {
      zip.add(top + "/" + rel, bytes.data(), bytes.size());
      continue;
    }
    if (it->second) zip.add(top + "/" + rel, it->second->data(), it->second->size());
    left.erase(it);
  }
  for (auto& [rel, bytes] : left)
    if (bytes) zip.add(top + "/" + rel, bytes->data(), bytes->size());
  zip.finish();
  f.commit();
  return out;
}

/// A record of a fixture, as JSON (in its order).
nlohmann::ordered_json record_json(const std::string& name, const std::string& rel) {
  for (auto& [r, bytes] : entries(fixture("torch214/" + name)))
    if (r == rel) return nlohmann::ordered_json::parse(bytes);
  FAIL("no record " << rel << " in " << name);
  return {};
}

constexpr const char* weights_config = "data/weights/model_weights_config.json";
constexpr const char* constants_config = "data/constants/model_constants_config.json";

/// A copy of export_mlp.pt2 whose weights config is changed by `edit`.
template <class F> std::string with_weights_config(const std::string& as, F edit, const char* fixture_name = "export_mlp.pt2") {
  nlohmann::ordered_json cfg = record_json(fixture_name, weights_config);
  edit(cfg["config"]);
  return rewrite(fixture_name, as, {{weights_config, cfg.dump()}});
}

std::string failure(const std::string& path, const statedict::ReadOptions& opts = {}) {
  try {
    const auto ck = statedict::read(path, opts);
    for (const auto& t : ck.tensors()) (void)statedict::tensor_sha256(t.tensor);
  } catch (const statedict::Error& e) { return std::string(e.id()) + " | " + e.what(); }
  return "read succeeded";
}

nlohmann::json sorted(nlohmann::json j) {
  std::sort(j.begin(), j.end());
  return j;
}

nlohmann::json keys_of(const nlohmann::json& listing) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : listing) out.push_back(e["key"]);
  return out;
}

/// The module export_mlp.pt2 was exported from, as far as its state dict goes.
struct Mlp : torch::nn::Module {
  torch::nn::Linear fc = register_module("fc", torch::nn::Linear(4, 3));
  torch::Tensor a = register_parameter("a", torch::zeros({5}));
  torch::Tensor b = register_parameter("b", torch::zeros({5}));
  torch::Tensor h = register_parameter("h", torch::zeros({3}, torch::kBFloat16));
  torch::Tensor steps = register_buffer("steps", torch::zeros({2, 3}, torch::kInt64));
};

TEST_CASE("a torch.export archive reads as the state dict torch.export.load gives", "[pt2]") {
  for (const char* name : {"export_mlp.pt2", "export_pickle.pt2"}) {
    INFO(name);
    const auto want = expected(name);
    for (const bool mapped : {false, true}) {
      const auto ck = statedict::read(fixture(std::string("torch214/") + name), statedict::ReadOptions{}.map_tensors(mapped));
      CHECK(ck.format() == statedict::Format::pt2);
      CHECK(sdtest::listing(ck.root()) == want["tensors"]);
      // The constants are named, not read, by default; read on request, after the state dict.
      std::string names;
      for (const auto& c : want["constants"]) names += (names.empty() ? "" : ", ") + c["key"].get<std::string>();
      CHECK(ck.metadata().at("pt2.constants") == names);
      const auto all =
          statedict::read(fixture(std::string("torch214/") + name), statedict::ReadOptions{}.map_tensors(mapped).pt2_constants(true));
      nlohmann::json both = want["tensors"];
      for (const auto& c : want["constants"]) both.push_back(c);
      CHECK(sdtest::listing(all.root()) == both);
    }
  }
  // The fixtures hold what the reader must handle: raw and pickled weights, a transposed weight,
  // two weights viewing one record, a bfloat16 and an int64 tensor, two kinds of constants.
  CHECK(expected("export_mlp.pt2")["use_pickle"] == nlohmann::json::array({false}));
  CHECK(expected("export_pickle.pt2")["use_pickle"] == nlohmann::json::array({true}));
  const auto cfg = record_json("export_mlp.pt2", weights_config)["config"];
  CHECK(cfg["fc.weight"]["tensor_meta"]["strides"] == nlohmann::ordered_json::parse(R"([{"as_int": 1}, {"as_int": 3}])"));
  CHECK(cfg["a"]["path_name"] == cfg["b"]["path_name"]);
  CHECK(cfg["b"]["tensor_meta"]["storage_offset"] == nlohmann::ordered_json::parse(R"({"as_int": 5})"));
}

TEST_CASE("weights that share a record share a storage, as torch's do", "[pt2]") {
  const auto ck = statedict::read(fixture("torch214/export_mlp.pt2"));
  const at::Tensor a = ck.at("a").tensor(), b = ck.at("b").tensor();
  CHECK(a.storage().is_alias_of(b.storage()));
  CHECK(b.storage_offset() - a.storage_offset() == 5);
  CHECK(ck.at("fc.weight").tensor().strides() == c10::IntArrayRef({1, 3}));
}

TEST_CASE("a torch.export archive loads into a module and converts like any checkpoint", "[pt2]") {
  for (const char* name : {"export_mlp.pt2", "export_pickle.pt2"}) {
    INFO(name);
    Mlp m;
    const auto r = statedict::load(m, fixture(std::string("torch214/") + name));
    INFO(r);
    CHECK(r.ok());
    CHECK(r.loaded == 6);
    // The module lists its state dict in its own order, the archive in the writer's: compare by key.
    auto by_key = [](nlohmann::json l) {
      std::sort(l.begin(), l.end(), [](const auto& x, const auto& y) { return x["key"] < y["key"]; });
      return l;
    };
    CHECK(by_key(sdtest::module_listing(m)) == by_key(expected(name)["tensors"]));
    const std::string out = sdtest::temp_path(std::string(name) + ".safetensors");
    statedict::save(statedict::read(fixture(std::string("torch214/") + name)).tensors(), out);
    CHECK(sdtest::listing(statedict::read(out).root()) == expected(name)["tensors"]);
  }
}

TEST_CASE("an AOTInductor package with weight files reads them as torch builds them", "[pt2][aoti]") {
  const auto want = expected("aoti_pickle.pt2");
  const auto ck = statedict::read(fixture("torch214/aoti_pickle.pt2"));
  CHECK(ck.format() == statedict::Format::aoti_package);
  CHECK(sdtest::listing(ck.root()) == want["tensors"]);
  // What the loader updates: its constant FQNs (in no particular order), the same names.
  CHECK(sorted(keys_of(want["tensors"])) == sorted(want["constant_fqns"]));
  const auto pkg = statedict::detail::describe_pt2(fixture("torch214/aoti_pickle.pt2"));
  REQUIRE(pkg.aoti.size() == 1);
  CHECK(pkg.aoti[0].weights == statedict::detail::AotiModel::Weights::files);
  for (const auto& c : pkg.aoti[0].constants) CHECK((c.dtype != nullptr && std::string(c.dtype->torch) == "float32"));
}

TEST_CASE("an AOTInductor package whose constants are in its .so is refused, saying so", "[pt2][aoti]") {
  const auto want = expected("aoti_so.pt2");
  const std::string path = fixture("torch214/aoti_so.pt2");
  const auto pkg = statedict::detail::describe_pt2(path);
  REQUIRE(pkg.aoti.size() == 1);
  const auto& m = pkg.aoti[0];
  CHECK(m.name == "model");
  CHECK(m.weights == statedict::detail::AotiModel::Weights::in_library);
  REQUIRE(m.libraries.size() == 1);
  // The wrapper source names every constant the loader reports, with its dtype and shape.
  nlohmann::json fqns = nlohmann::json::array();
  for (const auto& c : m.constants)
    if (!c.from_folded) fqns.push_back(c.fqn);
  CHECK(sorted(fqns) == sorted(want["constant_fqns"]));
  for (const auto& c : m.constants)
    for (const auto& t : want["state_dict"])
      if (t["key"] == c.fqn) {
        CHECK(t["shape"] == nlohmann::json(c.sizes));
        CHECK(t["dtype"] == c.dtype->torch);
      }
  const std::string why = failure(path);
  CHECK(why.rfind("pt2.compiled_in | ", 0) == 0);
  CHECK(why.find(path) != std::string::npos);
  CHECK(why.find("the package's " + std::to_string(m.constants.size()) + " constants are compiled into " + m.libraries[0]) !=
        std::string::npos);
  CHECK(why.find("package_constants_in_so=False") != std::string::npos);
  CHECK(why.find("statedict::load(AOTIModelPackageLoader&, ...)") != std::string::npos);
}

TEST_CASE("an AOTInductor package of one binary blob reads through its wrapper source", "[pt2][aoti]") {
  const auto want = expected("aoti_blob.pt2");
  const auto ck = statedict::read(fixture("torch214/aoti_blob.pt2"));
  CHECK(ck.format() == statedict::Format::aoti_package);
  nlohmann::json sd = nlohmann::json::array();
  for (const auto& t : want["state_dict"])
    for (const auto& k : want["constant_fqns"])
      if (t["key"] == k) sd.push_back(t);
  CHECK(sdtest::listing(ck.root()) == sd);
  // The blob has no header: without the wrapper source (a package built from the compile cache can
  // lack it) nothing says where a constant is, and the read says so.
  const auto pkg = statedict::detail::describe_pt2(fixture("torch214/aoti_blob.pt2"));
  REQUIRE(pkg.aoti.size() == 1);
  const std::string blob = pkg.aoti[0].blob, source = pkg.aoti[0].wrapper_source;
  CHECK(pkg.aoti[0].weights == statedict::detail::AotiModel::Weights::blob);
  std::string why = failure(rewrite("aoti_blob.pt2", "aoti_blob_nosource.pt2", {{source, std::nullopt}}));
  CHECK(why.rfind("pt2.blob | ", 0) == 0);
  CHECK(why.find(blob + ": the constants are one binary blob, which does not describe itself") != std::string::npos);
  // A blob and a source that disagree.
  why = failure(rewrite("aoti_blob.pt2", "aoti_blob_short.pt2", {{blob, std::string(100, '\0')}}));
  CHECK(why.rfind("pt2.blob | ", 0) == 0);
  CHECK(why.find("run past the 100-byte blob") != std::string::npos);
  why = failure(rewrite("aoti_blob.pt2", "aoti_blob_long.pt2", {{blob, std::string(2048, '\0')}}));
  CHECK(why.find("the blob has 2048 bytes, the wrapper source's constants take 832") != std::string::npos);
}

TEST_CASE("malformed torch.export archives are refused naming the file, record and key", "[pt2][bad]") {
  auto has = [](const std::string& why, const std::string& id, const std::string& text) {
    INFO(why);
    CHECK(why.rfind(id + " | ", 0) == 0);
    CHECK(why.find(text) != std::string::npos);
  };
  // A weight file that is missing.
  std::string p = rewrite("export_mlp.pt2", "pt2_missing.pt2", {{"data/weights/weight_0", std::nullopt}});
  has(failure(p), "format.missing_record", "data/weights/weight_0: record of '");
  // A path outside data/weights.
  p = with_weights_config("pt2_path.pt2", [](auto& c) { c["fc.bias"]["path_name"] = "../constants/tensor_0"; });
  has(failure(p), "pt2.bad_path", "model_weights_config.json: config.fc.bias.path_name: names '../constants/tensor_0'");
  p = with_weights_config("pt2_path2.pt2", [](auto& c) { c["fc.bias"]["path_name"] = "sub/weight_0"; });
  has(failure(p), "pt2.bad_path", "not a plain file name inside data/weights");
  // An unknown dtype code.
  p = with_weights_config("pt2_dtype.pt2", [](auto& c) { c["fc.bias"]["tensor_meta"]["dtype"] = 99; });
  has(failure(p), "pt2.dtype", "config.fc.bias.tensor_meta.dtype: dtype code 99");
  // Sizes, strides and offsets that do not fit the record.
  p = with_weights_config("pt2_sizes.pt2", [](auto& c) { c["fc.bias"]["tensor_meta"]["sizes"][0]["as_int"] = 1000; });
  has(failure(p), "pt2.bounds", "('fc.bias'): sizes [1000], strides [1] and storage offset 0 reach element 999");
  p = with_weights_config("pt2_offset.pt2", [](auto& c) { c["b"]["tensor_meta"]["storage_offset"]["as_int"] = 6; });
  has(failure(p), "pt2.bounds", "reach element 10 of a record holding 10 float32 elements");
  p = with_weights_config("pt2_stride.pt2", [](auto& c) { c["fc.weight"]["tensor_meta"]["strides"][1]["as_int"] = 4; });
  has(failure(p), "pt2.bounds", "fc.weight");
  p = with_weights_config("pt2_dims.pt2", [](auto& c) { c["fc.weight"]["tensor_meta"]["strides"].erase(1); });
  has(failure(p), "pt2.bounds", "config.fc.weight.tensor_meta: has 2 sizes but 1 strides");
  p = with_weights_config("pt2_negative.pt2", [](auto& c) { c["fc.bias"]["tensor_meta"]["sizes"][0]["as_int"] = -3; });
  has(failure(p), "pt2.config", "config.fc.bias.tensor_meta.sizes[0]: is not a non-negative integer");
  p = with_weights_config("pt2_symbolic.pt2", [](auto& c) {
    c["fc.bias"]["tensor_meta"]["sizes"][0] = nlohmann::ordered_json::parse(R"({"as_expr": {"expr_str": "s0"}})");
  });
  has(failure(p), "pt2.config", "config.fc.bias.tensor_meta.sizes[0]: is symbolic");
  // A key torch always writes, missing.
  p = with_weights_config("pt2_key.pt2", [](auto& c) { c["fc.bias"].erase("is_param"); });
  has(failure(p), "pt2.config", "model_weights_config.json: config.fc.bias: has no 'is_param'");
  // Not JSON at all; JSON with a duplicate key.
  p = rewrite("export_mlp.pt2", "pt2_json.pt2", {{weights_config, std::string("{\"config\": {")}});
  has(failure(p), "json.parse", "model_weights_config.json");
  p = rewrite("export_mlp.pt2", "pt2_dup.pt2", {{weights_config, std::string(R"({"config": {}, "config": {}})")}});
  has(failure(p), "json.duplicate", "model_weights_config.json");
  // A record of another size than a whole number of elements.
  p = rewrite("export_mlp.pt2", "pt2_odd.pt2", {{"data/weights/weight_0", std::string(7, '\0')}});
  CHECK(failure(p).rfind("pt2.bounds | ", 0) == 0);
  // archive_format other than pt2.
  p = rewrite("export_mlp.pt2", "pt2_format.pt2", {{"archive_format", std::string("pt3")}});
  has(failure(p), "pt2.archive", "archive_format is 'pt3'");
  // A weights config gone: the program has no state dict.
  p = rewrite("export_mlp.pt2", "pt2_noconfig.pt2", {{weights_config, std::nullopt}});
  has(failure(p), "format.missing_record", "data/weights/model_weights_config.json");
  // A constants config with a bad entry: refused even when the constants are not read.
  nlohmann::ordered_json cc = record_json("export_mlp.pt2", constants_config);
  cc["config"].begin().value()["tensor_meta"]["dtype"] = "float";
  p = rewrite("export_mlp.pt2", "pt2_const.pt2", {{constants_config, cc.dump()}});
  has(failure(p), "pt2.config", "model_constants_config.json: config.");
}

TEST_CASE("a use_pickle record that is not a torch.save'd tensor is refused", "[pt2][bad]") {
  const auto cfg = record_json("export_pickle.pt2", weights_config)["config"];
  const std::string rec = "data/weights/" + cfg["fc.bias"]["path_name"].get<std::string>();
  auto has = [](const std::string& why, const std::string& text) {
    INFO(why);
    CHECK(why.rfind("pt2.pickle | ", 0) == 0);
    CHECK(why.find(text) != std::string::npos);
  };
  std::string p = rewrite("export_pickle.pt2", "pt2_pickle_garbage.pt2", {{rec, std::string("not a zip at all, just text")}});
  has(failure(p), "record of 'fc.bias' is not a readable torch.save file");
  // A real torch.save file holding a dict.
  p = rewrite("export_pickle.pt2", "pt2_pickle_dict.pt2", {{rec, sdtest::read_bytes(fixture("resnet_plain.pt"))}});
  has(failure(p), "record of 'fc.bias' holds a dict, not a tensor");
  // A tensor of another shape than its tensor_meta.
  const std::string other = "data/weights/" + cfg["steps"]["path_name"].get<std::string>();
  std::string bytes;
  for (auto& [r, b] : entries(fixture("torch214/export_pickle.pt2")))
    if (r == other) bytes = b;
  p = rewrite("export_pickle.pt2", "pt2_pickle_shape.pt2", {{rec, bytes}});
  has(failure(p), "holds a int64 [2, 3] tensor; its tensor_meta says float32 [3]");
  // A pickle that runs code.
  p = rewrite("export_pickle.pt2", "pt2_pickle_evil.pt2", {{rec, sdtest::read_bytes(fixture("evil_os_system.pt"))}});
  has(failure(p), "posix");
}

TEST_CASE("malformed AOTInductor weight configs are refused naming the key", "[pt2][aoti][bad]") {
  const char* rel = "data/aotinductor/model/weights_config.json";
  nlohmann::ordered_json cfg = record_json("aoti_pickle.pt2", rel);
  const std::string first = cfg.begin().key();
  auto edited = [&](const std::string& as, auto edit) {
    nlohmann::ordered_json c = cfg;
    edit(c[first]);
    return rewrite("aoti_pickle.pt2", as, {{rel, c.dump()}});
  };
  std::string why = failure(edited("aoti_path.pt2", [](auto& e) { e[0] = "../models/model.json"; }));
  CHECK(why.rfind("pt2.bad_path | ", 0) == 0);
  CHECK(why.find("weights_config.json: " + first + "[0]") != std::string::npos);
  why = failure(edited("aoti_shape.pt2", [](auto& e) { e[1][0] = 100000; }));
  CHECK(why.rfind("pt2.bounds | ", 0) == 0);
  why = failure(edited("aoti_form.pt2", [](auto& e) { e.erase(3); }));
  CHECK(why.rfind("pt2.config | ", 0) == 0);
  CHECK(why.find(first + ": is not [file, sizes, strides, storage_offset]") != std::string::npos);
}

}  // namespace pt2test
