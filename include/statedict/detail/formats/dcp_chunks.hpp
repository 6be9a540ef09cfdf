#pragma once
// A tensor stored as chunks (DCP folders, Hugging Face folders written by DCP): the chunks checked
// against the global size (inside it, no overlap, no gap) and the tensor presented whole, assembled
// only when used. Also DCP_SHARDING_INFO, the safetensors metadata where DCP says which chunk of a
// tensor a file holds.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/formats/safetensors.hpp>
#include <statedict/detail/lazy.hpp>

#include <map>
#include <string>
#include <vector>

namespace statedict::detail {

struct ChunkSpec {
  std::vector<std::int64_t> offsets, sizes;
  at::Tensor data;  // the chunk as read: its sizes are `sizes` (raw dtypes: plus a last dimension of bytes)
};

inline std::string offsets_str(const std::vector<std::int64_t>& v) {
  std::string o;
  for (auto x : v) o += (o.empty() ? "" : ", ") + std::to_string(x);
  return "(" + o + ")";
}

/// Throws unless the chunks lie inside `size`, do not overlap and cover it. `file` names the place
/// the chunk list came from in errors.
inline void check_chunks(const std::string& file, const std::string& fqn, const std::vector<std::int64_t>& size,
                         const std::vector<ChunkSpec>& chunks) {
  if (size.size() > 64) throw Error("dcp.bounds", file, fqn, "more than 64 dimensions");
  std::uint64_t numel = 1;
  for (auto s : size)
    if (s < 0 || mul_overflows(numel, static_cast<std::uint64_t>(s), &numel)) throw Error("dcp.bounds", file, fqn, "global size overflows");
  if (chunks.size() > 16384) throw Error("dcp.bounds", file, fqn, "more than 16384 chunks");
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const ChunkSpec& c = chunks[i];
    const std::string where = fqn + " chunk " + std::to_string(i);
    if (c.offsets.size() != size.size() || c.sizes.size() != size.size())
      throw Error("dcp.bounds", file, where,
                  "has " + std::to_string(c.offsets.size()) + " offsets and " + std::to_string(c.sizes.size()) + " sizes for a " +
                      std::to_string(size.size()) + "-dimensional tensor");
    std::uint64_t vol = 1;
    for (std::size_t d = 0; d < size.size(); ++d) {
      if (c.offsets[d] < 0 || c.sizes[d] < 0 || c.offsets[d] > size[d] || c.sizes[d] > size[d] - c.offsets[d])
        throw Error("dcp.bounds", file, where,
                    "dimension " + std::to_string(d) + " spans [" + std::to_string(c.offsets[d]) + ", " +
                        std::to_string(c.offsets[d] + c.sizes[d]) + ") of a tensor of size " + std::to_string(size[d]));
      vol *= static_cast<std::uint64_t>(c.sizes[d]);  // bounded by numel, which did not overflow
    }
    for (std::size_t j = 0; j < i; ++j) {
      bool overlap = vol > 0;
      for (std::size_t d = 0; d < size.size() && overlap; ++d)
        overlap = c.offsets[d] < chunks[j].offsets[d] + chunks[j].sizes[d] && chunks[j].offsets[d] < c.offsets[d] + c.sizes[d];
      if (overlap) throw Error("dcp.overlap", file, where, "overlaps chunk " + std::to_string(j));
    }
    covered += vol;
  }
  if (covered != numel)
    throw Error("dcp.missing_chunk", file, fqn,
                "the chunks cover " + std::to_string(covered) + " of the tensor's " + std::to_string(numel) + " elements");
}

/// The tensor node of checked chunks: one chunk is the tensor as read; several are assembled when
/// the tensor is used, and a slice of it (a tensor-parallel rank's part) touches only the chunks it
/// overlaps.
inline Node chunked_tensor(Dtype dt, const std::string& fqn, const std::vector<std::int64_t>& size, std::vector<ChunkSpec> chunks) {
  Node n;
  n.kind = Kind::tensor;
  if (!native(dt)) n.raw() = dt;
  if (chunks.size() == 1) {
    n.tensor = chunks[0].data;
  } else if (chunks.empty()) {
    n.tensor = empty_of(dt, size);
  } else {
    auto pieces = std::make_shared<Pieces>();
    pieces->dtype = dt;
    pieces->size = size;
    pieces->key = fqn;
    for (auto& c : chunks) pieces->parts.push_back({std::move(c.offsets), std::move(c.sizes), std::move(c.data)});
    n.tensor = placeholder(dt, size);
    n.pieces() = std::move(pieces);
  }
  return n;
}

/// DCP_SHARDING_INFO of a safetensors file DCP wrote: tensor name -> offsets of the chunk the file
/// holds ({"w": {"saved_offsets": [0, 4]}}). Empty when the file has none.
inline std::map<std::string, std::vector<std::int64_t>> sharding_info(const std::map<std::string, std::string>& metadata,
                                                                      const std::string& path, std::size_t max_depth) {
  std::map<std::string, std::vector<std::int64_t>> out;
  const auto it = metadata.find("DCP_SHARDING_INFO");
  if (it == metadata.end()) return out;
  const std::string where = "__metadata__.DCP_SHARDING_INFO";
  const nlohmann::json j = parse_json_header(it->second.data(), it->second.size(), path, where, max_depth);
  if (!j.is_object()) throw Error("dcp.sharding", path, where, "is not a JSON object");
  for (auto e = j.begin(); e != j.end(); ++e) {
    const auto& v = e.value();
    if (!v.is_object() || !v.contains("saved_offsets") || !v["saved_offsets"].is_array())
      throw Error("dcp.sharding", path, where + "." + e.key(), "has no saved_offsets list");
    std::vector<std::int64_t> offs;
    for (const auto& o : v["saved_offsets"]) {
      if (!o.is_number_unsigned() || o.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
        throw Error("dcp.sharding", path, where + "." + e.key(), "saved_offsets holds a value that is not a non-negative integer");
      offs.push_back(static_cast<std::int64_t>(o.get<std::uint64_t>()));
    }
    out.emplace(e.key(), std::move(offs));
  }
  return out;
}

}  // namespace statedict::detail
