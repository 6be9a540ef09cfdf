#pragma once
// statedict::read: any PyTorch checkpoint file into a statedict::Checkpoint.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/config.hpp>
#include <statedict/read_options.hpp>

#include <string>

namespace statedict {

/// Reads a checkpoint: a torch.save file (zip or legacy, state dicts, training checkpoints, whole
/// pickled modules), a safetensors file, a sharded checkpoint (its *.index.json or folder), a
/// TorchScript archive, a torch.export archive (.pt2: the exported program's state dict) or an
/// AOTInductor package whose constants are stored beside its .so. Throws statedict::Error naming
/// the file and the place for anything unreadable.
STATEDICT_FUNC Checkpoint read(const std::string& path, const ReadOptions& options = {});

}  // namespace statedict

#if STATEDICT_DEFINITIONS
#include <statedict/detail/formats/dcp.hpp>
#include <statedict/detail/formats/hf_sharded.hpp>
#include <statedict/detail/formats/plain_pickle.hpp>
#include <statedict/detail/formats/pt2.hpp>
#include <statedict/detail/formats/safetensors.hpp>
#include <statedict/detail/formats/torch_file.hpp>
#include <statedict/detail/formats/zip.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>
#include <utility>

namespace statedict {

namespace detail {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// TorchScript archives are read by LibTorch's own reader, which needs <torch/script.h>. A program
/// reads them once one of its units includes <statedict/jit.hpp> (the umbrella header does, and
/// statedict::compiled does): that header sets this. Units that only read and load checkpoints then
/// never compile the TorchScript machinery.
using ScriptReader = std::shared_ptr<CheckpointData> (*)(const std::string& path, const ReadOptions& opts);
inline ScriptReader& script_reader() {
  static ScriptReader reader = nullptr;
  return reader;
}

inline std::shared_ptr<CheckpointData> read_file(const std::string& path, const ReadOptions& opts);
inline std::shared_ptr<CheckpointData> read_opened(const std::shared_ptr<MappedFile>& f, const ReadOptions& opts);

/// A sharded checkpoint: an index whose weight_map names, for every tensor, the shard holding it.
inline std::shared_ptr<CheckpointData> read_sharded(const std::string& index_path, const ReadOptions& opts) {
  auto f = MappedFile::open(index_path);
  if (f->size() > (64u << 20)) throw Error("index.too_large", index_path, "", "index file larger than 64 MiB");
  std::string text(f->size(), '\0');
  read_or_throw(*f, text.data(), text.size(), 0, "index");  // pread: a file that shrinks is an error, not SIGBUS
  nlohmann::json j = parse_json_header(text.data(), text.size(), index_path, "", opts.max_depth());
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error("index.bad", index_path, "weight_map", "index has no weight_map object");
  const auto& wm = j["weight_map"];
  std::vector<std::string> shards;
  for (auto it = wm.begin(); it != wm.end(); ++it) {
    if (!it.value().is_string()) throw Error("index.bad", index_path, "weight_map." + it.key(), "shard name is not a string");
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos || shard == "." || shard == "..")
      throw Error("index.bad_shard", index_path, "weight_map." + it.key(),
                  "shard '" + shard + "' is not a plain file name in the index's folder");
    if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
  }
  std::sort(shards.begin(), shards.end());
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  auto cd = std::make_shared<CheckpointData>();
  cd->path = index_path;
  cd->max_depth = opts.max_depth();
  cd->format = !shards.empty() && ends_with(shards[0], ".safetensors") ? Format::sharded_safetensors : Format::sharded_torch;
  Node root;
  root.kind = Kind::dict;
  std::map<std::string, std::string> found;  // tensor -> shard
  for (const auto& shard : shards) {
    const std::string sp = (dir / shard).string();
    std::error_code ec;  // a name the file system refuses (too long, ...) is the index's fault, not an exception of another type
    const bool present = std::filesystem::exists(sp, ec);
    if (ec) throw Error("index.bad_shard", index_path, shard, "cannot look up the shard file: " + ec.message());
    if (!present) throw Error("index.missing_shard", index_path, shard, "shard file does not exist");
    auto part = read_file(sp, opts);
    Checkpoint ck = make_checkpoint(part);
    for (auto& nt : lazy_tensors(ck.root())) {  // as read: no tensor's bytes are read here
      if (!wm.contains(nt.key))
        throw Error("index.mismatch", index_path, shard, "shard holds tensor '" + nt.key + "' that weight_map does not list");
      if (wm[nt.key].get<std::string>() != shard)
        throw Error("index.mismatch", index_path, shard,
                    "tensor '" + nt.key + "' is listed for shard '" + wm[nt.key].get<std::string>() + "'");
      if (!found.emplace(nt.key, shard).second)
        throw Error("index.duplicate", index_path, shard, "tensor '" + nt.key + "' appears in two shards");
      Node k;
      k.kind = Kind::string;
      k.text = nt.key;
      Node v;
      v.kind = Kind::tensor;
      v.tensor = nt.tensor;
      const auto ki = cd->tree.add(std::move(k));
      root.kv().emplace_back(ki, cd->tree.add(std::move(v)));
    }
    for (const auto& [k, v] : part->metadata) cd->metadata[k] = v;
  }
  for (auto it = wm.begin(); it != wm.end(); ++it)
    if (found.count(it.key()) == 0)
      throw Error("index.mismatch", index_path, "weight_map." + it.key(),
                  "tensor is listed for shard '" + it.value().get<std::string>() + "' but that shard does not hold it");
  cd->root = cd->tree.add(std::move(root));
  return cd;
}

inline std::string find_index_in(const std::string& dir) {
  std::error_code ec;
  for (const char* name : {"model.safetensors.index.json", "pytorch_model.bin.index.json"})
    if (std::filesystem::exists(std::filesystem::path(dir) / name, ec)) return (std::filesystem::path(dir) / name).string();
  std::vector<std::string> found;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (ends_with(it->path().filename().string(), ".index.json")) found.push_back(it->path().string());
  if (ec) throw Error("io.read", dir, "", "cannot list the folder: " + ec.message());
  if (found.size() == 1) return found[0];
  throw Error("index.not_found", dir, "",
              found.empty() ? "folder holds no *.index.json of a sharded checkpoint" : "folder holds several *.index.json files; name one");
}

/// The index in `dir` if it has one (as find_index_in finds it), else "".
inline std::string index_in(const std::string& dir) {
  try {
    return find_index_in(dir);
  } catch (const Error& e) {
    if (e.id() == "index.not_found") return "";
    throw;
  }
}

/// What a consolidated index says, and whether every shard it names is there.
inline std::pair<HfConsolidated, bool> consolidated(const std::string& index_path, const ReadOptions& opts) {
  auto f = MappedFile::open(index_path);
  if (f->size() > (64u << 20)) throw Error("index.too_large", index_path, "", "index file larger than 64 MiB");
  std::string text(f->size(), '\0');
  read_or_throw(*f, text.data(), text.size(), 0, "index");
  const nlohmann::json j = parse_json_header(text.data(), text.size(), index_path, "", opts.max_depth());
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error("index.bad", index_path, "weight_map", "index has no weight_map object");
  HfConsolidated c;
  std::set<std::string> present;
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  bool complete = true;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    c.names.insert(it.key());
    std::error_code ec;
    const std::string shard = it.value().is_string() ? it.value().get<std::string>() : "";
    const bool here = !shard.empty() && shard.find('/') == std::string::npos && std::filesystem::is_regular_file(dir / shard, ec);
    if (here) present.insert(shard);
    complete = complete && here;
  }
  if (!complete)  // the shapes of the files that were written, to check the shards against
    for (const auto& shard : present) {
      const std::string path = (dir / shard).string();
      for (const auto& e : parse_safetensors_header(*MappedFile::open(path), opts).entries) c.shapes[e.name] = {e.shape, path};
    }
  return {c, complete};
}

/// A folder HuggingFaceStorageWriter(path, ..., enable_consolidation=True) wrote: the consolidated
/// checkpoint at its top when that is complete (finish() writes it last), else what sharded/ holds
/// (its own index when the save was not distributed; else the ranks' shards, assembled).
inline std::shared_ptr<CheckpointData> read_hf_folder(const std::string& dir, const ReadOptions& opts) {
  const std::string top = index_in(dir);
  const std::string sharded = (std::filesystem::path(dir) / "sharded").string();
  std::pair<HfConsolidated, bool> expect;
  if (!top.empty()) {
    expect = consolidated(top, opts);
    if (expect.second) return read_sharded(top, opts);
  }
  const std::string inner = index_in(sharded);
  if (!inner.empty()) return read_sharded(inner, opts);
  try {
    return read_hf_shards(sharded, opts, top.empty() ? nullptr : &expect.first);
  } catch (const Error& e) {
    // An incomplete consolidation and no shards: the consolidated index says which file is missing.
    if (!top.empty() && e.id() == "index.not_found") return read_sharded(top, opts);
    throw;
  }
}

inline std::shared_ptr<CheckpointData> read_folder(const std::string& dir, const ReadOptions& opts) {
  if (is_dcp_folder(dir)) return read_dcp(dir, opts);
  std::error_code ec;
  if (std::filesystem::is_directory(std::filesystem::path(dir) / "sharded", ec)) return read_hf_folder(dir, opts);
  // A sharded/ folder itself (no index when the save was distributed): its shards, assembled.
  const std::string index = index_in(dir);
  if (index.empty() && holds_dcp_shards(dir)) return read_hf_shards(dir, opts, nullptr);
  return read_sharded(index.empty() ? find_index_in(dir) : index, opts);
}

/// What a format is, in words, for notes and errors.
inline const char* format_words(Format f) {
  switch (f) {
  case Format::torch_zip:
    return "a torch.save zip (PyTorch 1.6 or later)";
  case Format::torch_legacy:
    return "a legacy torch.save file (before PyTorch 1.6)";
  case Format::torchscript:
    return "a TorchScript archive (torch.jit.save)";
  case Format::safetensors:
    return "a safetensors file";
  case Format::pt2:
  case Format::aoti_package:
    return "a torch.export archive (.pt2)";
  case Format::pickle:
    return "a plain pickle (pickle.dump, no torch.save container)";
  default:
    return "a checkpoint of another format";
  }
}

/// A note when the file's name says another format than its content: statedict reads by content,
/// and a user who named the file (or a tool that renamed it) should know what it really is.
inline std::string name_note(const std::string& path, Format got) {
  using F = Format;
  const std::vector<F> torch_save{F::torch_zip, F::torch_legacy, F::torchscript};
  // torch.save to a .pkl name is common: only another format than a pickle or torch.save is news there.
  const std::vector<F> pickled{F::pickle, F::torch_zip, F::torch_legacy};
  const std::vector<std::pair<const char*, std::vector<F>>> expected{{".safetensors", {F::safetensors}},
                                                                     {".pt2", {F::pt2, F::aoti_package}},
                                                                     {".pt", torch_save},
                                                                     {".pth", torch_save},
                                                                     {".bin", torch_save},
                                                                     {".ckpt", torch_save},
                                                                     {".tar", torch_save},
                                                                     {".pkl", pickled},
                                                                     {".pickle", pickled}};
  const std::string name = std::filesystem::path(path).filename().string();
  for (const auto& [ext, fits] : expected)
    if (ends_with(name, ext))
      return std::find(fits.begin(), fits.end(), got) != fits.end()
                 ? ""
                 : "named '" + std::string(ext) + "', but it is " + format_words(got) + ": read as that";
  return "";
}

/// The first bytes of a file no reader recognised, shown so that a user sees what it is instead.
inline std::string start_of(const MappedFile& f) {
  const std::size_t n = std::min<std::size_t>(f.head_size(), 16);
  const auto* h = f.head();
  std::string lower;
  for (std::size_t i = 0; i < n; ++i) lower += static_cast<char>(std::tolower(h[i]));
  if (lower.rfind("<!doctype html", 0) == 0 || lower.rfind("<html", 0) == 0)
    return "it is an HTML page (a download that received a web page, such as a login or error page, instead of the file)";
  const bool text = std::all_of(h, h + n, [](std::uint8_t c) { return c >= 0x20 && c < 0x7f; });
  std::string shown;
  if (text) {
    shown = "'" + std::string(reinterpret_cast<const char*>(h), n) + "'";
  } else {
    char b[4];
    for (std::size_t i = 0; i < n; ++i) {
      std::snprintf(b, sizeof b, "%02x", h[i]);
      shown += (i ? " " : "") + std::string(b);
    }
  }
  return "it starts with " + shown;
}

inline std::shared_ptr<CheckpointData> read_file(const std::string& path, const ReadOptions& opts) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return read_folder(path, opts);
  if (ends_with(path, ".index.json")) return read_sharded(path, opts);
  auto f = MappedFile::open(path, opts);
  auto cd = read_opened(f, opts);
  // A protected file whose lease broke during the read: its headers may be the new file's, its
  // tensors the old one's.
  if (f->protected_copy()) throw Error("file.changed", path, "", "it was opened for writing while it was read; read it again");
  const std::string note = name_note(path, cd->format);
  if (!note.empty()) cd->notes.insert(cd->notes.begin(), note);
  return cd;
}

/// Reads an opened file by what its bytes are, whatever its name: a torch.save zip named
/// .safetensors is read as a torch.save zip (read_file notes the name).
inline std::shared_ptr<CheckpointData> read_opened(const std::shared_ptr<MappedFile>& f, const ReadOptions& opts) {
  const std::string& path = f->path();
  if (f->size() == 0) throw Error("format.empty", path, "", "file is empty");
  static const char lfs[] = "version https://git-lfs.";
  if (f->head_size() >= sizeof lfs - 1 && std::memcmp(f->head(), lfs, sizeof lfs - 1) == 0)
    throw Error("format.lfs_pointer", path, "offset 0",
                "this is a Git LFS pointer, not the checkpoint: fetch the real file (git lfs pull) and read that");
  if (f->head_size() >= 8 && std::memcmp(f->head(), "PYTORCH1", 8) == 0)
    throw Error("format.unsupported", path, "offset 0", "PYTORCH1 preview format (PyTorch 1.0 TorchScript) is not supported");
  if (ZipArchive::looks_like_zip(*f)) {
    ZipArchive z(f);
    if (z.find("constants.pkl") != nullptr || z.find("code/__torch__.py") != nullptr) {
      if (script_reader() == nullptr)
        throw Error("format.torchscript", path, "",
                    "this is a TorchScript archive (torch.jit.save); this program reads those once it includes "
                    "<statedict/jit.hpp> or <statedict/statedict.hpp>, which bring in LibTorch's TorchScript reader");
      return script_reader()(path, opts);
    }
    if (is_pt2_archive(z)) return read_pt2(z, opts);
    return read_torch_zip(z, opts);
  }
  if (looks_like_legacy(*f)) return read_legacy(f, opts);
  if (f->head_size() > 262 && std::memcmp(f->head() + 257, "ustar", 5) == 0)
    throw Error("format.unsupported", path, "offset 257", "tar-based torch.save format (PyTorch < 0.4) is not supported");
  if (looks_like_safetensors(*f)) return read_safetensors(f, opts);
  // A damaged safetensors file (its header runs past the end) starts with a plausible header length
  // and a '{', which no pickle has there; its length may start with a PROTO byte (0x0280 = 640).
  const bool damaged_safetensors = f->head_size() > 8 && f->head()[8] == '{' && rd64(f->head()) <= safetensors_max_header;
  if (looks_like_pickle(*f) && !damaged_safetensors) return read_plain_pickle(f, opts);
  // Nothing known starts so. A file named .safetensors is most likely a damaged one: its reader
  // says what is wrong with the header.
  if (damaged_safetensors || ends_with(path, ".safetensors")) return read_safetensors(f, opts);
  throw Error("format.unknown", path, "offset 0",
              "not a recognised checkpoint format (torch.save zip or legacy, safetensors, TorchScript, torch.export, a pickle of "
              "protocol 2 or later); " +
                  start_of(*f));
}

}  // namespace detail

STATEDICT_FUNC Checkpoint read(const std::string& path, const ReadOptions& options) {
  return detail::make_checkpoint(detail::read_file(path, options));
}

}  // namespace statedict
#endif  // STATEDICT_DEFINITIONS
