// Issue #40, sections 3 and 4: files that are not what their user thinks (an optimizer's state, a
// detectron2 pickle of numpy arrays, a format under another format's name) and a report that fits
// a screen (folded key lists). Fixtures: fixtures/generate_files.py.
#include "helpers.hpp"
#include "models.hpp"

#include <statedict/detail/fold.hpp>

#include <ctime>
#include <fstream>
#include <random>
#include <set>

using sdtest::fixture;
using statedict::LoadOptions;

namespace files_test {

std::string text_of(const statedict::LoadReport& r) {
  std::ostringstream os;
  os << r;
  return os.str();
}

std::string files(const std::string& name) { return fixture("files/" + name); }

/// generate_files.py's listing of files/<name>.
nlohmann::json expected(const std::string& name) { return sdtest::expected_listing("files/" + name); }

/// The listing of the tensors under `prefix`, their keys relative to it (the model under "model.").
nlohmann::json under(const nlohmann::json& listing, const std::string& prefix) {
  nlohmann::json out = nlohmann::json::array();
  for (auto e : listing)
    if (e["key"].get<std::string>().rfind(prefix, 0) == 0) {
      e["key"] = e["key"].get<std::string>().substr(prefix.size());
      out.push_back(e);
    }
  return out;
}

/// A copy of `from` under another name (the content detection must not care).
std::string renamed(const std::string& from, const std::string& name) { return sdtest::write_temp(name, sdtest::read_bytes(from)); }

std::vector<std::string> files_fingerprint(torch::nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& t : statedict::detail::module_targets(m)) out.push_back(t.key + "=" + statedict::tensor_sha256(t.tensor));
  return out;
}

/// The keys a folded entry stands for: every choice of its {..} alternatives.
std::vector<std::string> expand(const std::string& text) {
  std::vector<std::string> out{""};
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '{') {
      for (auto& o : out) o += text[i];
      ++i;
      continue;
    }
    const std::size_t close = text.find('}', i);
    std::vector<std::string> alts;
    std::stringstream ss(text.substr(i + 1, close - i - 1));
    for (std::string a; std::getline(ss, a, ',');) {
      const auto dots = a.find("..");
      if (dots == std::string::npos) {
        alts.push_back(a);
        continue;
      }
      for (long v = std::stol(a.substr(0, dots)); v <= std::stol(a.substr(dots + 2)); ++v) alts.push_back(std::to_string(v));
    }
    std::vector<std::string> next;
    for (const auto& o : out)
      for (const auto& a : alts) next.push_back(o + a);
    out = std::move(next);
    i = close + 1;
  }
  return out;
}

/// Folding is exact: the entries expand to the keys, each key once, and each count is its expansion's size.
void check_exact(const std::vector<std::string>& keys) {
  const auto folded = statedict::detail::fold_keys(keys);
  std::multiset<std::string> got;
  for (const auto& f : folded) {
    const auto e = expand(f.text);
    INFO(f.text);
    CHECK(e.size() == f.count);
    got.insert(e.begin(), e.end());
  }
  CHECK(got == std::multiset<std::string>(keys.begin(), keys.end()));
}

std::vector<std::string> texts(const std::vector<statedict::detail::FoldedKeys>& f) {
  std::vector<std::string> out;
  for (const auto& e : f) out.push_back(e.text + " " + std::to_string(e.count));
  return out;
}

/// Builds the module the way Python names it: a ModuleList of blocks, each with attn.{q,k,v} and norm.
torch::nn::ModuleList layers96(torch::nn::Module& root) {
  auto layers = root.register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < 96; ++i) {
    auto block = std::make_shared<torch::nn::Module>();
    auto attn = block->register_module("attn", std::make_shared<torch::nn::Module>());
    for (const char* p : {"q", "k", "v"})
      attn->register_module(p, std::make_shared<torch::nn::Module>())->register_parameter("weight", torch::zeros({2}));
    block->register_module("norm", std::make_shared<torch::nn::Module>())->register_parameter("weight", torch::zeros({2}));
    layers->push_back(block);
  }
  root.register_module("head", std::make_shared<torch::nn::Module>())->register_parameter("weight", torch::zeros({2}));
  return layers;
}

}  // namespace files_test

using namespace files_test;

// ---- section 4: folding ----------------------------------------------------------------------------

TEST_CASE("fold_keys folds indices into ranges with gaps, and alternatives into one entry", "[fold]") {
  using statedict::detail::fold_keys;
  std::vector<std::string> keys;
  for (int i : {0, 1, 2, 3, 5, 7, 8, 9}) keys.push_back("layers." + std::to_string(i) + ".w");
  CHECK(texts(fold_keys(keys)) == std::vector<std::string>{"layers.{0..3,5,7..9}.w 8"});

  keys.clear();
  for (int i = 0; i < 96; ++i)
    for (const char* p : {"q", "k", "v"}) keys.push_back("layers." + std::to_string(i) + ".attn." + p + ".weight");
  CHECK(texts(fold_keys(keys)) == std::vector<std::string>{"layers.{0..95}.attn.{q,k,v}.weight 288"});

  // A run of two is listed; alternatives print in the order the keys give them.
  CHECK(texts(fold_keys({"a.5.x", "a.6.x", "b.weight", "b.bias"})) == std::vector<std::string>{"a.{5,6}.x 2", "b.{weight,bias} 2"});
  // Keys one component apart fold; a key of another length or two components apart does not.
  CHECK(texts(fold_keys({"bn1.weight", "conv1.weight", "bn1.bias"})) == std::vector<std::string>{"bn1.{weight,bias} 2", "conv1.weight 1"});
}

TEST_CASE("fold_keys never claims a key that is not in the list: the counts are exact", "[fold]") {
  using statedict::detail::fold_keys;
  // layers.1 lacks k: folding to layers.{0,1}.{q,k} would claim 4 keys for 3.
  const std::vector<std::string> three{"layers.0.q", "layers.0.k", "layers.1.q"};
  check_exact(three);
  std::size_t total = 0;
  for (const auto& f : fold_keys(three)) total += f.count;
  CHECK(total == 3);
  // "01" is no index (it does not read back as 01 from a range); duplicates count once.
  check_exact({"a.01.w", "a.1.w", "a.2.w", "a.3.w"});
  CHECK(fold_keys({"x.1", "x.1", "x.2"}).front().count == 2);
  // Random subsets of a grid (layers x blocks x names), with holes anywhere: always exact.
  std::mt19937 rng(40);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::string> keys;
    for (int l = 0; l < 6; ++l)
      for (int b = 0; b < 4; ++b)
        for (const char* n : {"q", "k", "v", "norm"})
          if (rng() % 5 != 0) keys.push_back("enc." + std::to_string(l) + ".blk." + std::to_string(b) + "." + n + ".weight");
    std::shuffle(keys.begin(), keys.end(), rng);
    check_exact(keys);
  }
}

TEST_CASE("fold_keys handles 200k keys quickly", "[fold]") {
  std::vector<std::string> keys;
  for (int i = 0; i < 20000; ++i)
    for (const char* p : {"q", "k", "v", "o", "norm", "up", "down", "gate", "ln1", "ln2"})
      keys.push_back("model.layers." + std::to_string(i) + "." + p + ".weight");
  const std::clock_t t0 = std::clock();  // CPU time: the machine may be busy with other builds
  const auto folded = statedict::detail::fold_keys(keys);
  const double s = static_cast<double>(std::clock() - t0) / CLOCKS_PER_SEC;
  CHECK(texts(folded) == std::vector<std::string>{"model.layers.{0..19999}.{q,k,v,o,norm,up,down,gate,ln1,ln2}.weight 200000"});
  CHECK(s < 3.0);  // 0.25 s here; merging two entries at a time (a 20k-index range copied 20k times) took 10
}

TEST_CASE("quoted_list prints short lists as PyTorch does and long ones folded, with counts", "[fold]") {
  using statedict::detail::quoted_list;
  CHECK(quoted_list({"fc.weight", "fc.bias"}, true) == "\"fc.weight\", \"fc.bias\"");
  std::vector<std::string> keys;
  for (int i = 0; i < 10; ++i) keys.push_back("layers." + std::to_string(i) + ".w");
  keys.push_back("head.w");
  CHECK(quoted_list(keys, true) == "\"layers.{0..9}.w\" (10), \"head.w\"; 11 keys in all");
  CHECK(quoted_list(keys, false).rfind("\"layers.0.w\", \"layers.1.w\"", 0) == 0);
  for (int i = 0; i < 40; ++i) keys.push_back("x" + std::to_string(i) + ".w" + std::to_string(i));
  CHECK(quoted_list(keys, true).find(", ... (51 keys in all)") != std::string::npos);
}

TEST_CASE("a report of a 96-layer model fits a screen; the structured report keeps every key", "[fold][load]") {
  const auto target = statedict::read(files("layers96.pt"));
  const auto source = statedict::read(fixture("resnet_plain.pt"));
  const auto r = statedict::diff(target, source);
  REQUIRE_FALSE(r.ok());
  CHECK(r.missing.size() == 385);
  CHECK(r.unexpected.size() == 122);
  CHECK(r.to_json()["missing"].size() == 385);
  const std::string text = text_of(r);
  INFO(text);
  CHECK(text.find("Missing key(s) in state_dict: \"layers.{0..95}.attn.{q,k,v}.weight\" (288), \"layers.{0..95}.norm.weight\" (96), "
                  "\"head.weight\"; 385 keys in all.") != std::string::npos);
  CHECK(text.find("\"{layer1,layer2,layer3,layer4}.{0,1}.{conv1,conv2}.weight\" (16)") != std::string::npos);
  std::size_t lines = 0;
  for (char c : text) lines += c == '\n';
  CHECK(lines < 20);

  // A tolerated key leaves a gap in the range.
  const auto gap = statedict::diff(target, source, LoadOptions{}.ignore_missing("layers.5.attn.k.weight"));
  CHECK(text_of(gap).find("\"layers.{0..95}.attn.{q,v}.weight\" (192), \"layers.{0..4,6..95}.attn.k.weight\" (95)") != std::string::npos);
}

TEST_CASE("the 96-layer file loads into the module it was saved from", "[fold][load]") {
  torch::nn::Module m;
  layers96(m);
  const auto r = statedict::load(m, files("layers96.pt"));
  INFO(text_of(r));
  REQUIRE(r.ok());
  CHECK(r.loaded == 385);
  const auto ck = statedict::read(files("layers96.pt"));
  // The same keys and bytes (the module lists them layer by layer, the file all q, k, v first).
  auto by_key = [](nlohmann::json l) {
    std::sort(l.begin(), l.end(), [](const nlohmann::json& x, const nlohmann::json& y) { return x["key"] < y["key"]; });
    return l;
  };
  CHECK(by_key(sdtest::module_listing(m)) == by_key(sdtest::listing(ck.root())));
}

// ---- section 3: content, not names -------------------------------------------------------------------

TEST_CASE("a file is read by its content whatever its name, and a misleading name is noted", "[files][detect]") {
  struct Case {
    std::string from, as;
    statedict::Format format;
    std::string note;  // "" when the name fits
  };
  const std::vector<Case> cases{
      {fixture("resnet_plain.pt"), "zip_named.safetensors", statedict::Format::torch_zip,
       "named '.safetensors', but it is a torch.save zip (PyTorch 1.6 or later): read as that"},
      {fixture("resnet.safetensors"), "safetensors_named.pt", statedict::Format::safetensors,
       "named '.pt', but it is a safetensors file: read as that"},
      {fixture("resnet.safetensors"), "safetensors_named.bin", statedict::Format::safetensors,
       "named '.bin', but it is a safetensors file: read as that"},
      {fixture("resnet_legacy.pt"), "legacy_named.safetensors", statedict::Format::torch_legacy,
       "named '.safetensors', but it is a legacy torch.save file (before PyTorch 1.6): read as that"},
      {files("detectron2_zoo.pkl"), "pickle_named.safetensors", statedict::Format::pickle,
       "named '.safetensors', but it is a plain pickle (pickle.dump, no torch.save container): read as that"},
      {files("detectron2_zoo.pkl"), "pickle_named.pt", statedict::Format::pickle,
       "named '.pt', but it is a plain pickle (pickle.dump, no torch.save container): read as that"},
      {fixture("resnet_plain.pt"), "torch_named.pkl", statedict::Format::torch_zip, ""},
      {fixture("resnet_plain.pt"), "no_extension", statedict::Format::torch_zip, ""},
      {fixture("resnet.safetensors"), "fits.safetensors", statedict::Format::safetensors, ""},
  };
  for (const auto& c : cases) {
    INFO(c.as);
    const std::string path = renamed(c.from, c.as);
    const auto ck = statedict::read(path);
    CHECK(ck.format() == c.format);
    CHECK(ck.notes() == (c.note.empty() ? std::vector<std::string>{} : std::vector<std::string>{c.note}));
    CHECK(sdtest::listing(ck.root()) == sdtest::listing(statedict::read(c.from).root()));
  }
  // The load report says so too, and the load is the file's.
  sdtest::TinyResNet net;
  const auto r = statedict::load(net, renamed(fixture("resnet_plain.pt"), "weights.safetensors"));
  INFO(text_of(r));
  REQUIRE(r.ok());
  CHECK(r.format == "torch_zip");
  CHECK(r.notes.size() == 1);
  CHECK(text_of(r).find("\tnote: named '.safetensors', but it is a torch.save zip") != std::string::npos);
  CHECK(r.to_json()["notes"].size() == 1);
  CHECK(sdtest::module_listing(*net) == sdtest::expected_listing("resnet_plain.pt")["tensors"]);
}

TEST_CASE("content that is no known format gets an error saying what it starts with", "[files][detect]") {
  auto error_of = [](const std::string& path) {
    try {
      (void)statedict::read(path);
    } catch (const statedict::Error& e) { return std::string(e.id()) + " " + e.what(); }
    return std::string("no error");
  };
  const std::string html = error_of(sdtest::write_temp("model.pt", "<!DOCTYPE html>\n<html><body>Sign in</body></html>"));
  CHECK(html.rfind("format.unknown ", 0) == 0);
  CHECK(html.find("it is an HTML page") != std::string::npos);
  const std::string bin = error_of(sdtest::write_temp("model.bin", std::string("\x01\x02\x03\x04 binary", 11)));
  CHECK(bin.rfind("format.unknown ", 0) == 0);
  CHECK(bin.find("model.bin") != std::string::npos);
  CHECK(bin.find("it starts with 01 02 03 04") != std::string::npos);
  // A damaged file named .safetensors: the safetensors reader says what is wrong with its header.
  const std::string st = error_of(sdtest::write_temp("damaged.safetensors", std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10)));
  CHECK(st.rfind("safetensors.header_size ", 0) == 0);
  // A safetensors file cut short whose header length (640) starts with a pickle's PROTO byte, under
  // any name: a damaged safetensors file, not a pickle.
  const std::string cut = std::string("\x80\x02\x00\x00\x00\x00\x00\x00", 8) + "{\"w\":{\"dtype\":\"F32\"";
  CHECK(error_of(sdtest::write_temp("cut.bin", cut)).rfind("safetensors.header_size ", 0) == 0);
}

// ---- section 3: an optimizer's state -----------------------------------------------------------------

TEST_CASE("an optimizer's state_dict given as the weights fails with its own error and leaves the model unchanged", "[files][optimizer]") {
  torch::nn::Sequential net(torch::nn::Linear(4, 3), torch::nn::ReLU(), torch::nn::Linear(3, 2));
  const auto before = files_fingerprint(*net);
  const auto r = statedict::load(net, files("optimizer_adam.pt"));
  CHECK_FALSE(r.ok());
  CHECK(r.error_id == "load.optimizer_state");
  CHECK(r.error.find("the checkpoint is an optimizer's state_dict() (keys 'state' and 'param_groups'), not a model's") !=
        std::string::npos);
  CHECK(r.suggestions.empty());
  CHECK(r.missing.size() == 4);  // the structured report still lists what did not pair
  CHECK(files_fingerprint(*net) == before);
  try {
    r.throw_if_error();
    FAIL("no LoadError");
  } catch (const statedict::LoadError& e) { CHECK(e.id() == "load.optimizer_state"); }

  // The optimizer of a training checkpoint, selected by mistake: the same error, naming the entry.
  sdtest::TinyResNet resnet;
  const auto sel = statedict::load(resnet, fixture("training.pt"), LoadOptions{}.select("optimizer"));
  CHECK(sel.error_id == "load.optimizer_state");
  CHECK(sel.error.find("'optimizer' is an optimizer's state_dict()") != std::string::npos);

  // Comparing two optimizer states is no mistake.
  const auto ck = statedict::read(files("optimizer_adam.pt"));
  CHECK(statedict::diff(ck, ck).ok());
  CHECK(statedict::detail::is_optimizer_state(ck.root()));
  CHECK_FALSE(statedict::detail::is_optimizer_state(statedict::read(fixture("training.pt")).root()));
}

// ---- section 3: detectron2's pickles of numpy arrays -------------------------------------------------

TEST_CASE("a detectron2 model-zoo .pkl is read as the numpy arrays it holds", "[files][pickle]") {
  const auto ck = statedict::read(files("detectron2_zoo.pkl"));
  CHECK(ck.format() == statedict::Format::pickle);
  CHECK(ck.notes().empty());
  CHECK(ck["__author__"].as_string() == "Detectron2 Model Zoo");
  CHECK(ck["matching_heuristics"].as_bool());
  CHECK(sdtest::listing(ck.root()) == expected("detectron2_zoo.pkl")["tensors"]);
  CHECK(sdtest::listing(ck["model"]) == under(expected("detectron2_zoo.pkl")["tensors"], "model."));
  CHECK(sdtest::listing(ck["model"]).size() == 122);
}

TEST_CASE("a detectron2 .pkl loads into the module with the bytes numpy pickled", "[files][pickle][load]") {
  const auto want = under(expected("detectron2_zoo.pkl")["tensors"], "model.");
  REQUIRE(want.size() == 122);
  SECTION("select(\"model\")") {
    sdtest::TinyResNet net;
    const auto r = statedict::load(net, files("detectron2_zoo.pkl"), LoadOptions{}.select("model"));
    INFO(text_of(r));
    REQUIRE(r.ok());
    CHECK(r.format == "pickle");
    CHECK(sdtest::module_listing(*net) == want);
  }
  SECTION("auto_select") {
    sdtest::TinyResNet net;
    const auto r = statedict::load(net, files("detectron2_zoo.pkl"), LoadOptions{}.auto_select());
    REQUIRE(r.ok());
    CHECK(r.selected == "model");
    CHECK(sdtest::module_listing(*net) == want);
  }
  SECTION("the first suggestion of a plain load, followed") {
    sdtest::TinyResNet net;
    const auto before = files_fingerprint(*net);
    const auto r = statedict::load(net, files("detectron2_zoo.pkl"));
    INFO(text_of(r));
    REQUIRE_FALSE(r.ok());
    CHECK(files_fingerprint(*net) == before);
    REQUIRE_FALSE(r.suggestions.empty());
    REQUIRE(r.suggestions.front().options);
    const auto fixed = statedict::load(net, files("detectron2_zoo.pkl"), *r.suggestions.front().options);
    REQUIRE(fixed.ok());
    CHECK(sdtest::module_listing(*net) == want);
  }
}

TEST_CASE("numpy arrays of every pickle protocol, dtype, byte order and memory order read as numpy holds them", "[files][pickle]") {
  std::vector<std::string> names{"numpy_arrays_p2.pkl", "numpy_arrays_p4.pkl", "numpy_arrays_p5.pkl", "detectron1_blobs_py2.pkl"};
  // numpy 2's pickles (numpy._core), written by the generator in the trixie root.
  for (const char* n :
       {"numpy_arrays_p2.pkl", "numpy_arrays_p4.pkl", "numpy_arrays_p5.pkl", "detectron2_zoo.pkl", "detectron1_blobs_py2.pkl"})
    if (std::filesystem::exists(files(std::string("numpy2/") + n))) names.push_back(std::string("numpy2/") + n);
  for (const auto& name : names) {
    INFO(name);
    const auto ck = statedict::read(files(name));
    const auto want = expected(name.substr(name.rfind('/') + 1));
    CHECK(ck.format() == statedict::Format::pickle);
    CHECK(sdtest::listing(ck.root()) == want["tensors"]);
    std::vector<std::string> unreadable;
    for (const auto& u : ck.unreadable()) unreadable.push_back(u.key);
    CHECK(nlohmann::json(unreadable) == want["unreadable"]);
  }
  // Saved again, they read back the same.
  const auto ck = statedict::read(files("numpy_arrays_p5.pkl"));
  const std::string out = sdtest::temp_path("numpy_arrays_resaved.safetensors");
  statedict::save(ck.tensors(), out);
  CHECK(sdtest::listing(statedict::read(out).root()) == expected("numpy_arrays_p5.pkl")["tensors"]);
}

TEST_CASE("a plain pickle is refused cleanly where it is malformed or hostile", "[files][pickle][bad]") {
  auto error_of = [](const std::string& path, const statedict::ReadOptions& o = {}) {
    try {
      const auto ck = statedict::read(path, o);
      for (const auto& t : ck.tensors()) (void)statedict::tensor_sha256(t.tensor);
    } catch (const statedict::Error& e) { return std::string(e.id()) + " " + e.what(); }
    return std::string("no error");
  };
  const std::string zoo = sdtest::read_bytes(files("detectron2_zoo.pkl"));
  CHECK(error_of(sdtest::write_temp("trailing.pkl", zoo + "garbage")).rfind("pickle.trailing ", 0) == 0);
  CHECK(error_of(sdtest::write_temp("trailing.pkl", zoo + "garbage")).find("offset " + std::to_string(zoo.size())) != std::string::npos);
  for (std::size_t cut : {std::size_t{3}, std::size_t{40}, zoo.size() / 3, zoo.size() / 2, zoo.size() - 1}) {
    INFO(cut);
    const std::string e = error_of(sdtest::write_temp("cut.pkl", zoo.substr(0, cut)));
    CHECK(e.rfind("pickle.", 0) == 0);
    CHECK(e.find("cut.pkl") != std::string::npos);
  }
  CHECK(error_of(files("detectron2_zoo.pkl"), statedict::ReadOptions{}.max_pickle_bytes(1000)).rfind("limit.pickle_size ", 0) == 0);

  auto uni = [](const std::string& s) {
    std::string out = "X";
    for (int i = 0; i < 4; ++i) out += static_cast<char>((s.size() >> (8 * i)) & 0xff);
    return out + s;
  };
  auto glob = [](const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; };
  const std::string proto = "\x80\x02";
  // A persistent id: the bytes it names would be beside the pickle, and a plain pickle has none.
  CHECK(error_of(sdtest::write_temp("pid.pkl", proto + uni("x") + "Q.")).rfind("pickle.bad_persistent_id ", 0) == 0);
  // Code: refused, not run.
  const std::string evil = proto + glob("posix", "system") + uni("echo pwned") + "\x85R.";
  CHECK(error_of(sdtest::write_temp("evil.pkl", evil)).rfind("pickle.forbidden_global ", 0) == 0);
  // A numpy array as _reconstruct + BUILD, by hand: 3 float32 need 12 bytes of data.
  auto array = [&](const std::string& data) {
    const std::string dtype = glob("numpy", "dtype") + "(" + uni("f4") + "\x89\x88tR(K\x03" + uni("<") +
                              "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + std::string("K\x00tb", 4);
    return proto + "}" + uni("a") + glob("numpy.core.multiarray", "_reconstruct") + "(" + glob("numpy", "ndarray") +
           std::string("K\x00\x85", 3) + "C\x01" + "b" + "tR" + "(K\x01K\x03\x85" + dtype + "\x89" + "C" +
           std::string(1, static_cast<char>(data.size())) + data + "tbs.";
  };
  const float three[3] = {1.5f, -2.0f, 4.25f};
  const std::string ok_path = sdtest::write_temp("hand.pkl", array(std::string(reinterpret_cast<const char*>(three), 12)));
  REQUIRE(error_of(ok_path) == "no error");  // the builder makes a valid array: the failures below are the data's
  CHECK(statedict::read(ok_path)["a"].tensor().equal(torch::tensor({1.5f, -2.0f, 4.25f})));
  CHECK(error_of(sdtest::write_temp("short.pkl", array(std::string(8, '\0')))).rfind("pickle.bad_numpy ", 0) == 0);
  // numpy's protocol-5 reduction with an order numpy never writes: not a tensor, and said so.
  const std::string dt = glob("numpy", "dtype") + "(" + uni("f4") + "\x89\x88tR(K\x03" + uni("<") +
                         "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + std::string("K\x00tb", 4);
  const std::string bad_order = proto + "}" + uni("a") + glob("numpy.core.numeric", "_frombuffer") + "(C\x04" + std::string(4, '\0') + dt +
                                "K\x01\x85" + uni("X") + "tRs.";
  const auto odd = statedict::read(sdtest::write_temp("order.pkl", bad_order));
  REQUIRE(odd.unreadable().size() == 1);
  CHECK(odd.unreadable()[0].reason.find("_frombuffer without") != std::string::npos);

  // A failed load of a damaged pickle leaves the module as it was.
  sdtest::TinyResNet net;
  const auto before = files_fingerprint(*net);
  const auto r = statedict::load(net, sdtest::write_temp("cut.pkl", zoo.substr(0, zoo.size() / 2)), LoadOptions{}.select("model"));
  CHECK_FALSE(r.ok());
  CHECK(r.error_id.rfind("pickle.", 0) == 0);
  CHECK(files_fingerprint(*net) == before);
}
