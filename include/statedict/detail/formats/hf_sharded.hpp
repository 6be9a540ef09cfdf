#pragma once
// The `sharded/` folder of HuggingFaceStorageWriter(path, ..., enable_consolidation=True): what each
// rank saved, as safetensors files named shard-<rank>-model-<n>-of-<m>.safetensors (with
// save_distributed) whose DCP_SHARDING_INFO gives the offsets of the chunk of each tensor a file
// holds. A tensor sharded across ranks is in several files: its global size is where its chunks end
// (as torch's HuggingFaceStorageReader computes it), and the chunks must tile it exactly. The
// consolidated files at the top of the folder are read as any sharded checkpoint (read.hpp).
#include <statedict/detail/formats/dcp_chunks.hpp>
#include <statedict/detail/formats/safetensors.hpp>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace statedict::detail {

/// Whether a folder without index holds shards DCP wrote: a .safetensors file whose header (its
/// first 64 KiB) names DCP_SHARDING_INFO.
inline bool holds_dcp_shards(const std::string& dir) {
  std::error_code ec;
  std::size_t looked = 0;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end && looked < 64; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= 12 || name.compare(name.size() - 12, 12, ".safetensors") != 0) continue;
    ++looked;
    try {
      auto f = MappedFile::open(it->path().string(), true);
      std::string head(static_cast<std::size_t>(std::min<std::uint64_t>(f->size(), 65536)), '\0');
      if (f->read_at(head.data(), head.size(), 0) && head.find("\"DCP_SHARDING_INFO\"") != std::string::npos) return true;
    } catch (const Error&) {}  // unreadable: not evidence either way
  }
  return false;
}

/// What the folder's consolidated files say of the tensors, when consolidation began: the names in
/// its index, and the shapes in those of its files that were written.
struct HfConsolidated {
  std::set<std::string> names;
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::string>> shapes;  // name -> (shape, file)
};

/// Reads the shards in `dir`. `expected` (may be null) is what the folder's consolidated files say:
/// the shards must hold those tensors, no more, no fewer, and assemble to those shapes. Without it,
/// a missing shard that held only whole tensors or the last chunks of tensors cannot be told from a
/// smaller checkpoint (torch's reader cannot either); one that held a middle chunk is a gap.
inline std::shared_ptr<CheckpointData> read_hf_shards(const std::string& dir, const ReadOptions& opts, const HfConsolidated* expected) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0) files.push_back(it->path().string());
    if (files.size() > 100000) throw Error("limit.tensors", dir, "", "more than 100,000 shard files");
  }
  if (ec) throw Error("io.read", dir, "", "cannot list the folder: " + ec.message());
  if (files.empty()) throw Error("index.not_found", dir, "", "folder holds neither an index nor the .safetensors shards DCP wrote");
  std::sort(files.begin(), files.end());

  struct Tensor {
    Dtype dtype = nullptr;
    std::string first_file;
    std::vector<ChunkSpec> chunks;
    std::vector<std::string> from;  // the file of each chunk
  };
  std::vector<std::string> order;
  std::map<std::string, Tensor> tensors;
  auto cd = std::make_shared<CheckpointData>();
  cd->format = Format::sharded_safetensors;
  cd->path = dir;
  cd->max_depth = opts.max_depth();
  for (const auto& path : files) {
    auto part = read_safetensors(MappedFile::open(path, opts), opts, 0, /*describe_tensors=*/false);
    const auto offsets = sharding_info(part->metadata, path, opts.max_depth());
    std::set<std::string> held;
    for (const auto& [k, v] : part->tree.nodes[part->root].kv()) {
      const std::string& name = part->tree.nodes[k].text;
      const Node& t = part->tree.nodes[v];
      held.insert(name);
      const Dtype dt = t.raw() != nullptr ? t.raw() : find_dtype(t.tensor.scalar_type());
      std::vector<std::int64_t> shape = t.tensor.sizes().vec();
      if (t.raw() != nullptr) shape.pop_back();
      // Without DCP_SHARDING_INFO a file holds whole tensors (torch reads it so too).
      const auto o = offsets.find(name);
      if (!offsets.empty() && o == offsets.end())
        throw Error("dcp.sharding", path, "tensor '" + name + "'", "DCP_SHARDING_INFO does not give the offsets of this chunk");
      std::vector<std::int64_t> at = o == offsets.end() ? std::vector<std::int64_t>(shape.size(), 0) : o->second;
      if (at.size() != shape.size())
        throw Error("dcp.sharding", path, "tensor '" + name + "'",
                    "DCP_SHARDING_INFO gives " + std::to_string(at.size()) + " offsets for a " + std::to_string(shape.size()) +
                        "-dimensional chunk");
      auto [it, fresh] = tensors.try_emplace(name);
      Tensor& tensor = it->second;
      if (fresh) {
        order.push_back(name);
        tensor.dtype = dt;
        tensor.first_file = path;
      } else if (tensor.dtype != dt) {
        throw Error("dcp.chunk", path, "tensor '" + name + "'",
                    std::string("chunk is ") + dt->torch + ", its chunk in " + tensor.first_file + " is " + tensor.dtype->torch);
      } else if (tensor.chunks[0].offsets.size() != at.size()) {
        throw Error("dcp.chunk", path, "tensor '" + name + "'",
                    "chunk has another number of dimensions than its chunk in " + tensor.first_file);
      }
      tensor.chunks.push_back({std::move(at), std::move(shape), t.tensor});
      tensor.from.push_back(path);
    }
    for (const auto& [name, o] : offsets)
      if (held.count(name) == 0)
        throw Error("dcp.sharding", path, "__metadata__.DCP_SHARDING_INFO." + name, "names a tensor the file does not hold");
  }
  if (expected != nullptr) {
    for (const auto& name : expected->names)
      if (tensors.count(name) == 0)
        throw Error("index.missing_shard", dir, name, "the consolidated index lists this tensor and no shard in this folder holds it");
    for (const auto& name : order)
      if (expected->names.count(name) == 0)
        throw Error("index.mismatch", tensors[name].first_file, name, "shard holds a tensor the consolidated index does not list");
  }
  Node root;
  root.kind = Kind::dict;
  for (const auto& name : order) {
    Tensor& t = tensors[name];
    std::vector<std::int64_t> size(t.chunks[0].offsets.size(), 0);
    for (const auto& c : t.chunks)
      for (std::size_t d = 0; d < size.size(); ++d) {
        std::int64_t end = 0;
        if (__builtin_add_overflow(c.offsets[d], c.sizes[d], &end)) throw Error("dcp.bounds", dir, name, "chunk offsets overflow");
        size[d] = std::max(size[d], end);
      }
    if (expected != nullptr) {
      const auto e = expected->shapes.find(name);
      if (e != expected->shapes.end() && e->second.first != size)
        throw Error("dcp.missing_chunk", dir, name,
                    "the shards assemble a tensor of shape " + shape_str(size) + ", the consolidated " + e->second.second + " holds " +
                        shape_str(e->second.first) + ": is a shard missing?");
    }
    // A gap (a missing shard) or an overlap names the files involved.
    try {
      check_chunks(dir, name, size, t.chunks);
    } catch (const Error& e) {
      std::string files_of;
      for (const auto& f : std::set<std::string>(t.from.begin(), t.from.end()))
        files_of += (files_of.empty() ? "" : ", ") + fs::path(f).filename().string();
      throw Error(e.id(), e.file(), e.where(), e.reason() + " (chunks in " + files_of + "; is a shard missing?)");
    }
    Node k;
    k.kind = Kind::string;
    k.text = name;
    const auto ki = cd->tree.add(std::move(k));
    root.kv().emplace_back(ki, cd->tree.add(chunked_tensor(t.dtype, name, size, std::move(t.chunks))));
  }
  cd->root = cd->tree.add(std::move(root));
  return cd;
}

}  // namespace statedict::detail
