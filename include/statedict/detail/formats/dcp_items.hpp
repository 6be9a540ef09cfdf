#pragma once
// Where a DCP item's bytes are and how to get them back as written.
//
// Stream transforms (FileSystemWriter(_extensions=[...])): the metadata lists, per item, descriptors
// such as "stream.zstd/1" that the reader undoes in the order listed, as torch's reader does. The
// decoded bytes go to an in-memory file, so the zip reader takes them as it takes the file itself.
//
// The safetensors serialization format (FileSystemWriter(serialization_format=SAFETENSORS)): a
// `.distcp` is its non-tensor items (torch.save'd, possibly transformed) followed by one safetensors
// file holding the tensor chunks, whose DCP_SHARDING_INFO gives each chunk's offsets. The metadata's
// offset of a tensor item there is where the writer stood, not where the bytes are.
#include <statedict/detail/io/mapped_file.hpp>
#include <statedict/detail/io/zstd.hpp>

#include <string>
#include <vector>

namespace statedict::detail {

enum class Transform { zstd };

/// One descriptor, "name[/version]". torch 2.14 registers one transform: stream.zstd, version 1.
inline Transform transform_of(const std::string& descriptor, const std::string& meta_path, const std::string& where) {
  const auto slash = descriptor.find('/');
  const std::string name = descriptor.substr(0, slash);
  const std::string version = slash == std::string::npos ? "" : descriptor.substr(slash + 1);
  const std::string major = version.substr(0, version.find('.'));
  const std::string shown = descriptor.size() > 80 ? descriptor.substr(0, 80) + "..." : descriptor;
  if (name != "stream.zstd")
    throw Error("dcp.transform", meta_path, where, "unknown stream transform '" + shown + "' (statedict undoes stream.zstd/1)");
  if (major != "1") throw Error("dcp.transform", meta_path, where, "stream transform '" + shown + "' has a version other than 1");
  return Transform::zstd;
}

/// The most a zstd stream of n bytes can inflate to: a block decodes to at most 128 KiB and takes
/// at least 4 bytes (an RLE block). Claims past this are impossible whatever the metadata says.
inline std::uint64_t zstd_ceiling(std::uint64_t n) {
  std::uint64_t c;
  return mul_overflows(n, 32768, &c) ? UINT64_MAX : c;
}

/// Undoes `transforms` (in order) on bytes [offset, offset+length) of `f`: the decoded bytes as an
/// in-memory file, at most `cap` of them. `item` names the item in errors.
inline std::shared_ptr<MappedFile> decode_item(const MappedFile& f, std::uint64_t offset, std::uint64_t length,
                                               const std::vector<Transform>& transforms, std::uint64_t cap, const std::string& item,
                                               const ReadOptions& opts) {
  std::string stored(static_cast<std::size_t>(length), '\0');
  if (length > 0) read_or_throw(f, stored.data(), stored.size(), offset, item);
  const std::string where = item + ", stored at byte " + std::to_string(offset);
  std::shared_ptr<MappedFile> cur;
  const std::uint8_t* src = reinterpret_cast<const std::uint8_t*>(stored.data());
  std::size_t n = stored.size();
  for (std::size_t k = 0; k < transforms.size(); ++k) {
    const bool last = k + 1 == transforms.size();
    const std::string label = f.path() + " [" + item + ", decoded]";
    // Every stage is bounded: the last by what the metadata says the item holds, the others by what
    // zstd can inflate to (a stage that feeds another zstd stage may be that big).
    const std::uint64_t bound = std::min<std::uint64_t>(last ? cap : zstd_ceiling(cap), zstd_ceiling(n));
    if (bound > SIZE_MAX / 2) throw Error("zstd.too_large", f.path(), where, "the item would decode past what this machine can address");
    cur = MappedFile::in_memory(label, static_cast<std::size_t>(bound), !opts.map_tensors(),
                                [&](std::uint8_t* p) { return zstd_decode(src, n, p, static_cast<std::size_t>(bound), f.path(), where); });
    src = cur->data();
    n = cur->size();
  }
  return cur;
}

/// Where the safetensors file of a `.distcp` in the safetensors format starts: at or after `from`
/// (the writer's position when it reached the tensors; a transform may have written a few bytes per
/// tensor there), such that its header length and its `data_bytes` of tensors end the file exactly.
/// npos when no such place is within 64 KiB of `from`.
inline std::uint64_t find_safetensors_part(const MappedFile& f, std::uint64_t from, std::uint64_t data_bytes) {
  if (from >= f.size()) return UINT64_MAX;
  const std::size_t window = static_cast<std::size_t>(std::min<std::uint64_t>(f.size() - from, 65536 + 9));
  std::string buf(window, '\0');
  read_or_throw(f, buf.data(), buf.size(), from, "safetensors header");
  const auto* p = reinterpret_cast<const std::uint8_t*>(buf.data());
  for (std::size_t i = 0; i + 9 <= window; ++i) {
    const std::uint64_t s = from + i, n = rd64(p + i);
    std::uint64_t end;
    if (p[i + 8] == '{' && !add_overflows(s + 8, n, &end) && !add_overflows(end, data_bytes, &end) && end == f.size()) return s;
  }
  return UINT64_MAX;
}

}  // namespace statedict::detail
