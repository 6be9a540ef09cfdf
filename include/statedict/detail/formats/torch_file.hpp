#pragma once
// torch.save files: the zip format (PyTorch >= 1.6), the legacy format, and whole pickled modules.
// The pickle is interpreted by detail::Unpickler; this header finds the storages' bytes and turns
// pending tensor specs into at::Tensors that alias the file's mapping wherever they can.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/io/file_tensor.hpp>
#include <statedict/detail/io/mapped_file.hpp>
#include <statedict/detail/formats/pickle.hpp>
#include <statedict/detail/formats/zip.hpp>

#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cstring>

namespace statedict::detail {

/// Bytes [offset, offset+nbytes) of the file as a storage. On a pread-only file: a view of the
/// mapping that nothing reads (readable() reads it with pread), unless its bytes need a byte swap.
/// With `map_tensors`: a view when no byte swap is needed and the address suits the element type.
/// Otherwise a copy, read now.
inline at::Storage storage_from_file(const FileViews& views, std::uint64_t offset, std::uint64_t nbytes, std::size_t elem_size,
                                     std::size_t swap, const ReadOptions& opts) {
  MappedFile* f = views->get();
  std::uint8_t* p = f->mutable_data() + offset;
  const bool aligned = opts.alias_misaligned() || reinterpret_cast<std::uintptr_t>(p) % std::min<std::size_t>(elem_size, 16) == 0;
  if (nbytes > 0 && swap <= 1 && (f->pread_only() || (opts.map_tensors() && aligned))) {
    return c10::Storage(c10::Storage::use_byte_size_t(), static_cast<std::size_t>(nbytes), views.view(p), nullptr, false);
  }
  c10::Storage s(c10::Storage::use_byte_size_t(), static_cast<std::size_t>(nbytes), c10::GetCPUAllocator(), false);
  if (nbytes > 0) {
    std::uint8_t* dst = storage_bytes(s);
    read_or_throw(*f, dst, static_cast<std::size_t>(nbytes), offset, "storage");  // pread, not the mapping
    if (swap > 1)
      for (std::uint64_t e = 0; e + swap <= nbytes; e += swap) std::reverse(dst + e, dst + e + swap);
  }
  return s;
}

/// Places storage `ss`, bytes [offset, offset+nbytes) of the file: described in `files` when its
/// tensors may be made later (`describe`, a pread-only file, bytes that need no swap), else made
/// now by storage_from_file.
inline void place_storage(StorageSpec& ss, FileTensors& files, bool describe, std::uint64_t offset, std::uint64_t nbytes,
                          std::size_t elem_size, std::size_t swap, const ReadOptions& opts) {
  if (describe && files.file().pread_only() && nbytes > 0 && swap <= 1)
    ss.described = files.add_storage(offset, nbytes);
  else
    ss.storage = storage_from_file(*files.views, offset, nbytes, elem_size, swap, opts);
}

/// Turns every pending tensor spec into an at::Tensor on its storage (storages already filled), or
/// into a description in `files` when the reader described its storage.
inline void materialize_tensors(PickleState& st, const std::string& path, FileTensors& files) {
  files.tensors.reserve(st.tensors.size());
  files.dims.reserve(st.dims.size());
  for (auto& nd : st.tree.nodes) {
    if (nd.kind != Kind::tensor || nd.pending == npos) continue;
    const TensorSpec& t = st.tensors[nd.pending];
    const StorageSpec* ss = &st.storages[t.storage];
    std::uint64_t offset = t.offset;
    if (!ss->view_of.empty()) {
      offset += ss->view_offset;
      const std::uint32_t base = st.storage_by_key.find(ss->view_of);
      if (base == npos)
        throw Error("format.missing_storage", path, t.where(),
                    "tensor refers to a view of storage '" + ss->view_of + "', which was never declared");
      ss = &st.storages[base];
    }
    if (!native(t.dtype)) nd.raw() = t.dtype;
    if (ss->described != npos) {
      nd.pending = files.describe(ss->described, t.dtype, static_cast<std::int64_t>(offset), st.sizes(t), st.strides(t));
      continue;
    }
    if (!ss->storage)
      throw Error("format.missing_storage", path, t.where(), "tensor refers to storage '" + ss->key + "' whose bytes are missing");
    nd.tensor = tensor_on(ss->storage, t.dtype, static_cast<std::int64_t>(offset), st.sizes(t), st.strides(t));
    nd.pending = npos;
  }
}

/// Whole pickled modules: replaces every nn.Module object by the dict model.state_dict() would return.
inline void modules_to_state_dicts(CheckpointData& cd) {
  Tree& tree = cd.tree;
  auto str_key = [&](std::uint32_t k) -> const std::string* { return tree.nodes[k].kind == Kind::string ? &tree.nodes[k].text : nullptr; };
  auto field = [&](std::uint32_t dict, const char* name) -> std::uint32_t {
    if (dict == npos || tree.nodes[dict].kind != Kind::dict) return npos;
    for (const auto& kv : tree.nodes[dict].kv())
      if (const std::string* s = str_key(kv.first); s && *s == name) return kv.second;
    return npos;
  };
  auto is_module = [&](std::uint32_t id) {
    const Node& nd = tree.nodes[id];
    return nd.kind == Kind::object && nd.internal == Internal::value && field(nd.state(), "_parameters") != npos &&
           field(nd.state(), "_modules") != npos;
  };
  std::vector<std::pair<std::uint32_t, std::vector<std::pair<std::string, std::uint32_t>>>> converted;
  for (std::uint32_t id = 0; id < tree.nodes.size(); ++id) {
    if (!is_module(id)) continue;
    std::vector<std::pair<std::string, std::uint32_t>> entries;
    std::vector<std::pair<std::uint32_t, std::string>> todo{{id, ""}};
    std::size_t visited = 0;
    while (!todo.empty()) {
      auto [m, prefix] = todo.back();
      todo.pop_back();
      if (++visited > tree.nodes.size() || prefix.size() > 100000)
        throw Error("format.bad_module", cd.path, prefix, "module tree is cyclic or too deep");
      const std::uint32_t state = tree.nodes[m].state();
      std::uint32_t nonpersistent = field(state, "_non_persistent_buffers_set");
      auto skip = [&](const std::string& name) {
        if (nonpersistent == npos) return false;
        for (auto e : tree.nodes[nonpersistent].items)
          if (const std::string* s = str_key(e); s && *s == name) return true;
        return false;
      };
      for (const char* group : {"_parameters", "_buffers"}) {
        std::uint32_t g = field(state, group);
        if (g == npos) continue;
        for (const auto& kv : tree.nodes[g].kv()) {
          const std::string* name = str_key(kv.first);
          if (!name || tree.nodes[kv.second].kind != Kind::tensor) continue;
          if (group[1] == 'b' && skip(*name)) continue;
          entries.emplace_back(prefix + *name, kv.second);
        }
      }
      std::uint32_t children = field(state, "_modules");
      if (children == npos) continue;
      const auto& kvs = tree.nodes[children].kv();
      for (auto it = kvs.rbegin(); it != kvs.rend(); ++it) {  // stack: push in reverse for file order
        const std::string* name = str_key(it->first);
        if (name && is_module(it->second)) todo.emplace_back(it->second, prefix + *name + ".");
      }
    }
    converted.emplace_back(id, std::move(entries));
  }
  for (auto& [id, entries] : converted) {
    Node dict;
    dict.kind = Kind::dict;
    for (auto& [name, tensor] : entries) {
      Node k;
      k.kind = Kind::string;
      k.text = name;
      dict.kv().emplace_back(tree.add(std::move(k)), tensor);
    }
    dict.text = tree.nodes[id].text;
    if (id == cd.root) cd.module_class = dict.text;
    tree.nodes[id] = std::move(dict);
  }
}

inline std::shared_ptr<CheckpointData> finish(PickleState& st, FileTensors files, std::uint32_t root, Format format,
                                              const std::string& path, const ReadOptions& opts) {
  materialize_tensors(st, path, files);
  auto cd = std::make_shared<CheckpointData>();
  cd->handed.files = std::move(files);
  cd->tree = std::move(st.tree);
  cd->root = root;
  cd->format = format;
  cd->path = path;
  cd->max_depth = opts.max_depth();
  cd->reasons = std::move(st.reasons);
  modules_to_state_dicts(*cd);
  return cd;
}

inline std::string record_text(const ZipArchive& z, const ZipEntry& e, std::size_t max) {
  if (e.size > max)
    throw Error("format.bad_record", z.path(), e.name, "record is " + std::to_string(e.size) + " bytes, expected a short text");
  return z.read(e);
}

/// `describe`: tensors on a pread-only file may be described rather than made (see FileTensors);
/// false for a caller that takes the tensors out of the tree itself (DCP's records).
inline std::shared_ptr<CheckpointData> read_torch_zip(const ZipArchive& z, const ReadOptions& opts, bool describe = true) {
  const std::shared_ptr<MappedFile>& f = z.file();
  const std::string& path = f->path();
  const ZipEntry* pkl = z.find("data.pkl");
  if (z.find("constants.pkl") != nullptr)
    throw Error("format.torchscript", path, "",
                "this is a TorchScript archive (torch.jit.save); read it with statedict::read, not the pickle reader");
  if (pkl == nullptr) throw Error("format.missing_record", path, z.top() + "/data.pkl", "archive has no data.pkl: not a torch.save file");
  // version: PyTorch writes 1-3 so far; refuse what no PyTorch wrote rather than guess.
  const ZipEntry* ver = z.find("version");
  if (ver == nullptr) ver = z.find(".data/version");
  if (ver != nullptr) {
    std::string v = record_text(z, *ver, 32);
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ')) v.pop_back();
    const bool digits = !v.empty() && v.size() <= 3 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::stoi(v) < 1 || std::stoi(v) > 20)
      throw Error("format.version", path, ver->name, "unsupported serialization version '" + v.substr(0, 20) + "'");
  }
  bool big_endian = false;
  if (const ZipEntry* bo = z.find("byteorder")) {
    const std::string v = record_text(z, *bo, 16);
    if (v == "big")
      big_endian = true;
    else if (v != "little")
      throw Error("format.byteorder", path, bo->name, "byteorder is '" + v + "', expected 'little' or 'big'");
  }
  PickleState st;
  {  // one storage per data/ record: room for them up front (growing a vector of 100k specs briefly held two)
    std::size_t records = 0;
    for (const ZipEntry& e : z.entries())
      records += std::string_view(e.name).substr(std::min(e.name.size(), z.top().size() + 1)).compare(0, 5, "data/") == 0;
    st.storages.reserve(records);
    st.tensors.reserve(records);
    st.dims.reserve(2 * records);
  }
  if (pkl->size > opts.max_pickle_bytes())
    throw Error("limit.pickle_size", path, pkl->name,
                "pickle is " + std::to_string(pkl->size) + " bytes, over max_pickle_bytes (" + std::to_string(opts.max_pickle_bytes()) +
                    ")");
  const std::string pickle = z.read(*pkl);
  Unpickler up(st, opts, path, pkl->name, reinterpret_cast<const std::uint8_t*>(pickle.data()), pickle.size(), pkl->offset, false);
  const std::uint32_t root = up.run();
  FileTensors files;
  files.views = std::make_unique<FileViews>(f);
  files.storages.reserve(st.storages.size());
  std::string name;  // each record's name built in one buffer, not a new string a storage
  for (auto& ss : st.storages) {
    if (!ss.view_of.empty()) continue;
    const ZipEntry* rec = z.find(name.assign("data/").append(ss.key));
    if (rec == nullptr) throw Error("format.missing_record", path, z.top() + "/data/" + ss.key, "storage record is missing");
    const std::size_t es = ss.untyped ? 1 : ss.dtype->size;
    const std::uint64_t want = ss.numel * es;  // overflow already refused by the unpickler
    if (rec->size != want)
      throw Error("format.storage_size", path, rec->name,
                  "record has " + std::to_string(rec->size) + " bytes, the storage needs " + std::to_string(want) + " (" +
                      std::to_string(ss.numel) + " x " + std::to_string(es) + ")");
    z.payload(*rec);  // refuses a compressed record
    place_storage(ss, files, describe, rec->offset, rec->size, es, ss.untyped ? 1 : swap_unit(ss.dtype, big_endian), opts);
  }
  // Untyped storages carry their dtype on the tensor; byte-swapping them is done per tensor dtype.
  if (big_endian)
    for (const auto& t : st.tensors)
      if (st.storages[t.storage].untyped && t.dtype->size > 1)
        throw Error("format.byteorder", path, t.where(), "big-endian untyped storages are not supported");
  return finish(st, std::move(files), root, Format::torch_zip, path, opts);
}

inline std::shared_ptr<CheckpointData> read_torch_zip(const std::shared_ptr<MappedFile>& f, const ReadOptions& opts) {
  return read_torch_zip(ZipArchive(f), opts);
}

/// The legacy format starts with the pickled magic number 0x1950a86a20f9469cfc6c: LONG1 after PROTO
/// (and a FRAME from protocol 4 on), or the text LONG of protocol 1.
inline bool looks_like_legacy(const MappedFile& f) {
  static const std::uint8_t long1[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  static const char text[] = "L119547037146038801333356L\n";
  const std::uint8_t* h = f.head();
  const std::size_t n = f.head_size();
  if (n >= sizeof text - 1 && std::memcmp(h, text, sizeof text - 1) == 0) return true;
  if (n < 2 || h[0] != 0x80 || h[1] < 2 || h[1] > 5) return false;
  std::size_t at = 2;
  if (n > at && h[at] == 0x95) at += 9;  // FRAME
  return n >= at + sizeof long1 && std::memcmp(h + at, long1, sizeof long1) == 0;
}

/// Reads a legacy file whose five pickles fit in its first `window` bytes (read with pread, never
/// through the mapping); throws pickle.truncated when they do not.
inline std::shared_ptr<CheckpointData> read_legacy_window(const std::shared_ptr<MappedFile>& f, const ReadOptions& opts,
                                                          std::size_t window) {
  const std::string& path = f->path();
  const std::size_t n = f->size();
  std::string head(window, '\0');
  read_or_throw(*f, head.data(), window, 0, "pickles");
  const auto* d = reinterpret_cast<const std::uint8_t*>(head.data());
  PickleState st;
  std::size_t pos = 0;
  const char* names[] = {"magic number", "protocol version", "sys_info", "data", "storage keys"};
  std::uint32_t values[5];
  for (int k = 0; k < 5; ++k) {
    if (window < n && window - pos < 2) throw Error("pickle.truncated", path, "offset " + std::to_string(pos), "past the window read");
    Unpickler up(st, opts, path, std::string("pickle ") + std::to_string(k + 1) + " (" + names[k] + ")", d + pos, window - pos, pos,
                 k == 3);
    up.allow_protocol_1(d[0] != 0x80);
    values[k] = up.run();
    pos += up.consumed();
  }
  const Node& magic = st.tree.nodes[values[0]];
  if (magic.kind != Kind::integer || !magic.big || magic.text != "0x1950a86a20f9469cfc6c")
    throw Error("legacy.magic", path, "offset 0", "wrong magic number: not a legacy torch.save file");
  const Node& proto = st.tree.nodes[values[1]];
  if (proto.kind != Kind::integer || proto.integer != 1001)
    throw Error("legacy.protocol", path, "pickle 2",
                "legacy protocol version is " + (proto.kind == Kind::integer ? std::to_string(proto.integer) : std::string("not an int")) +
                    ", expected 1001");
  bool big_endian = false;
  const Node& sys = st.tree.nodes[values[2]];
  for (const auto& kv : sys.kv())
    if (st.tree.nodes[kv.first].text == "little_endian" && st.tree.nodes[kv.second].kind == Kind::boolean)
      big_endian = !st.tree.nodes[kv.second].boolean;
  const Node& keys = st.tree.nodes[values[4]];
  if (keys.kind != Kind::list) throw Error("legacy.keys", path, "pickle 5", "storage key list is not a list");
  std::vector<char> seen(st.storages.size(), 0);
  FileTensors files;
  files.views = std::make_unique<FileViews>(f);
  for (std::size_t i = 0; i < keys.items.size(); ++i) {
    const Node& k = st.tree.nodes[keys.items[i]];
    const std::uint32_t index = k.kind == Kind::string ? st.storage_by_key.find(k.text) : npos;
    if (index == npos || !st.storages[index].view_of.empty())
      throw Error("legacy.keys", path, "storage list item " + std::to_string(i), "names a storage the data pickle never declared");
    if (seen[index]++) throw Error("legacy.keys", path, "storage list item " + std::to_string(i), "storage '" + k.text + "' listed twice");
    StorageSpec& ss = st.storages[index];
    const std::string where = "storage '" + ss.key + "' at offset " + std::to_string(pos);
    if (n - pos < 8) throw Error("legacy.truncated", path, where, "file ends before the storage's element count");
    std::uint8_t count_bytes[8];
    if (pos + 8 <= window)
      std::memcpy(count_bytes, d + pos, 8);
    else
      read_or_throw(*f, count_bytes, 8, pos, where);
    const std::uint64_t count = rd64(count_bytes);
    if (count != ss.numel)
      throw Error("legacy.count", path, where,
                  "element count " + std::to_string(count) + " differs from the declared " + std::to_string(ss.numel));
    pos += 8;
    const std::size_t es = ss.dtype->size;
    const std::uint64_t bytes = ss.numel * es;
    if (bytes > n - pos)
      throw Error("legacy.truncated", path, where,
                  "storage needs " + std::to_string(bytes) + " bytes, " + std::to_string(n - pos) + " left");
    place_storage(ss, files, true, pos, bytes, es, swap_unit(ss.dtype, big_endian), opts);
    pos += static_cast<std::size_t>(bytes);
  }
  for (std::size_t i = 0; i < st.storages.size(); ++i)
    if (!seen[i] && st.storages[i].view_of.empty())
      throw Error("legacy.keys", path, "storage '" + st.storages[i].key + "'", "storage is declared but its bytes are not in the file");
  return finish(st, std::move(files), values[3], Format::torch_legacy, path, opts);
}

/// The legacy format (PyTorch < 1.6): five pickles, then each storage's element count and bytes.
/// The pickles' length is known only once they are parsed: they are parsed from a window of the
/// file's start that grows (x4, from `first_window` bytes) until they fit, up to the pickle limit.
inline std::shared_ptr<CheckpointData> read_legacy(const std::shared_ptr<MappedFile>& f, const ReadOptions& opts,
                                                   std::size_t first_window = std::size_t{1} << 20) {
  std::uint64_t limit = 0;
  if (add_overflows(opts.max_pickle_bytes(), std::uint64_t{1} << 20, &limit)) limit = UINT64_MAX;  // "no limit"
  const std::size_t cap = static_cast<std::size_t>(std::min<std::uint64_t>(f->size(), limit));
  std::size_t window = std::min(cap, std::max<std::size_t>(first_window, 64));
  while (true) {
    try {
      return read_legacy_window(f, opts, window);
    } catch (const Error& e) {
      if (e.id() != "pickle.truncated" || window >= cap) throw;
      window = window > cap / 4 ? cap : window * 4;
    }
  }
}

}  // namespace statedict::detail
