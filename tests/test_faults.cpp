// Files that change under statedict (issue #15): torch.save rewrites a checkpoint in place (open,
// truncate, write) while a server may be loading it. Every load ends in success with one whole
// version's values, or in an error that names the change; a module is never silently mixed, and no
// SIGBUS reaches the caller.
#include "helpers.hpp"
#include "models.hpp"

#include <atomic>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using sdtest::fixture;
using statedict::LoadOptions;

namespace {

std::string fault_copy(const std::string& name, const std::string& as) {
  const std::string p = sdtest::temp_path(as);
  std::filesystem::copy_file(fixture(name), p, std::filesystem::copy_options::overwrite_existing);
  return p;
}

std::map<std::string, std::string> fault_fingerprint(torch::nn::Module& m) {
  std::map<std::string, std::string> out;
  for (const auto& t : statedict::state_dict(m)) out[t.key] = statedict::tensor_sha256(t.tensor);
  return out;
}

/// Rewrites `path` in place the way torch.save does: truncate, then write (here in two halves).
void rewrite_in_place(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  const std::size_t half = bytes.size() / 2;
  CHECK(::write(fd, bytes.data(), half) == static_cast<ssize_t>(half));
  CHECK(::write(fd, bytes.data() + half, bytes.size() - half) == static_cast<ssize_t>(bytes.size() - half));
  ::close(fd);
}

}  // namespace

TEST_CASE("faults: a file shrunk after it was read fails the load with file.changed, module untouched", "[faults]") {
  // (A big-endian file is byte-swapped into memory as it is read: it loads what was read, file or no file.)
  for (const char* name : {"resnet_plain.pt", "resnet.safetensors", "resnet_fp16.pt"}) {
    INFO(name);
    const std::string path = fault_copy(name, std::string("shrunk_") + name);
    const statedict::Checkpoint ck = statedict::read(path);
    REQUIRE(::truncate(path.c_str(), static_cast<off_t>(std::filesystem::file_size(path) / 2)) == 0);
    sdtest::TinyResNet net;
    const auto before = fault_fingerprint(*net);
    const auto r = statedict::load(net, ck);
    INFO(r);
    CHECK_FALSE(r.ok());
    CHECK_FALSE(r.applied);
    CHECK(r.error_id == "file.changed");
    CHECK(r.error.find(path) != std::string::npos);
    CHECK(r.error.find("size changed from") != std::string::npos);
    CHECK(r.written.empty());
    CHECK(fault_fingerprint(*net) == before);
    // A file shrunk before the read: an error naming the file, not a crash.
    sdtest::TinyResNet other;
    const auto again = statedict::load(other, path);
    CHECK_FALSE(again.ok());
    CHECK(again.error.find(path) != std::string::npos);
    CHECK(fault_fingerprint(*other) != before);  // it has its own random init, untouched by the failed load
  }
}

TEST_CASE("faults: rewritten in place after the read fails the load; replaced by rename loads what was read", "[faults]") {
  const std::string path = fault_copy("resnet_plain.pt", "rewritten.pt");
  const std::string bytes = sdtest::read_bytes(path);
  {
    const statedict::Checkpoint ck = statedict::read(path);
    rewrite_in_place(path, bytes);  // the same bytes even: the file was written after it was read
    struct timespec times[2] = {{0, UTIME_OMIT}, {1, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);  // an mtime that surely differs
    sdtest::TinyResNet net;
    const auto r = statedict::load(net, ck);
    INFO(r);
    CHECK(r.error_id == "file.changed");
    CHECK(r.error.find("rewritten in place") != std::string::npos);
  }
  {
    const statedict::Checkpoint ck = statedict::read(path);
    const std::string next = sdtest::temp_path("rewritten.pt.tmp");
    std::filesystem::copy_file(fixture("resnet.safetensors"), next, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::rename(next, path);  // what statedict::save and careful writers do
    sdtest::TinyResNet net;
    const auto r = statedict::load(net, ck);
    INFO(r);
    REQUIRE(r.ok());
    bool said = false;
    for (const auto& w : r.warnings) said |= w.find("replaced") != std::string::npos;
    CHECK(said);
    CHECK(sdtest::module_listing(*net) == sdtest::expected_listing("resnet_plain.pt")["tensors"]);
  }
}

TEST_CASE("faults: loads while a writer rewrites the file in place give one whole version or an error", "[faults]") {
  // Two versions of the same model, the same size: a load must end with all of A, all of B, or an
  // error; a mix would mean bytes of both.
  sdtest::TinyResNet a, b;
  const std::string pa = sdtest::temp_path("version_a.pt"), pb = sdtest::temp_path("version_b.pt");
  statedict::save(a, pa);
  statedict::save(b, pb);
  const std::string bytes_a = sdtest::read_bytes(pa), bytes_b = sdtest::read_bytes(pb);
  REQUIRE(bytes_a.size() == bytes_b.size());
  const auto want_a = fault_fingerprint(*a), want_b = fault_fingerprint(*b);
  const std::string path = sdtest::temp_path("rewritten_live.pt");
  rewrite_in_place(path, bytes_a);

  std::atomic<bool> stop{false};
  std::thread writer([&] {
    // Apart by more than the file system's timestamp tick: two rewrites within one tick leave the
    // same size and mtime, which nothing short of a checksum tells apart (docs/reliability-and-security.md).
    for (int i = 0; !stop.load(); ++i) {
      rewrite_in_place(path, i % 2 ? bytes_a : bytes_b);
      std::this_thread::sleep_for(std::chrono::milliseconds(15));
    }
  });
  int ok = 0, failed = 0, mixed = 0, partial = 0;
  std::set<std::string> ids;
  for (int i = 0; i < 300; ++i) {
    sdtest::TinyResNet net;
    const auto before = fault_fingerprint(*net);
    const auto r = statedict::load(net, path);
    const auto now = fault_fingerprint(*net);
    if (r.ok()) {
      ++ok;
      mixed += now != want_a && now != want_b;
    } else {
      ++failed;
      ids.insert(r.error_id);
      if (!r.written.empty())
        ++partial;
      else
        mixed += now != before;  // a failure that wrote nothing changed nothing
    }
  }
  stop = true;
  writer.join();
  std::string seen;
  for (const auto& id : ids) seen += id + " ";
  INFO("ok " << ok << ", failed " << failed << " (partly written " << partial << "), error ids: " << seen);
  CHECK(mixed == 0);
  CHECK(ok + failed == 300);
  WARN("rewrite race: ok " << ok << ", failed " << failed << " (partly written " << partial << "), error ids: " << seen);
}

TEST_CASE("faults: hashing, saving and converting a mapped Checkpoint whose file shrank give file.changed, not SIGBUS", "[faults]") {
  for (const char* name : {"resnet_plain.pt", "resnet.safetensors"}) {
    INFO(name);
    const std::string path = fault_copy(name, std::string("shrunk_save_") + name);
    const statedict::Checkpoint ck = statedict::read(path, statedict::ReadOptions{}.map_tensors(true));
    const auto tensors = ck.tensors();
    REQUIRE(::truncate(path.c_str(), 0) == 0);
    CHECK(sdtest::error_id([&] { (void)statedict::tensor_sha256(tensors.back().tensor); }) == "file.changed");
    for (const char* out : {"from_shrunk.pt", "from_shrunk.safetensors"}) {
      const std::string target = sdtest::temp_path(out);
      std::filesystem::remove(target);
      CHECK(sdtest::error_id([&] { statedict::save(tensors, target); }) == "file.changed");
      CHECK_FALSE(std::filesystem::exists(target));
    }
  }
}

TEST_CASE("faults: a default Checkpoint never reads its file's mapping: a shrunk or rewritten file is file.changed, "
          "tensors already read keep their values",
          "[faults]") {
  // Every format, each the default way (ReadOptions{}): a tensor's bytes are read with pread when
  // it is first asked for. The same calls on a mapped Checkpoint die of SIGBUS.
  for (const char* name : {"resnet_plain.pt", "resnet.safetensors", "resnet_legacy.pt", "resnet_fp16.pt", "dtypes.pt"}) {
    INFO(name);
    const std::string path = fault_copy(name, std::string("shrunk_default_") + name);
    const statedict::Checkpoint ck = statedict::read(path);
    const auto listed = statedict::detail::lazy_tensors(ck.root());
    REQUIRE(listed.size() >= 2);
    const std::string first = listed.front().key, last = listed.back().key;
    const at::Tensor held = ck.at(first).tensor();  // read now, before the file changes
    const std::string held_hash = statedict::tensor_sha256(held);
    CHECK(held_hash == statedict::tensor_sha256(statedict::read(fixture(name)).at(first).tensor()));
    REQUIRE(::truncate(path.c_str(), 0) == 0);
    // Asked for after the change: an error naming the file, whichever way it is asked for.
    const std::string err = sdtest::error_text([&] { (void)ck.at(last).tensor(); });
    CHECK(sdtest::error_id([&] { (void)ck.at(last).tensor(); }) == "file.changed");
    CHECK(err.find(path) != std::string::npos);
    CHECK(sdtest::error_id([&] { (void)ck.tensors(); }) == "file.changed");
    CHECK(sdtest::error_id([&] { (void)statedict::tensor_sha256(statedict::detail::resolve(listed.back())); }) == "file.changed");
    for (const char* out : {"from_default.pt", "from_default.safetensors"}) {
      if (std::string(name) == "dtypes.pt" && std::string(out) == "from_default.safetensors") continue;  // has complex128
      const std::string target = sdtest::temp_path(out);
      std::filesystem::remove(target);
      CHECK(sdtest::error_id([&] { statedict::save(statedict::detail::lazy_tensors(ck.root()), target); }) == "file.changed");
      CHECK_FALSE(std::filesystem::exists(target));
    }
    // What was read stays: the same tensor object, the same values, and saving it works.
    CHECK(ck.at(first).tensor().is_same(held));
    CHECK(statedict::tensor_sha256(ck.at(first).tensor()) == held_hash);
    const std::string target = sdtest::temp_path("held_default.safetensors");
    statedict::save(std::vector<statedict::NamedTensor>{{first, held}}, target);
    CHECK(statedict::tensor_sha256(statedict::read(target).at(first).tensor()) == held_hash);
  }
}

TEST_CASE("faults: a default Checkpoint's tensors are read once, on first use, and edits to them are what save writes", "[faults]") {
  const statedict::Checkpoint ck = statedict::read(fixture("resnet_plain.pt"));
  const statedict::Value conv1 = ck.at("conv1.weight");
  const at::Tensor& a = conv1.tensor();
  CHECK(&a == &ck.at("conv1.weight").tensor());            // kept by the Checkpoint, not read again
  CHECK(statedict::detail::mapped_file_of(a) == nullptr);  // its own bytes, not a view of the file
  {
    torch::NoGradGuard no_grad;
    ck.at("conv1.weight").tensor().fill_(0.25);
  }
  const std::string want = statedict::tensor_sha256(at::full_like(a, 0.25));
  CHECK(statedict::tensor_sha256(ck.tensors().front().tensor) == want);
  const std::string out = sdtest::temp_path("edited_default.pt");
  statedict::save(statedict::detail::lazy_tensors(ck.root()), out);  // what statedict convert saves
  CHECK(statedict::tensor_sha256(statedict::read(out).at("conv1.weight").tensor()) == want);
  // A tied weight edited through one key is edited under the other too, as in Python.
  const statedict::Checkpoint d = statedict::read(fixture("dtypes.pt"));
  {
    torch::NoGradGuard no_grad;
    d.at("tied_a").tensor().fill_(7);
  }
  bool seen = false;
  for (const auto& t : statedict::detail::lazy_tensors(d.root()))
    if (t.key == "tied_b") {
      seen = true;
      CHECK(statedict::detail::resolve(t).eq(7).all().item<bool>());
      CHECK(t.tensor.storage().is_alias_of(d.at("tied_a").tensor().storage()));
    }
  CHECK(seen);
}

TEST_CASE("faults: saving or hashing a zero-copy module after training writes its values, not the file's", "[faults]") {
  // The parameters alias the file's copy-on-write pages; a write to them stays in memory. Reading
  // the file again (pread) would silently save the old weights.
  const statedict::Checkpoint ck = statedict::read(fixture("resnet_plain.pt"), statedict::ReadOptions{}.map_tensors(true));
  sdtest::TinyResNet net;
  REQUIRE(statedict::load(net, ck, LoadOptions{}.zero_copy()).ok());
  REQUIRE(statedict::detail::mapped_file_of(net->conv1->weight) != nullptr);  // a view of the file, as asked
  {
    torch::NoGradGuard no_grad;
    net->conv1->weight.fill_(0.5);  // a "training step" in place
  }
  const std::string want = statedict::tensor_sha256(at::full_like(net->conv1->weight, 0.5));
  CHECK(statedict::tensor_sha256(net->conv1->weight) == want);
  for (const char* out : {"trained.pt", "trained.safetensors"}) {
    const std::string path = sdtest::temp_path(out);
    statedict::save(net, path);
    CHECK(statedict::tensor_sha256(statedict::read(path).at("conv1.weight").tensor()) == want);
  }
}

namespace {

/// In a child process (as another program would): opens `path` for writing, truncating it, writes
/// `bytes`, then cuts the file to `cut` bytes if `cut` is set. Returns the child's exit status.
int rewrite_from_child(const std::string& path, const std::string& bytes, off_t cut) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC);  // held here while a lease is broken
    if (fd < 0) ::_exit(2);
    if (::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) ::_exit(3);
    if (cut >= 0 && ::ftruncate(fd, cut) != 0) ::_exit(4);
    ::close(fd);
    ::_exit(0);
  }
  int status = -1;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// The module's values read from memory as they are (tensor_sha256 would refuse a changed file).
std::map<std::string, std::string> memory_fingerprint(torch::nn::Module& m) {
  std::map<std::string, std::string> out;
  for (const auto& t : statedict::state_dict(m)) out[t.key] = statedict::tensor_sha256(t.tensor.clone());
  return out;
}

std::string flipped_after_half(std::string bytes) {
  for (std::size_t i = bytes.size() / 2; i < bytes.size(); ++i) bytes[i] = static_cast<char>(~bytes[i]);
  return bytes;
}

}  // namespace

TEST_CASE("faults: zero-copy weights follow an in-place rewrite unless the mapping is protected, which also survives truncation",
          "[faults][lease]") {
  const std::string bytes = sdtest::read_bytes(fixture("resnet_plain.pt"));
  {  // The documented hazard, unprotected: the same bytes on disk change under the running model.
    const std::string path = fault_copy("resnet_plain.pt", "unprotected.pt");
    sdtest::TinyResNet net;
    REQUIRE(statedict::load(net, path, LoadOptions{}.zero_copy()).ok());
    const auto before = memory_fingerprint(*net);
    REQUIRE(rewrite_from_child(path, flipped_after_half(bytes), -1) == 0);
    CHECK(memory_fingerprint(*net) != before);
    CHECK(sdtest::error_id([&] { fault_fingerprint(*net); }) == "file.changed");  // hashing (and saving) it says so
  }
  const std::string path = fault_copy("resnet_plain.pt", "protected.pt");
  sdtest::TinyResNet net;
  const auto r = statedict::load(net, path, LoadOptions{}.zero_copy().read_options(statedict::ReadOptions{}.protect_mapping(true)));
  INFO(r);
  if (r.error_id == "io.lease") {  // a file system without leases (this machine's ext4 and tmpfs have them)
    WARN("leases are not available here: " << r.error);
    return;
  }
  REQUIRE(r.ok());
  const statedict::detail::MappedFile* file = statedict::detail::mapped_file_of(net->conv1->weight);
  REQUIRE(file != nullptr);  // zero-copy: the parameter is a view of the file's mapping
  CHECK_FALSE(file->protected_copy());
  const auto before = fault_fingerprint(*net);
  CHECK(sdtest::module_listing(*net) == sdtest::expected_listing("resnet_plain.pt")["tensors"]);
  // torch.save's way: open with O_TRUNC (held until statedict moved a copy in), write, then cut short.
  REQUIRE(rewrite_from_child(path, flipped_after_half(bytes), 100) == 0);
  CHECK(std::filesystem::file_size(path) == 100);
  CHECK(file->protected_copy());
  CHECK(memory_fingerprint(*net) == before);  // every page read: no SIGBUS, the old values
  CHECK(fault_fingerprint(*net) == before);   // hashing and saving use them too
  torch::NoGradGuard no_grad;
  net->eval();
  CHECK(net->forward(torch::ones({2, 3, 32, 32})).isfinite().all().item<bool>());
}

TEST_CASE("faults: protecting a mapping fails with io.lease while another holds the file open for writing", "[faults][lease]") {
  const std::string path = fault_copy("resnet_plain.pt", "lease_busy.pt");
  const int writer = ::open(path.c_str(), O_WRONLY);
  REQUIRE(writer >= 0);
  const std::string err =
      sdtest::error_text([&] { statedict::read(path, statedict::ReadOptions{}.map_tensors(true).protect_mapping(true)); });
  ::close(writer);
  CHECK(err.find("io.lease") != std::string::npos);
  CHECK(err.find(path) != std::string::npos);
  CHECK(err.find("open for writing") != std::string::npos);
  // Without the writer, the same read protects, and dropping the Checkpoint lets the lease go.
  {
    const auto ck = statedict::read(path, statedict::ReadOptions{}.map_tensors(true).protect_mapping(true));
    CHECK(ck.at("conv1.weight").tensor().defined());
  }
  const int again = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);  // a held lease would refuse this (EWOULDBLOCK)
  CHECK(again >= 0);
  if (again >= 0) ::close(again);
}
