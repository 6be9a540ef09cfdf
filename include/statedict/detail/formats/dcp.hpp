#pragma once
// torch.distributed.checkpoint (DCP) folders: `.metadata` (a pickled Metadata dataclass: per key a
// TensorStorageMetadata with the global size and its chunks, or a BytesStorageMetadata; storage_data
// mapping each chunk to a file, offset and length) and `__R_N.distcp` files in which every chunk is a
// small torch.save zip. Each tensor is presented whole, its chunks checked and assembled.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/formats/torch_file.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace statedict::detail {

inline bool is_dcp_folder(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(std::filesystem::path(dir) / ".metadata", ec);
}

class DcpReader {
public:
  DcpReader(std::string dir, const ReadOptions& opts) : dir_(std::move(dir)), opts_(opts) {
    meta_path_ = (std::filesystem::path(dir_) / ".metadata").string();
  }

  std::shared_ptr<CheckpointData> read() {
    auto f = MappedFile::open(meta_path_);
    if (f->size() > opts_.max_pickle_bytes())
      throw Error("limit.pickle_size", meta_path_, "", "metadata is " + std::to_string(f->size()) + " bytes, over max_pickle_bytes");
    std::string bytes(static_cast<std::size_t>(f->size()), '\0');
    if (!bytes.empty() && !f->read_at(bytes.data(), bytes.size(), 0))
      throw Error("io.read", meta_path_, "", std::string("cannot read: ") + std::strerror(errno));
    Unpickler up(meta_, opts_, meta_path_, "", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), 0, false);
    const std::uint32_t root = up.run();
    const Node& r = node(root);
    if (r.kind != Kind::object || r.text != "torch.distributed.checkpoint.metadata.Metadata")
      bad_meta("top level", "is a " + r.text + ", not torch.distributed.checkpoint.metadata.Metadata");
    const std::uint32_t sdm = field(root, "state_dict_metadata", Kind::dict);
    const std::uint32_t storage = field(root, "storage_data", Kind::dict);
    const std::uint32_t planner = field(root, "planner_data", Kind::none);  // optional
    index_storage(storage);

    auto cd = std::make_shared<CheckpointData>();
    cd->format = Format::dcp;
    cd->path = dir_;
    cd->max_depth = opts_.max_depth();
    out_ = &cd->tree;
    reasons_ = &cd->reasons;
    cd->root = out_->add(Kind::dict);
    for (const auto& [k, v] : node(sdm).kv()) {
      const std::string& fqn = text(k, "a state_dict_metadata key");
      const std::uint32_t value =
          node(v).text == "torch.distributed.checkpoint.metadata.BytesStorageMetadata" ? read_bytes(fqn) : read_tensor(fqn, v);
      place(cd->root, path_of(fqn, planner), value);
    }
    return cd;
  }

private:
  struct Location {
    std::string file;
    std::uint64_t offset = 0, length = 0;
  };

  const Node& node(std::uint32_t id) const { return meta_.tree.nodes[id]; }
  [[noreturn]] void bad_meta(const std::string& where, const std::string& why) const {
    throw Error("dcp.metadata", meta_path_, where, why);
  }

  /// A dataclass field: the object's BUILD state is a dict of its fields.
  std::uint32_t field(std::uint32_t obj, const char* name, Kind want) const {
    const Node& o = node(obj);
    const std::uint32_t state = o.kind == Kind::object ? o.state() : npos;
    if (state != npos && node(state).kind == Kind::dict)
      for (const auto& [k, v] : node(state).kv())
        if (node(k).kind == Kind::string && node(k).text == name) {
          if (want != Kind::none && node(v).kind != want) bad_meta(o.text + "." + name, "is not a " + kind_text(want));
          return v;
        }
    if (want == Kind::none) return npos;
    bad_meta(o.text, std::string("has no field '") + name + "'");
  }
  static std::string kind_text(Kind k) {
    switch (k) {
    case Kind::dict:
      return "dict";
    case Kind::list:
      return "list";
    case Kind::tuple:
      return "tuple";
    case Kind::string:
      return "str";
    default:
      return "value of the expected type";
    }
  }
  const std::string& text(std::uint32_t id, const char* what) const {
    if (node(id).kind != Kind::string) bad_meta(what, "is not a str");
    return node(id).text;
  }
  std::vector<std::int64_t> ints(std::uint32_t id, const std::string& where) const {
    const Node& n = node(id);
    if (n.kind != Kind::tuple && n.kind != Kind::list) bad_meta(where, "is not a tuple of ints");
    std::vector<std::int64_t> r;
    for (auto c : n.items) {
      if (node(c).kind != Kind::integer || node(c).big || node(c).integer < 0)
        bad_meta(where, "holds a value that is not a non-negative int");
      r.push_back(node(c).integer);
    }
    return r;
  }
  static std::string key_of(const std::string& fqn, const std::vector<std::int64_t>& offsets) {
    std::string k = fqn + "@";
    for (auto o : offsets) k += std::to_string(o) + ",";
    return k;
  }

  /// storage_data: MetadataIndex(fqn, offset, index) -> _StorageInfo(relative_path, offset, length).
  void index_storage(std::uint32_t storage) {
    for (const auto& [k, v] : node(storage).kv()) {
      const std::string fqn = text(field(k, "fqn", Kind::string), "MetadataIndex.fqn");
      const std::uint32_t off = field(k, "offset", Kind::none);
      const std::vector<std::int64_t> offsets =
          off == npos || node(off).kind == Kind::none ? std::vector<std::int64_t>{} : ints(off, fqn + " offset");
      Location loc;
      loc.file = text(field(v, "relative_path", Kind::string), "_StorageInfo.relative_path");
      const Node& o = node(field(v, "offset", Kind::integer));
      const Node& l = node(field(v, "length", Kind::integer));
      if (o.big || l.big || o.integer < 0 || l.integer < 0) bad_meta(fqn, "storage offset or length is negative or huge");
      loc.offset = static_cast<std::uint64_t>(o.integer);
      loc.length = static_cast<std::uint64_t>(l.integer);
      if (loc.file.empty() || loc.file.find('/') != std::string::npos || loc.file.find('\\') != std::string::npos || loc.file == "." ||
          loc.file == "..")
        throw Error("dcp.file", meta_path_, fqn, "storage file '" + loc.file + "' is not a plain file name in the checkpoint folder");
      if (!storage_.emplace(key_of(fqn, offsets), loc).second) bad_meta(fqn, "the same chunk is stored twice");
    }
  }

  const std::shared_ptr<MappedFile>& open(const std::string& name) {
    auto it = files_.find(name);
    if (it == files_.end()) it = files_.emplace(name, MappedFile::open((std::filesystem::path(dir_) / name).string(), opts_)).first;
    return it->second;
  }

  /// The small torch.save zip of one chunk or bytes item.
  std::shared_ptr<CheckpointData> read_record(const std::string& fqn, const std::vector<std::int64_t>& offsets) {
    auto it = storage_.find(key_of(fqn, offsets));
    if (it == storage_.end()) {
      std::string o;
      for (auto x : offsets) o += (o.empty() ? "" : ", ") + std::to_string(x);
      throw Error("dcp.missing_chunk", dir_, fqn, "the metadata names no stored data for the chunk at offsets (" + o + ")");
    }
    const Location& loc = it->second;
    const auto& f = open(loc.file);
    std::uint64_t end;
    if (add_overflows(loc.offset, loc.length, &end) || end > f->size())
      throw Error("dcp.file", f->path(), fqn,
                  "chunk [" + std::to_string(loc.offset) + ", +" + std::to_string(loc.length) + ") lies past the end of the " +
                      std::to_string(f->size()) + "-byte file");
    return read_torch_zip(ZipArchive(f, loc.offset, loc.length), opts_, /*describe=*/false);  // its nodes are taken as they are
  }

  std::uint32_t read_bytes(const std::string& fqn) {
    auto cd = read_record(fqn, {});
    return copy_in(*cd, cd->root);
  }

  std::uint32_t read_tensor(const std::string& fqn, std::uint32_t meta) {
    const Node& m = node(meta);
    if (m.text != "torch.distributed.checkpoint.metadata.TensorStorageMetadata")
      bad_meta(fqn, "is a " + m.text + ", not tensor or bytes metadata");
    // properties: TensorProperties, pickled as the tuple (dtype, layout, requires_grad, memory_format, pin_memory).
    const std::uint32_t props = field(meta, "properties", Kind::object);
    const std::uint32_t pstate = node(props).state();
    if (pstate == npos || node(pstate).items.empty()) bad_meta(fqn, "TensorProperties without a dtype");
    const Node& dtn = node(node(pstate).items[0]);
    const Dtype dt =
        dtn.internal == Internal::global && dtn.text.compare(0, 6, "torch.") == 0 ? dtype_from_torch(dtn.text.substr(6)) : nullptr;
    if (dt == nullptr || c10::isQIntType(dt->type)) bad_meta(fqn, "dtype '" + dtn.text + "' is not a dtype statedict reads");
    const std::vector<std::int64_t> size = ints(field(meta, "size", Kind::tuple), fqn + " size");
    const std::uint32_t chunks = field(meta, "chunks", Kind::list);
    if (size.size() > 64) bad_meta(fqn, "more than 64 dimensions");
    std::uint64_t numel = 1;
    for (auto s : size)
      if (mul_overflows(numel, static_cast<std::uint64_t>(s), &numel)) throw Error("dcp.bounds", dir_, fqn, "global size overflows");
    struct Chunk {
      std::vector<std::int64_t> offsets, sizes;
    };
    std::vector<Chunk> list;
    std::uint64_t covered = 0;
    const auto& items = node(chunks).items;
    if (items.size() > 16384) throw Error("dcp.bounds", dir_, fqn, "more than 16384 chunks");
    for (std::size_t i = 0; i < items.size(); ++i) {
      Chunk c{ints(field(items[i], "offsets", Kind::tuple), fqn + " chunk offsets"),
              ints(field(items[i], "sizes", Kind::tuple), fqn + " chunk sizes")};
      const std::string where = fqn + " chunk " + std::to_string(i);
      if (c.offsets.size() != size.size() || c.sizes.size() != size.size())
        throw Error("dcp.bounds", dir_, where,
                    "has " + std::to_string(c.offsets.size()) + " offsets and " + std::to_string(c.sizes.size()) + " sizes for a " +
                        std::to_string(size.size()) + "-dimensional tensor");
      std::uint64_t vol = 1;
      for (std::size_t d = 0; d < size.size(); ++d) {
        if (c.offsets[d] > size[d] || c.sizes[d] > size[d] - c.offsets[d])
          throw Error("dcp.bounds", dir_, where,
                      "dimension " + std::to_string(d) + " spans [" + std::to_string(c.offsets[d]) + ", " +
                          std::to_string(c.offsets[d] + c.sizes[d]) + ") of a tensor of size " + std::to_string(size[d]));
        vol *= static_cast<std::uint64_t>(c.sizes[d]);  // bounded by numel, which did not overflow
      }
      for (std::size_t j = 0; j < list.size(); ++j) {
        bool overlap = vol > 0;
        for (std::size_t d = 0; d < size.size() && overlap; ++d)
          overlap = c.offsets[d] < list[j].offsets[d] + list[j].sizes[d] && list[j].offsets[d] < c.offsets[d] + c.sizes[d];
        if (overlap) throw Error("dcp.overlap", dir_, where, "overlaps chunk " + std::to_string(j));
      }
      covered += vol;
      list.push_back(std::move(c));
    }
    if (covered != numel)
      throw Error("dcp.missing_chunk", dir_, fqn,
                  "the chunks cover " + std::to_string(covered) + " of the tensor's " + std::to_string(numel) + " elements");
    // Every chunk's record is parsed and checked against the metadata here; its bytes stay in the
    // file's mapping. A tensor of several chunks is assembled only when it is used, and a slice of it
    // (a tensor-parallel rank's part) touches only the chunks it overlaps.
    auto pieces = std::make_shared<Pieces>();
    pieces->dtype = dt;
    pieces->size = size;
    pieces->key = fqn;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const Chunk& c = list[i];
      auto cd = read_record(fqn, c.offsets);
      const Node& t = cd->tree.nodes[cd->root];
      const std::string where = fqn + " chunk " + std::to_string(i);
      const Dtype got = t.kind != Kind::tensor ? nullptr : t.raw() != nullptr ? t.raw() : find_dtype(t.tensor.scalar_type());
      if (got != dt) throw Error("dcp.chunk", dir_, where, "stored data is not a " + std::string(dt->torch) + " tensor");
      std::vector<std::int64_t> shape = t.tensor.sizes().vec();
      if (t.raw() != nullptr) shape.pop_back();
      if (shape != c.sizes)
        throw Error("dcp.chunk", dir_, where, "stored tensor has shape " + shape_str(shape) + ", the metadata says " + shape_str(c.sizes));
      pieces->parts.push_back({c.offsets, c.sizes, t.tensor});
    }
    Node n;
    n.kind = Kind::tensor;
    if (!native(dt)) n.raw() = dt;
    if (pieces->parts.size() == 1) {
      n.tensor = pieces->parts[0].data;  // one chunk is the whole tensor: kept as read
    } else if (pieces->parts.empty()) {
      n.tensor = empty_of(dt, size);  // no chunks: an empty tensor
    } else {
      n.tensor = placeholder(dt, size);
      n.pieces() = std::move(pieces);
    }
    return out_->add(std::move(n));
  }

  /// Copies a value tree read from a bytes item into the checkpoint's tree.
  std::uint32_t copy_in(const CheckpointData& src, std::uint32_t id) {
    std::map<std::uint32_t, std::uint32_t> done;
    std::vector<std::uint32_t> todo{id};
    while (!todo.empty()) {
      const std::uint32_t s = todo.back();
      todo.pop_back();
      if (done.count(s)) continue;
      Node n = src.tree.nodes[s];
      if (n.internal == Internal::unreadable) {
        n.pending = static_cast<std::uint32_t>(reasons_->size());
        reasons_->push_back(src.reasons[src.tree.nodes[s].pending]);
      }
      done[s] = out_->add(std::move(n));
      const Node& o = src.tree.nodes[s];
      for (auto c : o.items) todo.push_back(c);
      for (const auto& [k, v] : o.kv()) {
        todo.push_back(k);
        todo.push_back(v);
      }
      if (o.args() != npos) todo.push_back(o.args());
      if (o.state() != npos) todo.push_back(o.state());
    }
    for (const auto& [s, d] : done) {
      Node& n = out_->nodes[d];
      for (auto& c : n.items) c = done.at(c);
      for (auto& [k, v] : n.kv()) {
        k = done.at(k);
        v = done.at(v);
      }
      if (n.args() != npos) n.args() = done.at(n.args());
      if (n.state() != npos) n.state() = done.at(n.state());
    }
    return done.at(id);
  }

  /// Where a flattened key goes: planner_data maps it to its path in the original nested state dict.
  std::vector<std::string> path_of(const std::string& fqn, std::uint32_t planner) const {
    if (planner != npos && node(planner).kind == Kind::dict)
      for (const auto& [k, v] : node(planner).kv())
        if (node(k).kind == Kind::string && node(k).text == fqn && (node(v).kind == Kind::tuple || node(v).kind == Kind::list)) {
          std::vector<std::string> path;
          for (auto p : node(v).items) {
            if (node(p).kind == Kind::string)
              path.push_back(node(p).text);
            else if (node(p).kind == Kind::integer && !node(p).big)
              path.push_back(std::to_string(node(p).integer));
            else
              bad_meta("planner_data " + fqn, "path holds a value that is not a str or int");
          }
          if (!path.empty()) return path;
        }
    return {fqn};
  }
  void place(std::uint32_t root, const std::vector<std::string>& path, std::uint32_t value) {
    std::uint32_t at = root;
    for (std::size_t i = 0; i + 1 < path.size(); ++i) {
      std::uint32_t next = npos;
      for (const auto& [k, v] : out_->nodes[at].kv())
        if (out_->nodes[k].text == path[i]) next = v;
      if (next == npos) {
        next = out_->add(Kind::dict);
        out_->nodes[at].kv().emplace_back(string_node(path[i]), next);
      } else if (out_->nodes[next].kind != Kind::dict) {
        bad_meta("planner_data", "key '" + path[i] + "' is both a value and a container");
      }
      at = next;
    }
    for (const auto& [k, v] : out_->nodes[at].kv())
      if (out_->nodes[k].text == path.back()) bad_meta("planner_data", "two items are stored under '" + path.back() + "'");
    out_->nodes[at].kv().emplace_back(string_node(path.back()), value);
  }
  std::uint32_t string_node(const std::string& s) {
    Node n;
    n.kind = Kind::string;
    n.text = s;
    return out_->add(std::move(n));
  }

  std::string dir_, meta_path_;
  const ReadOptions& opts_;
  PickleState meta_;
  std::map<std::string, Location> storage_;
  std::map<std::string, std::shared_ptr<MappedFile>> files_;
  Tree* out_ = nullptr;
  std::vector<std::string>* reasons_ = nullptr;
};

inline std::shared_ptr<CheckpointData> read_dcp(const std::string& dir, const ReadOptions& opts) { return DcpReader(dir, opts).read(); }

}  // namespace statedict::detail
