#pragma once
// torch.distributed.checkpoint (DCP) folders: `.metadata` (a pickled Metadata dataclass: per key a
// TensorStorageMetadata with the global size and its chunks, or a BytesStorageMetadata; storage_data
// mapping each chunk to a file, offset and length) and `__R_N.distcp` files in which every chunk is a
// small torch.save zip, possibly stream-transformed (zstd), or in which the tensor chunks are one
// safetensors file (see dcp_items.hpp). Each tensor is presented whole, its chunks checked and
// assembled.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/formats/dcp_chunks.hpp>
#include <statedict/detail/formats/dcp_items.hpp>
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
    std::vector<Transform> transforms;
    bool tensor = false;  // a tensor chunk (its index has offsets), not a bytes item
  };
  /// What a `.distcp` of the safetensors format holds after its non-tensor items.
  struct SafetensorsPart {
    std::shared_ptr<CheckpointData> data;
    std::map<std::string, std::uint32_t> by_name;  // tensor name -> its node in data
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

  /// storage_data: MetadataIndex(fqn, offset, index) -> _StorageInfo(relative_path, offset, length
  /// [, transform_descriptors]).
  void index_storage(std::uint32_t storage) {
    for (const auto& [k, v] : node(storage).kv()) {
      const std::string fqn = text(field(k, "fqn", Kind::string), "MetadataIndex.fqn");
      const std::uint32_t off = field(k, "offset", Kind::none);
      const bool tensor = off != npos && node(off).kind != Kind::none;
      const std::vector<std::int64_t> offsets = tensor ? ints(off, fqn + " offset") : std::vector<std::int64_t>{};
      Location loc;
      loc.tensor = tensor;
      loc.file = text(field(v, "relative_path", Kind::string), "_StorageInfo.relative_path");
      const Node& o = node(field(v, "offset", Kind::integer));
      const Node& l = node(field(v, "length", Kind::integer));
      if (o.big || l.big || o.integer < 0 || l.integer < 0) bad_meta(fqn, "storage offset or length is negative or huge");
      loc.offset = static_cast<std::uint64_t>(o.integer);
      loc.length = static_cast<std::uint64_t>(l.integer);
      if (loc.file.empty() || loc.file.find('/') != std::string::npos || loc.file.find('\\') != std::string::npos || loc.file == "." ||
          loc.file == "..")
        throw Error("dcp.file", meta_path_, fqn, "storage file '" + loc.file + "' is not a plain file name in the checkpoint folder");
      const std::uint32_t td = field(v, "transform_descriptors", Kind::none);  // absent when there are none
      if (td != npos && node(td).kind != Kind::none) {
        if (node(td).kind != Kind::list && node(td).kind != Kind::tuple) bad_meta(fqn, "transform_descriptors is not a list");
        if (node(td).items.size() > 16) bad_meta(fqn, "more than 16 stream transforms");
        for (auto d : node(td).items) loc.transforms.push_back(transform_of(text(d, "a transform descriptor"), meta_path_, fqn));
      }
      if (!storage_.emplace(key_of(fqn, offsets), loc).second) bad_meta(fqn, "the same chunk is stored twice");
    }
  }

  const std::shared_ptr<MappedFile>& open(const std::string& name) {
    auto it = files_.find(name);
    if (it == files_.end()) it = files_.emplace(name, MappedFile::open((std::filesystem::path(dir_) / name).string(), opts_)).first;
    return it->second;
  }

  const Location& location(const std::string& fqn, const std::vector<std::int64_t>& offsets) const {
    auto it = storage_.find(key_of(fqn, offsets));
    if (it == storage_.end())
      throw Error("dcp.missing_chunk", dir_, fqn, "the metadata names no stored data for the chunk at offsets " + offsets_str(offsets));
    return it->second;
  }

  /// The small torch.save zip of one chunk or bytes item, its transforms undone. `cap` bounds what
  /// a transformed item may decode to.
  std::shared_ptr<CheckpointData> read_record(const std::string& fqn, const Location& loc, std::uint64_t cap) {
    const auto& f = open(loc.file);
    std::uint64_t end;
    if (add_overflows(loc.offset, loc.length, &end) || end > f->size())
      throw Error("dcp.file", f->path(), fqn,
                  "chunk [" + std::to_string(loc.offset) + ", +" + std::to_string(loc.length) + ") lies past the end of the " +
                      std::to_string(f->size()) + "-byte file");
    if (loc.transforms.empty())
      return read_torch_zip(ZipArchive(f, loc.offset, loc.length), opts_, /*describe=*/false);  // its nodes are taken as they are
    auto decoded = decode_item(*f, loc.offset, loc.length, loc.transforms, cap, "item '" + fqn + "'", opts_);
    return read_torch_zip(ZipArchive(decoded, 0, decoded->size()), opts_, /*describe=*/false);
  }

  /// A `.distcp` whose tensors are a safetensors file after its other items: found once, checked
  /// against the metadata (every tensor it holds is a chunk the metadata puts in this file, at the
  /// offsets DCP_SHARDING_INFO gives). nullptr for a file of torch.save records.
  const SafetensorsPart* safetensors_part(const std::string& name) {
    auto it = parts_.find(name);
    if (it != parts_.end()) return it->second.data ? &it->second : nullptr;
    SafetensorsPart& part = parts_[name];
    const auto& f = open(name);
    // The writer's position at the tensors, where their bytes would be, and how many bytes they are.
    std::uint64_t from = 0, all_end = 0, tensor_bytes = 0;
    bool tensors = false;
    for (const auto& [k, loc] : storage_) {
      if (loc.file != name) continue;
      std::uint64_t end = 0;
      if (add_overflows(loc.offset, loc.length, &end)) end = UINT64_MAX;
      all_end = std::max(all_end, end);
      from = std::max(from, loc.tensor ? loc.offset : end);
      if (loc.tensor && add_overflows(tensor_bytes, loc.length, &tensor_bytes)) tensor_bytes = UINT64_MAX;
      tensors = tensors || loc.tensor;
    }
    // Records of torch.save end the file; a safetensors file after them makes it longer.
    if (!tensors || all_end >= f->size()) return nullptr;
    const std::uint64_t at = find_safetensors_part(*f, from, tensor_bytes);
    if (at == UINT64_MAX)
      throw Error("dcp.file", f->path(), "offset " + std::to_string(from),
                  "the file runs " + std::to_string(f->size() - all_end) +
                      " bytes past its last item, and no safetensors file holding its " + std::to_string(tensor_bytes) +
                      " bytes of tensors starts there");
    part.data = read_safetensors(f, opts_, at, /*describe_tensors=*/false);
    const auto offsets = sharding_info(part.data->metadata, f->path(), opts_.max_depth());
    for (const auto& [k, v] : part.data->tree.nodes[part.data->root].kv()) {
      const std::string& tname = part.data->tree.nodes[k].text;
      part.by_name[tname] = v;
      const auto o = offsets.find(tname);
      if (o == offsets.end())
        throw Error("dcp.sharding", f->path(), "tensor '" + tname + "'", "DCP_SHARDING_INFO does not give the offsets of this chunk");
      const auto s = storage_.find(key_of(tname, o->second));
      if (s == storage_.end() || s->second.file != name)
        throw Error("dcp.sharding", f->path(), "tensor '" + tname + "'",
                    "DCP_SHARDING_INFO puts this chunk at offsets " + offsets_str(o->second) +
                        ", where the .metadata stores no chunk of it in this file");
    }
    for (const auto& [tname, o] : offsets)
      if (part.by_name.count(tname) == 0)
        throw Error("dcp.sharding", f->path(), "__metadata__.DCP_SHARDING_INFO." + tname, "names a tensor the file does not hold");
    return &part;
  }

  /// The chunk's tensor as stored (sizes as stored; raw dtypes with a last dimension of bytes).
  at::Tensor read_chunk(const std::string& fqn, const std::string& where, const ChunkSpec& c, Dtype dt) {
    const Location& loc = location(fqn, c.offsets);
    if (const SafetensorsPart* part = safetensors_part(loc.file)) {
      const auto it = part->by_name.find(fqn);
      if (it == part->by_name.end())
        throw Error("dcp.sharding", open(loc.file)->path(), where,
                    "the .metadata stores this chunk in this file, whose safetensors part has no tensor '" + fqn + "'");
      const Node& t = part->data->tree.nodes[it->second];
      const std::uint64_t nbytes = static_cast<std::uint64_t>(t.tensor.numel()) * static_cast<std::uint64_t>(t.tensor.element_size());
      if (nbytes != loc.length)
        throw Error("dcp.chunk", open(loc.file)->path(), where,
                    "holds " + std::to_string(nbytes) + " bytes, the .metadata says " + std::to_string(loc.length));
      return checked_chunk(t, where, c, dt);
    }
    std::uint64_t cap = dt->size;
    for (auto s : c.sizes) cap *= static_cast<std::uint64_t>(s);  // bounded by the global numel, checked
    // A torch.save zip of the chunk: its bytes plus a few small records and their alignment.
    auto cd = read_record(fqn, loc, cap + (1u << 20));
    return checked_chunk(cd->tree.nodes[cd->root], where, c, dt);
  }

  at::Tensor checked_chunk(const Node& t, const std::string& where, const ChunkSpec& c, Dtype dt) const {
    const Dtype got = t.kind != Kind::tensor ? nullptr : t.raw() != nullptr ? t.raw() : find_dtype(t.tensor.scalar_type());
    if (got != dt) throw Error("dcp.chunk", dir_, where, "stored data is not a " + std::string(dt->torch) + " tensor");
    std::vector<std::int64_t> shape = t.tensor.sizes().vec();
    if (t.raw() != nullptr) shape.pop_back();
    if (shape != c.sizes)
      throw Error("dcp.chunk", dir_, where, "stored tensor has shape " + shape_str(shape) + ", the metadata says " + shape_str(c.sizes));
    return t.tensor;
  }

  std::uint32_t read_bytes(const std::string& fqn) {
    auto cd = read_record(fqn, location(fqn, {}), opts_.max_pickle_bytes());
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
    const auto& items = node(field(meta, "chunks", Kind::list)).items;
    if (items.size() > 16384) throw Error("dcp.bounds", dir_, fqn, "more than 16384 chunks");
    std::vector<ChunkSpec> list;
    for (auto item : items)
      list.push_back({ints(field(item, "offsets", Kind::tuple), fqn + " chunk offsets"),
                      ints(field(item, "sizes", Kind::tuple), fqn + " chunk sizes"),
                      {}});
    check_chunks(dir_, fqn, size, list);
    // Every chunk's record is parsed and checked against the metadata here; its bytes stay in the
    // file (or, decoded, in memory) until the tensor is used.
    for (std::size_t i = 0; i < list.size(); ++i) list[i].data = read_chunk(fqn, fqn + " chunk " + std::to_string(i), list[i], dt);
    return out_->add(chunked_tensor(dt, fqn, size, std::move(list)));
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
  std::map<std::string, SafetensorsPart> parts_;
  Tree* out_ = nullptr;
  std::vector<std::string>* reasons_ = nullptr;
};

inline std::shared_ptr<CheckpointData> read_dcp(const std::string& dir, const ReadOptions& opts) { return DcpReader(dir, opts).read(); }

}  // namespace statedict::detail
