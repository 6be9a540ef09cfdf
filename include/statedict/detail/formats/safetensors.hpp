#pragma once
// safetensors: u64 header length, JSON header, data buffer; validated like the reference reader.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/io/mapped_file.hpp>
#include <statedict/detail/formats/torch_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace statedict::detail {

inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

inline std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> st(shape.size(), 1);
  for (std::size_t k = shape.size(); k-- > 1;) st[k - 1] = st[k] * std::max<std::int64_t>(shape[k], 1);
  return st;
}

/// Deepest bracket nesting of a JSON text, counted without parsing (strings skipped), so that a
/// hostile header cannot make a recursive consumer overflow the stack.
inline std::size_t json_depth(const char* p, std::size_t n) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"')
      in_string = true;
    else if (c == '{' || c == '[')
      deepest = std::max(deepest, ++depth);
    else if ((c == '}' || c == ']') && depth > 0)
      --depth;
  }
  return deepest;
}

inline nlohmann::json parse_json_header(const char* p, std::size_t n, const std::string& path, const std::string& where,
                                        std::size_t max_depth) {
  if (!is_valid_utf8(reinterpret_cast<const std::uint8_t*>(p), n)) throw Error("json.utf8", path, where, "header is not valid UTF-8");
  if (json_depth(p, n) > std::min<std::size_t>(max_depth, 64))
    throw Error("limit.depth", path, where, "JSON nested deeper than " + std::to_string(std::min<std::size_t>(max_depth, 64)));
  // nlohmann keeps the last of duplicate keys silently; a duplicate name is refused instead.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  nlohmann::json::parser_callback_t cb = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start)
      open_objects.emplace_back();
    else if (ev == E::object_end && !open_objects.empty())
      open_objects.pop_back();
    else if (ev == E::key && !open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(p, p + n, cb);
  } catch (const nlohmann::json::exception& e) { throw Error("json.parse", path, where, std::string("invalid JSON: ") + e.what()); }
  if (!duplicate.empty()) throw Error("json.duplicate", path, where, "key '" + duplicate + "' appears twice");
  return j;
}

inline bool looks_like_safetensors(const MappedFile& f) {
  if (f.head_size() < 10) return false;
  const std::uint64_t n = rd64(f.head());
  return n >= 2 && n <= f.size() - 8 && f.head()[8] == '{';
}

struct SafetensorsEntry {
  std::string name;
  Dtype dtype = nullptr;
  std::vector<std::int64_t> shape;
  std::uint64_t begin, end;  // relative to the data buffer
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in header order
  std::map<std::string, std::string> metadata;
  std::uint64_t data_offset = 0;
};

/// The safetensors file that starts at byte `base` of `f` and runs to its end: a DCP `.distcp` of
/// the safetensors format holds one after its non-tensor items.
inline SafetensorsHeader parse_safetensors_header(const MappedFile& f, const ReadOptions& opts, std::uint64_t base = 0) {
  const std::string& path = f.path();
  if (base > f.size()) throw Error("safetensors.truncated", path, "offset " + std::to_string(base), "starts past the end of the file");
  const std::uint64_t size = f.size() - base;
  const std::string at0 = "offset " + std::to_string(base);
  if (size < 8)
    throw Error("safetensors.truncated", path, at0, "file of " + std::to_string(size) + " bytes is shorter than the 8-byte header length");
  // The header is read with pread, not through the mapping: a file that shrinks meanwhile gives an
  // error here, never SIGBUS.
  std::uint8_t len[8];
  read_or_throw(f, len, 8, base, "header length");
  const std::uint64_t n = rd64(len);
  if (n > safetensors_max_header)
    throw Error("safetensors.header_size", path, at0, "header length " + std::to_string(n) + " exceeds the 100,000,000-byte limit");
  if (n > size - 8)
    throw Error("safetensors.header_size", path, at0,
                "header length " + std::to_string(n) + " runs past the end of the " + std::to_string(size) + "-byte file");
  std::string text(static_cast<std::size_t>(n), '\0');
  if (n > 0) read_or_throw(f, text.data(), text.size(), base + 8, "header");
  nlohmann::json j = parse_json_header(text.data(), text.size(), path, "header", opts.max_depth());
  if (!j.is_object()) throw Error("safetensors.header", path, "header", "header is not a JSON object");
  SafetensorsHeader h;
  h.data_offset = base + 8 + n;
  const std::uint64_t buffer = size - 8 - n;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error("safetensors.metadata", path, "__metadata__", "is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw Error("safetensors.metadata", path, "__metadata__." + m.key(), "value is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& why) { return Error("safetensors.entry", path, "tensor '" + name + "'", why); };
    if (!v.is_object()) throw bad("entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw bad("missing or non-string dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) throw bad("missing or non-array shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array()) throw bad("missing data_offsets");
    SafetensorsEntry e;
    e.name = name;
    const std::string dt = v["dtype"].get<std::string>();
    e.dtype = dtype_from_safetensors(dt);
    if (e.dtype == nullptr && (dt == "F6_E2M3" || dt == "F6_E3M2"))
      throw Error("format.unsupported_dtype", path, "tensor '" + name + "'",
                  "safetensors dtype " + dt + " (6-bit floats, four in three bytes) has no PyTorch dtype to read it as");
    if (e.dtype == nullptr)
      throw Error("format.unsupported_dtype", path, "tensor '" + name + "'", "unknown safetensors dtype '" + dt.substr(0, 40) + "'");
    std::uint64_t numel = 1;
    for (const auto& s : v["shape"]) {
      if (!s.is_number_unsigned()) throw bad("shape entries must be non-negative integers");
      const std::uint64_t d = s.get<std::uint64_t>();
      if (d > static_cast<std::uint64_t>(INT64_MAX) || mul_overflows(numel, d, &numel)) throw bad("shape product overflows");
      e.shape.push_back(static_cast<std::int64_t>(d));
    }
    if (packs_two(e.dtype)) {
      // The header counts fp4 values; the tensor (float4_e2m1fn_x2) counts bytes of two, along the last dimension.
      if (e.shape.empty() || e.shape.back() % 2 != 0)
        throw bad(dt + " packs two values a byte along the last dimension, which in shape " + shape_str(e.shape) +
                  (e.shape.empty() ? " is missing" : " is odd"));
      e.shape.back() /= 2;
      numel /= 2;  // exact: the last dimension is even
    }
    const auto& off = v["data_offsets"];
    if (off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("data_offsets must be exactly two non-negative integers");
    e.begin = off[0].get<std::uint64_t>();
    e.end = off[1].get<std::uint64_t>();
    if (e.end < e.begin) throw bad("data_offsets end before they begin");
    if (e.end > buffer)
      throw bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ") run past the " + std::to_string(buffer) +
                "-byte data buffer");
    std::uint64_t bytes;
    if (mul_overflows(numel, e.dtype->size, &bytes)) throw bad("byte size overflows");
    if (bytes != e.end - e.begin)
      throw bad("holds " + std::to_string(e.end - e.begin) + " bytes, shape and dtype need " + std::to_string(bytes));
    h.entries.push_back(std::move(e));
  }
  // Sorted by offset the entries must tile the buffer exactly.
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : h.entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  std::uint64_t cursor = 0;
  for (auto* e : sorted) {
    if (e->begin != cursor)
      throw Error("safetensors.layout", path, "tensor '" + e->name + "'",
                  e->begin > cursor
                      ? "gap in the data buffer before this tensor (" + std::to_string(cursor) + " to " + std::to_string(e->begin) + ")"
                      : "overlaps the previous tensor");
    cursor = e->end;
  }
  if (cursor != buffer)
    throw Error("safetensors.layout", path, "offset " + std::to_string(h.data_offset + cursor),
                std::to_string(buffer - cursor) + " trailing bytes after the last tensor");
  if (h.entries.size() > opts.max_tensors()) throw Error("limit.tensors", path, "", "more than max_tensors tensors");
  // Tensors appear in data order, as the reference reader lists them.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  return h;
}

/// `describe`: tensors on a pread-only file are described, made when asked for (see FileTensors);
/// false makes them now (still reading no bytes), as a reader that takes them apart needs.
inline std::shared_ptr<CheckpointData> read_safetensors(const std::shared_ptr<MappedFile>& f, const ReadOptions& opts,
                                                        std::uint64_t base = 0, bool describe_tensors = true) {
  SafetensorsHeader h = parse_safetensors_header(*f, opts, base);
  auto cd = std::make_shared<CheckpointData>();
  cd->format = Format::safetensors;
  cd->path = f->path();
  cd->metadata = h.metadata;
  cd->max_depth = opts.max_depth();
  Node root;
  root.kind = Kind::dict;
  FileTensors& files = cd->handed.files;
  files.views = std::make_unique<FileViews>(f);
  const bool describe = describe_tensors && f->pread_only();  // tensors made when asked for (see FileTensors)
  if (describe) {
    files.storages.reserve(h.entries.size());
    files.tensors.reserve(h.entries.size());
  }
  for (const auto& e : h.entries) {
    Node k;
    k.kind = Kind::string;
    k.text = e.name;
    Node t;
    t.kind = Kind::tensor;
    if (!native(e.dtype)) t.raw() = e.dtype;
    const std::uint64_t offset = h.data_offset + e.begin, nbytes = e.end - e.begin;
    if (describe && nbytes > 0) {
      t.pending = files.describe(files.add_storage(offset, nbytes), e.dtype, 0, e.shape, contiguous_strides(e.shape));
    } else {
      at::Storage s = storage_from_file(*files.views, offset, nbytes, e.dtype->size, 1, opts);
      t.tensor = tensor_on(s, e.dtype, 0, e.shape, contiguous_strides(e.shape));
    }
    const auto ki = cd->tree.add(std::move(k));
    root.kv().emplace_back(ki, cd->tree.add(std::move(t)));
  }
  cd->root = cd->tree.add(std::move(root));
  return cd;
}

}  // namespace statedict::detail
