// statedict::read against checkpoints written by real PyTorch (tests/fixtures/generate.py).
#include "helpers.hpp"

#include <cctype>

using sdtest::fixture;
using statedict::Kind;

namespace {
/// `dir` is "" (files PyTorch 1.13 wrote) or "torch2" (files PyTorch 2.x wrote, generate.py run in
/// the trixie root); `name` a checkpoint with a listing in DIR/expected/.
void check_against_pytorch(const std::string& dir, const std::string& name) {
  const std::string rel = dir.empty() ? name : dir + "/" + name;
  const auto expected = sdtest::expected_listing(rel);
  const statedict::Checkpoint ck = statedict::read(fixture(rel));
  INFO(rel);
  CHECK(statedict::format_name(ck.format()) == expected["format"].get<std::string>());
  const auto got = sdtest::listing(ck.root());
  REQUIRE(got.size() == expected["tensors"].size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("tensor " << i << ": " << expected["tensors"][i]["key"]);
    CHECK(got[i]["key"] == expected["tensors"][i]["key"]);
    CHECK(got[i]["dtype"] == expected["tensors"][i]["dtype"]);
    CHECK(got[i]["shape"] == expected["tensors"][i]["shape"]);
    CHECK(got[i]["sha256"] == expected["tensors"][i]["sha256"]);
  }
  // What is tensor-like but not a tensor here is listed, never dropped.
  std::vector<std::string> unreadable;
  for (const auto& u : ck.unreadable()) unreadable.push_back(u.key);
  CHECK(unreadable == expected.value("unreadable", std::vector<std::string>{}));
}
}  // namespace

TEST_CASE("every fixture lists exactly the tensors, dtypes, shapes and bytes PyTorch lists", "[read]") {
  // Every listing generate.py wrote, under PyTorch 1.13 (tests/fixtures) and 2.x (tests/fixtures/torch2).
  std::size_t checked = 0;
  for (const std::string dir : {"", "torch2"}) {
    for (const auto& e : std::filesystem::directory_iterator(fixture(dir.empty() ? "expected" : dir + "/expected"))) {
      std::string name = e.path().filename().string();
      name = name.substr(0, name.size() - 5);       // .json
      if (name.rfind("loaded_", 0) == 0) continue;  // a model's state after a Python load, not a file
      check_against_pytorch(dir, name);
      ++checked;
    }
  }
  CHECK(checked >= 60);
}

TEST_CASE("scalars read as numbers whatever holds them: Python values, numpy scalars, 0-dim tensors", "[read][values]") {
  const auto ck = statedict::read(fixture("training.pt"));
  // Indexing a checkpoint is at(): the shortest way to the values a script wants.
  CHECK(ck["epoch"].as_int() == 5);
  CHECK(ck["epoch"].as_double() == 5.0);
  CHECK(ck["args.lr"].as_double() == Approx(0.1));
  // np.float64(0.731) is a 0-dim tensor in the tree; it is still a number.
  const statedict::Value acc = ck["best_acc1"];
  CHECK(acc.kind() == Kind::tensor);
  CHECK(acc.is_number());
  CHECK(acc.as_double() == Approx(0.731));
  CHECK(sdtest::error_text([&] { (void)acc.as_int(); }).find("expected an int, found the float64 scalar 0.731") != std::string::npos);
  CHECK(sdtest::error_text([&] { (void)acc.as_bool(); }).find("expected a bool") != std::string::npos);
  // A tensor with dimensions is not a scalar.
  CHECK_FALSE(ck["predictions"].is_number());
  CHECK(sdtest::error_text([&] { (void)ck["predictions"].as_double(); }).find("expected a float, found tensor") != std::string::npos);
  CHECK_FALSE(ck["args"].is_number());

  // torch 2.x optimizers keep `step` as a float tensor(3.); numpy 2 scalars of every kind.
  const auto p4 = statedict::read(fixture("torch2/training_proto4.pt"));
  CHECK(p4["acc"].as_double() == Approx(0.25));
  const auto numpy_values = statedict::read(fixture("torch2/numpy_values.pt"));
  for (const auto& [key, v] : numpy_values.root().items()) {
    (void)key;
    if (v.is_tensor() && v.raw_dtype() == nullptr && v.tensor().dim() == 0 && !v.tensor().is_complex()) {
      INFO(v.repr());
      CHECK(v.as_double() == Approx(v.tensor().to(at::kDouble).item<double>()));
    }
  }
  const std::string step_file = sdtest::temp_path("step.pt");
  statedict::save({{"step", at::scalar_tensor(3.0)}, {"half", at::scalar_tensor(2.5)}}, step_file);
  const auto steps = statedict::read(step_file);
  CHECK(steps["step"].as_int() == 3);
  CHECK(sdtest::error_text([&] { (void)steps["half"].as_int(); }).find("scalar 2.5") != std::string::npos);

  // Kind prints as its enumerator's name.
  std::ostringstream os;
  os << ck["args"].kind() << " " << ck["epoch"].kind() << " " << Kind::tensor;
  CHECK(os.str() == "object integer tensor");
}

TEST_CASE("a training checkpoint reads with its non-tensor values intact", "[read]") {
  const auto ck = statedict::read(fixture("training.pt"));
  CHECK(ck.at("epoch").as_int() == 5);
  CHECK(ck.at("optimizer.param_groups.0.lr").as_double() == Approx(0.1));
  CHECK(ck.at("optimizer.param_groups.0.momentum").as_double() == Approx(0.9));
  const auto args = ck.at("args");
  CHECK(args.kind() == Kind::object);
  CHECK(args.class_name() == "argparse.Namespace");
  CHECK(args.at("arch").as_string() == "tiny_resnet");
  CHECK(args.at("epochs").as_int() == 90);
  CHECK(args.at("tags.1").as_string() == "b");
  CHECK(ck.at("best_acc1").tensor().item<double>() == Approx(0.731));
  CHECK(ck.at("predictions").tensor().equal(at::arange(6, at::kFloat).reshape({2, 3})));
  CHECK(ck.at("classes").kind() == Kind::set);
  CHECK(ck.at("classes").size() == 2);
  CHECK(ck.at("history").class_name() == "collections.deque");
  CHECK(ck.at("bytes").as_string() == std::string("\x00\xff"
                                                  "ab",
                                                  4));
  CHECK(ck.at("complex").kind() == Kind::complex);
  CHECK(ck.at("big").kind() == Kind::integer);
  CHECK(ck.at("big").as_string() == "0x400000000000000000");  // 2**70
  CHECK_THROWS_AS(ck.at("big").as_int(), statedict::Error);
  CHECK(ck.at("model").is_dict());
  CHECK(ck.at("model.conv1.weight").tensor().sizes() == at::IntArrayRef({4, 3, 7, 7}));
  CHECK(ck.at("model").keys().front() == "conv1.weight");
}

TEST_CASE("an object of any class that holds tensors is walked like a dict, level by level, as tensors() names it", "[read][values]") {
  // Shaped like OpenNMT-py's 2017 checkpoints (generate_public_shapes.py): an onmt.Optim.Optim holds
  // the Parameters and a torch.optim.SGD, which holds its state keyed by Parameter.
  const auto ck = statedict::read(fixture("onmt_2017.pt"));
  const statedict::Value optim = ck["optim"];
  REQUIRE(optim.kind() == Kind::object);
  CHECK(optim.class_name() == "onmt.Optim.Optim");
  std::vector<std::string> keys;
  for (const auto& [k, v] : optim.children()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"params", "last_ppl", "lr", "max_grad_norm", "method", "lr_decay", "start_decay_at", "start_decay",
                                         "optimizer"});
  CHECK(optim.children()[2].second.as_double() == 1.0);
  const statedict::Value sgd = optim.children().back().second;
  CHECK(sgd.class_name() == "torch.optim.sgd.SGD");
  REQUIRE(sgd.children().size() == 3);
  CHECK(sgd.children()[1].first == "state");
  const statedict::Value state = sgd.children()[1].second;  // a collections.defaultdict keyed by Parameter
  CHECK(state.class_name() == "collections.defaultdict");
  REQUIRE(state.children().size() == 8);
  CHECK(state.children().front().first == "<tensor#0>");
  CHECK(state.children().front().second.children().front().first == "momentum_buffer");
  CHECK(ck["optim.optimizer.param_groups.0.momentum"].as_double() == Approx(0.9));
  // Every key children() gives leads to the value at() finds under it.
  for (const auto& [k, v] : optim.children()) CHECK(ck["optim." + k].is(v));
  CHECK_FALSE(optim.is(sgd));
  CHECK(ck["dicts.src"].children().front().first == "idxToLabel");
  CHECK(ck["epoch"].children().empty());
}

TEST_CASE("a dict keyed by classes names each key by the class's qualified name, keeping keys unique", "[read][values]") {
  // Shaped like PyTorch Lightning 1.2's checkpoints: "callbacks" keyed by the callback classes.
  const auto ck = statedict::read(fixture("lightning_callbacks.pt"));
  CHECK(ck["callbacks"].keys() == std::vector<std::string>{"pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
                                                           "pytorch_lightning.callbacks.early_stopping.EarlyStopping"});
  CHECK(ck["callbacks.pytorch_lightning.callbacks.early_stopping.EarlyStopping.patience"].as_int() == 3);
  CHECK(ck["callbacks.pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint.best_model_score"].tensor().item<float>() == 0.25f);
  // A string key that spells the class's name keeps it; the class key gets ' (as any other clash).
  const auto collision = ck["collision"];
  CHECK(collision.keys() == std::vector<std::string>{"pytorch_lightning.callbacks.early_stopping.EarlyStopping'",
                                                     "pytorch_lightning.callbacks.early_stopping.EarlyStopping"});
  CHECK(collision.find("pytorch_lightning.callbacks.early_stopping.EarlyStopping")->tensor().item<float>() == 2.0f);
  CHECK(collision.find("pytorch_lightning.callbacks.early_stopping.EarlyStopping'")->tensor().item<float>() == 1.0f);
  CHECK(collision.items()[0].first.repr() == "pytorch_lightning.callbacks.early_stopping.EarlyStopping");
}

TEST_CASE("a path that does not exist names the level and lists the keys there", "[read]") {
  const auto ck = statedict::read(fixture("training.pt"));
  try {
    ck.at("model_state_dict");
    FAIL("no exception");
  } catch (const statedict::Error& e) {
    CHECK(e.id() == statedict::errors::path_not_found);
    CHECK(std::string(e.what()).find("'model'") != std::string::npos);
    CHECK(std::string(e.what()).find("training.pt") != std::string::npos);
  }
}

TEST_CASE("tensors that share a storage stay views of one storage, with their strides and offsets", "[read]") {
  for (const auto& [name, mapped] : std::vector<std::pair<const char*, bool>>{
           {"dtypes.pt", false}, {"dtypes_legacy.pt", false}, {"dtypes.pt", true}, {"dtypes_legacy.pt", true}}) {
    INFO(name << (mapped ? " mapped" : " read on first use"));
    const auto ck = statedict::read(fixture(name), statedict::ReadOptions{}.map_tensors(mapped));
    const auto a = ck.at("tied_a").tensor(), b = ck.at("tied_b").tensor(), row = ck.at("row_view").tensor();
    const auto tr = ck.at("transposed").tensor(), strided = ck.at("strided").tensor();
    CHECK(a.storage().is_alias_of(b.storage()));
    CHECK(a.storage().is_alias_of(row.storage()));
    CHECK(a.storage().is_alias_of(tr.storage()));
    CHECK(row.storage_offset() == 6);
    CHECK(tr.strides() == at::IntArrayRef({1, 6}));
    CHECK(strided.strides() == at::IntArrayRef({6, 2}));
    CHECK(strided.equal(at::arange(24, at::kFloat).reshape({4, 6}).slice(1, 0, 6, 2)));
    CHECK(ck.at("scalar").tensor().dim() == 0);
    CHECK(ck.at("scalar").tensor().item<float>() == 3.25f);
    CHECK(ck.at("empty").tensor().sizes() == at::IntArrayRef({0, 5}));
    CHECK(ck.at("complex128").tensor().scalar_type() == at::kComplexDouble);
  }
}

TEST_CASE("a whole pickled module reads as the state dict model.state_dict() gives", "[read]") {
  const auto module = statedict::read(fixture("resnet_module.pt"));
  const auto plain = statedict::read(fixture("resnet_plain.pt"));
  CHECK(module.module_class() == "__main__.TinyResNet");
  CHECK(sdtest::listing(module.root()) == sdtest::listing(plain.root()));
}

TEST_CASE("big-endian files are byte-swapped to the same values", "[read]") {
  const auto big = statedict::read(fixture("resnet_bigendian.pt"));
  const auto plain = statedict::read(fixture("resnet_plain.pt"));
  CHECK(sdtest::listing(big.root()) == sdtest::listing(plain.root()));
}

TEST_CASE("safetensors keeps __metadata__ and sharded checkpoints read from the index or its folder", "[read]") {
  const auto st = statedict::read(fixture("resnet.safetensors"));
  CHECK(st.metadata().at("format") == "pt");
  CHECK(st.metadata().at("source") == "generate.py");
  const auto by_index = statedict::read(fixture("sharded_st/model.safetensors.index.json"));
  const auto by_folder = statedict::read(fixture("sharded_st"));
  CHECK(by_index.format() == statedict::Format::sharded_safetensors);
  CHECK(sdtest::listing(by_index.root()) == sdtest::listing(by_folder.root()));
  CHECK(statedict::read(fixture("sharded_bin")).format() == statedict::Format::sharded_torch);
}

TEST_CASE("mapped tensors alias the file's copy-on-write mapping, and writing to them never reaches the file", "[read]") {
  const std::string copy = sdtest::write_temp("cow.pt", sdtest::read_bytes(fixture("resnet_plain.pt")));
  const std::string before = sdtest::read_bytes(copy);
  {
    auto ck = statedict::read(copy, statedict::ReadOptions{}.map_tensors(true));
    CHECK(statedict::detail::mapped_file_of(ck.at("conv1.weight").tensor()) != nullptr);
    auto w = ck.at("conv1.weight").tensor();
    w.fill_(42.0f);
    CHECK(w.sum().item<float>() == Approx(42.0f * static_cast<float>(w.numel())));
  }
  CHECK(sdtest::read_bytes(copy) == before);
  auto owned = statedict::read(copy);
  CHECK(statedict::detail::mapped_file_of(owned.at("conv1.weight").tensor()) == nullptr);
  CHECK(owned.at("conv1.weight")
            .tensor()
            .equal(statedict::read(copy, statedict::ReadOptions{}.map_tensors(true)).at("conv1.weight").tensor()));
}

namespace {
/// Two reads of one tensor agree: shape, strides, dtype and bytes.
void check_same_tensor(const at::Tensor& got, const at::Tensor& want) {
  CHECK(got.sizes() == want.sizes());
  CHECK(got.strides() == want.strides());
  CHECK(got.scalar_type() == want.scalar_type());
  CHECK(statedict::tensor_sha256(got) == statedict::tensor_sha256(want));
}
}  // namespace

TEST_CASE("tensors() reads neighbouring small storages together: same bytes, same sharing, one storage per file storage", "[read]") {
  // tensors() reads the small storages of a pread-only file in groups (ReadTensors::get_many); each
  // must still be its own storage holding exactly its bytes, and what at().tensor() reads the same.
  for (const char* name : {"dtypes.pt", "dtypes_legacy.pt", "resnet_plain.pt", "resnet.safetensors"}) {
    INFO(name);
    const auto all = statedict::read(fixture(name)).tensors();
    const auto one_by_one = statedict::read(fixture(name));
    REQUIRE(!all.empty());
    for (const auto& t : all) {
      INFO(t.key);
      const at::Tensor alone = one_by_one.at(t.key).tensor();
      check_same_tensor(t.tensor, alone);
      CHECK(t.tensor.storage_offset() == alone.storage_offset());
      CHECK(t.tensor.storage().nbytes() == alone.storage().nbytes());
    }
    // Small storages read together share a block of memory (which outlives the Checkpoint, gone
    // here): each is 64-byte aligned and none overlaps another, so writing every byte of each
    // storage a value of its own leaves each one whole.
    std::vector<at::Storage> storages;
    for (const auto& t : all) {
      const at::Storage& s = t.tensor.storage();
      if (s.nbytes() == 0 || std::any_of(storages.begin(), storages.end(), [&](const at::Storage& o) { return o.is_alias_of(s); }))
        continue;
      CHECK(reinterpret_cast<std::uintptr_t>(s.data_ptr().get()) % 64 == 0);
      storages.push_back(s);
    }
    REQUIRE(storages.size() > 3);
    std::map<void*, int> per_block;  // packed they are: several storages share one block
    for (const auto& s : storages)
      if (s.data_ptr().get_deleter() == &statedict::detail::Shared<statedict::detail::AlignedBytes>::release)
        ++per_block[s.data_ptr().get_context()];
    CHECK(std::any_of(per_block.begin(), per_block.end(), [](const auto& b) { return b.second > 1; }));
    for (std::size_t i = 0; i < storages.size(); ++i)
      std::memset(statedict::detail::storage_bytes(storages[i]), static_cast<int>(i % 251 + 1), storages[i].nbytes());
    for (std::size_t i = 0; i < storages.size(); ++i) {
      const std::uint8_t* p = statedict::detail::storage_bytes(storages[i]);
      CHECK(std::all_of(p, p + storages[i].nbytes(), [&](std::uint8_t b) { return b == i % 251 + 1; }));
    }
  }
  const auto ck = statedict::read(fixture("dtypes.pt"));
  const at::Tensor before = ck.at("tied_a").tensor();  // read alone first: tensors() keeps it
  std::map<std::string, at::Tensor> by_key;
  for (const auto& t : ck.tensors()) by_key[t.key] = t.tensor;
  CHECK(by_key.at("tied_a").storage().is_alias_of(before.storage()));
  CHECK(by_key.at("tied_b").storage().is_alias_of(before.storage()));
  CHECK(by_key.at("row_view").storage().is_alias_of(before.storage()));
  CHECK(!by_key.at("strided").storage().is_alias_of(by_key.at("scalar").storage()));
  CHECK(ck.at("scalar").tensor().storage().is_alias_of(by_key.at("scalar").storage()));  // and at() after tensors()
}

TEST_CASE("a torch.save or safetensors file's tensors are described, not made, until asked for", "[read][memory]") {
  // An at::Tensor and a storage view for each of 100k small tensors cost ~35 MiB that a read need not
  // hold: the tree keeps a description (FileTensors); tensors(), at() and the internal lists make
  // the same tensors from it as a mapped read makes.
  for (const std::string name : {"dtypes.pt", "dtypes_legacy.pt", "resnet_plain.pt", "resnet.safetensors"}) {
    INFO(name);
    auto file = statedict::detail::MappedFile::open(fixture(name), /*pread_only=*/true);
    auto cd = name.find("legacy") != std::string::npos         ? statedict::detail::read_legacy(file, {})
              : name.find(".safetensors") != std::string::npos ? statedict::detail::read_safetensors(file, {})
                                                               : statedict::detail::read_torch_zip(file, {});
    std::size_t described = 0, views = 0;  // a tensor a pickle holds in itself (a numpy value) is made
    for (const auto& n : cd->tree.nodes)
      if (n.kind == statedict::Kind::tensor) {
        described += cd->handed.described(n) && !n.tensor.defined();
        views += statedict::detail::mapped_file_of(n.tensor) != nullptr;
      }
    CHECK(views == 0);
    CHECK(described > 0);
    CHECK(cd->handed.files.tensors.size() == described);
    const statedict::Checkpoint ck = statedict::detail::make_checkpoint(cd);
    const statedict::Checkpoint mapped = statedict::read(fixture(name), statedict::ReadOptions{}.map_tensors(true));
    const auto listed = ck.tensors();
    REQUIRE(listed.size() == mapped.tensors().size());
    for (const auto& t : listed) {
      INFO(t.key);
      check_same_tensor(t.tensor, mapped.at(t.key).raw_tensor());
      CHECK(ck.at(t.key).repr() == mapped.at(t.key).repr());
    }
    // As read (what load and convert work from): views of the file at the mapped read's offsets, and
    // tensors of one storage on one storage view.
    const auto as_read = statedict::detail::lazy_tensors(statedict::read(fixture(name)).root());  // nothing handed out yet
    const auto mapped_read = statedict::detail::lazy_tensors(mapped.root());
    REQUIRE(as_read.size() == mapped_read.size());
    for (std::size_t i = 0; i < as_read.size(); ++i) {
      INFO(as_read[i].key);
      const auto* f = statedict::detail::mapped_file_of(as_read[i].tensor);
      const auto* g = statedict::detail::mapped_file_of(mapped_read[i].tensor);
      if (g != nullptr) {  // (a mapped legacy file copies its storages: they lie unaligned)
        REQUIRE(f != nullptr);
        CHECK(statedict::detail::file_offset(*f, as_read[i].tensor) == statedict::detail::file_offset(*g, mapped_read[i].tensor));
      }
      for (std::size_t j = 0; j < i; ++j)
        CHECK(as_read[i].tensor.storage().is_alias_of(as_read[j].tensor.storage()) ==
              mapped_read[i].tensor.storage().is_alias_of(mapped_read[j].tensor.storage()));
    }
  }
  // DCP takes the tensors of its records out of the tree: those are made.
  auto cd = statedict::detail::read_torch_zip(
      statedict::detail::ZipArchive(statedict::detail::MappedFile::open(fixture("dtypes.pt"), true)), {}, /*describe=*/false);
  CHECK(cd->handed.files.tensors.empty());
}

TEST_CASE("tensors() of more tensors than one batch: each its own bytes, ties kept across batches", "[read][memory]") {
  // tensors() reads in batches of 8192 (ReadTensors::get_many); a file of 20000 small tensors has
  // three, with a tied pair split across the first and the last.
  std::vector<statedict::NamedTensor> many;
  for (int i = 0; i < 20000; ++i) many.push_back({"p" + std::to_string(i), torch::full({3}, static_cast<float>(i))});
  many.push_back({"tied_late", many[5].tensor.view({3})});  // the same storage as p5
  const std::string path = sdtest::temp_path("batches.pt");
  statedict::save(many, path);
  const statedict::Checkpoint ck = statedict::read(path);
  const auto listed = ck.tensors();
  REQUIRE(listed.size() == many.size());
  std::size_t wrong = 0;
  for (std::size_t i = 0; i + 1 < listed.size(); ++i) wrong += listed[i].key != many[i].key || !listed[i].tensor.equal(many[i].tensor);
  CHECK(wrong == 0);
  CHECK(listed.back().key == "tied_late");
  CHECK(listed.back().tensor.storage().is_alias_of(listed[5].tensor.storage()));
  CHECK(!listed[6].tensor.storage().is_alias_of(listed[5].tensor.storage()));
}

TEST_CASE("a tree slot given back and reused keeps nothing of its old tenant", "[read][memory]") {
  // The unpickler gives back each tensor rebuild's arguments (a storage object named
  // "torch.FloatStorage"), and the next dict key takes the slot: it must not keep the old heap
  // buffer (100k keys held 3 MiB of them).
  statedict::detail::Tree tree;
  statedict::detail::Node old;
  old.kind = statedict::Kind::object;
  old.text = std::string(40, 'x');
  old.items = {1, 2, 3};
  const std::uint32_t id = tree.add(std::move(old));
  tree.release(id);
  statedict::detail::Node key;
  key.kind = statedict::Kind::string;
  key.text = "p0";
  REQUIRE(tree.add(std::move(key)) == id);
  CHECK(tree.nodes[id].text == "p0");
  CHECK(tree.nodes[id].text.capacity() < 40);
  CHECK(tree.nodes[id].items.capacity() == 0);
}

TEST_CASE("the tree's nodes stay where they are as it grows past its blocks, and a move takes them all", "[read][memory]") {
  // The unpickler holds references to nodes while it adds more; a tree of 100k tensors spans
  // hundreds of blocks.
  statedict::detail::Tree tree;
  const std::uint32_t n = 5000;  // several blocks, the last one part full
  std::vector<const statedict::detail::Node*> at;
  for (std::uint32_t i = 0; i < n; ++i) {
    statedict::detail::Node nd;
    nd.kind = statedict::Kind::integer;
    nd.integer = i;
    if (i % 7 == 0) nd.text = std::string(30, static_cast<char>('a' + i % 26));  // some with heap text to free
    REQUIRE(tree.add(std::move(nd)) == i);
    at.push_back(&tree.nodes[i]);
  }
  REQUIRE(tree.nodes.size() == n);
  std::uint32_t seen = 0;
  for (const auto& nd : tree.nodes) CHECK(nd.integer == seen++);
  CHECK(seen == n);
  for (std::uint32_t i = 0; i < n; ++i) {
    CHECK(&tree.nodes[i] == at[i]);
    CHECK(tree.nodes[i].integer == i);
  }
  // A slot given back is made anew where it is: fresh() hands it out again, default but for nothing.
  tree.release(1024);
  tree.release(7);
  CHECK(tree.nodes[7].pending == statedict::detail::freed);
  CHECK(tree.nodes[7].text.empty());
  REQUIRE(tree.fresh() == 7);
  CHECK(tree.nodes[7].pending == statedict::detail::npos);
  CHECK(tree.nodes[7].kind == statedict::Kind::none);
  CHECK(&tree.nodes[7] == at[7]);
  REQUIRE(tree.add(statedict::Kind::list) == 1024);
  CHECK(tree.nodes[1024].kind == statedict::Kind::list);
  CHECK(tree.fresh() == n);  // no free slot left: the end
  tree.nodes[n].integer = n;
  at.push_back(&tree.nodes[n]);
  statedict::detail::Tree moved;
  moved.add(statedict::Kind::dict);  // a tree with nodes of its own, dropped by the move below
  moved.nodes = std::move(tree.nodes);
  CHECK(tree.nodes.size() == 0);
  REQUIRE(moved.nodes.size() == n + 1);
  CHECK(&moved.nodes[n] == at[n]);
  CHECK(moved.nodes[n - 1].integer == n - 1);
  CHECK(moved.nodes[4998].text == std::string(30, static_cast<char>('a' + 4998 % 26)));
}

TEST_CASE("reading a torch zip file maps none of its pages: the reader parses it with pread", "[read][memory]") {
  // Touching the mapping would pull the page-cache folio around the spot (up to 2 MiB of tensor
  // bytes) into the process; reading a 1 GiB checkpoint then cost 13-32 MiB of RSS before any load.
  const std::string copy = sdtest::write_temp("untouched.pt", sdtest::read_bytes(fixture("resnet_plain.pt")));
  auto mapped_kib = [&] {
    std::ifstream in("/proc/self/smaps");
    std::string line;
    long kib = -1;  // -1: no mapping of the file
    bool ours = false;
    while (std::getline(in, line)) {
      if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < 16) {
        ours = line.size() >= copy.size() && line.compare(line.size() - copy.size(), copy.size(), copy) == 0;
        if (ours && kib < 0) kib = 0;
      } else if (ours && line.rfind("Rss:", 0) == 0) {
        kib += std::stol(line.substr(4));
      }
    }
    return kib;
  };
  {
    const auto ck = statedict::read(copy);  // the default: tensors read with pread on first use
    REQUIRE(ck.tensors().size() == 122);
    CHECK(ck.at("conv1.weight").tensor().sum().item<float>() != 0.0f);
    CHECK(mapped_kib() == 0);
  }
  const auto ck = statedict::read(copy, statedict::ReadOptions{}.map_tensors(true));
  REQUIRE(ck.tensors().size() == 122);
  CHECK(mapped_kib() == 0);
  ck.at("conv1.weight").tensor().sum();  // touching a mapped tensor maps its pages: the check can fail
  CHECK(mapped_kib() > 0);
}

TEST_CASE("hostile pickles are refused with the global named, and their payload never runs", "[read][security]") {
  const std::string marker = "/tmp/statedict_payload_ran";
  std::filesystem::remove(marker);
  for (const auto& [name, global] : std::vector<std::pair<std::string, std::string>>{{"evil_os_system.pt", "posix.system"},
                                                                                     {"evil_eval.pt", "eval"},
                                                                                     {"evil_nested.pt", ".call"},
                                                                                     {"evil_legacy.pt", "posix.system"}}) {
    INFO(name);
    try {
      statedict::read(fixture(name));
      FAIL("read succeeded");
    } catch (const statedict::Error& e) {
      CHECK(e.id() == "pickle.forbidden_global");
      CHECK(std::string(e.what()).find(global) != std::string::npos);
      CHECK(std::string(e.what()).find(name) != std::string::npos);
    }
  }
  CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("legacy files are parsed from a pread window that grows until the pickles fit, never through the mapping", "[read][legacy]") {
  for (const char* name : {"resnet_legacy.pt", "resnet_legacy_proto1.pt", "resnet_legacy_proto4.pt", "dtypes_legacy.pt",
                           "object_keys_legacy.pt", "resnet_module_legacy.pt"}) {
    INFO(name);
    const auto whole = statedict::read(fixture(name));
    const auto want = sdtest::listing(whole.root());
    for (std::size_t first : {64, 100, 1000, 5000}) {
      INFO("first window " << first);
      const auto f = statedict::detail::MappedFile::open(fixture(name), true);
      const auto ck = statedict::detail::make_checkpoint(statedict::detail::read_legacy(f, {}, first));
      CHECK(sdtest::listing(ck.root()) == want);
    }
  }
  // A file cut inside its pickles is still pickle.truncated, whatever the window.
  const std::string bytes = sdtest::read_bytes(fixture("resnet_legacy.pt"));
  const std::string cut = sdtest::write_temp("legacy_cut.pt", bytes.substr(0, 300));
  const auto f = statedict::detail::MappedFile::open(cut, true);
  CHECK(sdtest::error_id([&] { statedict::detail::read_legacy(f, {}, 64); }) == "pickle.truncated");
  CHECK(sdtest::error_id([&] { statedict::read(cut); }) == "pickle.truncated");
}
