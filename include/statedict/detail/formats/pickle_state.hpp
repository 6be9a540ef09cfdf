#pragma once
// What the unpickler produces (storage and tensor specs, the tree) and the walk it makes before
// running a pickle (memo_reads). No opcode is interpreted here.
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/io/mapped_file.hpp>
#include <statedict/detail/tree.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace statedict::detail {

/// Node::integer of a str read from a Python 2 pickle (BINSTRING): its bytes were valid UTF-8 and
/// are the text, or they were not and the text is their Latin-1 reading.
inline constexpr std::int64_t binstring_verbatim = 1, binstring_latin1 = 2;

struct StorageSpec {
  std::string key;
  Dtype dtype = dtype_uint8();
  std::uint64_t numel = 0;  // elements of dtype (bytes when untyped)
  bool untyped = false;
  std::uint64_t declared_at = 0;  // file offset of the opcode that declared it
  // Legacy view storages: a window of another storage.
  std::string view_of;
  std::uint64_t view_offset = 0;
  at::Storage storage;             // filled by the format reader, unless it describes the storage instead:
  std::uint32_t described = npos;  // its index in FileTensors::storages
};

/// A tensor waiting for its storage.
struct TensorSpec {
  std::uint32_t storage = npos;  // index into storages
  std::uint64_t offset = 0;      // elements
  std::uint64_t dims_at = 0;     // its sizes, then its strides, in PickleState::dims (no two allocations a tensor)
  std::uint32_t dim = 0;
  Dtype dtype = dtype_float32();
  bool requires_grad = false;
  std::uint64_t at = 0;  // file offset of the opcode that made it
  std::string where() const { return "offset " + std::to_string(at); }
};

/// Storage indices by key. torch.save names its storages "0", "1", ... in order: those are kept in
/// a vector (a hash map of 100k strings cost a tenth of the read of 100k small tensors); any other
/// key (legacy files' addresses, a far-off number) in a hash map.
class StorageKeys {
public:
  /// The index stored for `key`, or npos.
  std::uint32_t find(const std::string& key) const {
    const std::uint64_t n = number(key);
    if (n < dense_.size() && dense_[n] != npos) return dense_[n];
    const auto it = other_.find(key);
    return it == other_.end() ? npos : it->second;
  }
  /// Stores `index` for a key find() does not know yet.
  void add(const std::string& key, std::uint32_t index) {
    const std::uint64_t n = number(key);
    // The vector grows only as far as twice the keys it holds (plus a little): keys a hostile file
    // spreads out (65535, 131070, ...) go to the map instead of making gigabytes of vector.
    if (n < 2 * dense_count_ + 1024) {
      if (n >= dense_.size()) dense_.resize(static_cast<std::size_t>(n) + 1, npos);
      dense_[n] = index;
      ++dense_count_;
    } else {
      other_.emplace(key, index);
    }
  }

private:
  /// The key as a decimal number without leading zeros, below 2^32; else UINT64_MAX.
  static std::uint64_t number(const std::string& key) {
    if (key.empty() || key.size() > 9 || (key[0] == '0' && key.size() > 1)) return UINT64_MAX;
    std::uint64_t n = 0;
    for (char c : key) {
      if (c < '0' || c > '9') return UINT64_MAX;
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
  }
  std::vector<std::uint32_t> dense_;
  std::uint64_t dense_count_ = 0;
  std::unordered_map<std::string, std::uint32_t> other_;
};

/// Everything the pickles of one file produce.
struct PickleState {
  Tree tree;
  std::vector<StorageSpec> storages;
  std::vector<TensorSpec> tensors;
  std::vector<std::int64_t> dims;  // the tensors' sizes and strides
  StorageKeys storage_by_key;
  at::IntArrayRef sizes(const TensorSpec& t) const { return {dims.data() + t.dims_at, t.dim}; }
  at::IntArrayRef strides(const TensorSpec& t) const { return {dims.data() + t.dims_at + t.dim, t.dim}; }
  std::vector<std::string> reasons;  // why each Internal::unreadable node could not be read
};

inline bool is_valid_utf8(const std::uint8_t* p, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t c = p[i];
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07u;
    } else
      return false;
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

/// What memo_reads() finds: one bit an index for the indices picklers use (0, 1, 2, ...), a
/// sorted list for far-off ones only a hand-made pickle has (the bits stay within twice the
/// pickle's bytes read so far, so a hostile index cannot make them huge).
struct MemoReads {
  std::vector<bool> near;
  std::vector<std::uint32_t> far;  // sorted, each once
  void add(std::uint32_t i, std::size_t at) {
    if (i < near.size()) {
      near[i] = true;
    } else if (std::uint64_t{i} < 2 * std::uint64_t{at} + 4096) {
      near.resize(std::max<std::size_t>(std::size_t{i} + 1, near.size() * 2), false);
      near[i] = true;
    } else {
      far.push_back(i);
    }
  }
  // Both places: `near` may have grown past an index that went to `far` when it was too far off.
  bool has(std::uint32_t i) const { return (i < near.size() && near[i]) || std::binary_search(far.begin(), far.end(), i); }
};

/// The memo indices a pickle reads back (BINGET, LONG_BINGET), found by walking its
/// opcodes to STOP without running them; nullopt when the walk meets an opcode it does not know
/// or runs off the end (the Unpickler then fails there itself, or keeps every node). Only an
/// object read back from the memo (or DUP'd) can be referred to twice: any other value is owned by
/// the one opcode that consumed it, which is what lets the Unpickler give back the nodes of a
/// tensor rebuild's arguments once the tensor is made.
inline std::optional<MemoReads> memo_reads(const std::uint8_t* d, std::size_t n) {
  // What follows each opcode the Unpickler knows: nothing, a fixed number of bytes (1 to 8), a
  // length of 1, 4 or 8 bytes and that many bytes, or one or two lines (unknown: an opcode it does not know).
  enum Form : std::uint8_t { unknown, none, fixed1, fixed2, fixed4, fixed8, len1, len4, len8, line1, line2 };
  static const auto forms = [] {
    std::array<std::uint8_t, 256> f{};
    auto set = [&](const char* ops, Form form) {
      for (const char* o = ops; *o != '\0'; ++o) f[static_cast<std::uint8_t>(*o)] = form;
    };
    set("()012Nbt]lae}dsuRQ\x88\x89\x85\x86\x87\x8f\x90\x91\x81\x92\x93\x94", none);
    set("\x80Kqh", fixed1);     // PROTO, BININT1, BINPUT, BINGET
    set("M", fixed2);           // BININT2
    set("Jrj", fixed4);         // BININT, LONG_BINPUT, LONG_BINGET
    set("G\x95", fixed8);       // BINFLOAT, FRAME
    set("UC\x8a\x8c", len1);    // SHORT_BINSTRING, SHORT_BINBYTES, LONG1, SHORT_BINUNICODE
    set("\x8bTXB", len4);       // LONG4, BINSTRING, BINUNICODE, BINBYTES
    set("\x8d\x8e\x96", len8);  // BINUNICODE8, BINBYTES8, BYTEARRAY8
    set("IL", line1);           // INT, LONG
    set("c", line2);            // GLOBAL
    return f;
  }();
  MemoReads got;
  std::size_t p = 0;
  while (p < n) {
    const std::uint8_t op = d[p++];
    if (op == '.') {
      std::sort(got.far.begin(), got.far.end());
      got.far.erase(std::unique(got.far.begin(), got.far.end()), got.far.end());
      return got;
    }
    const std::size_t left = n - p;
    std::uint64_t skip = 0;
    switch (forms[op]) {
    case none:
      break;
    case fixed1:
    case fixed2:
    case fixed4:
    case fixed8:
      skip = std::uint64_t{1} << (forms[op] - fixed1);
      if (skip > left) return std::nullopt;
      if (op == 'h') got.add(d[p], p);
      if (op == 'j') got.add(rd32(d + p), p);
      break;
    case len1:
      if (left < 1) return std::nullopt;
      skip = 1 + std::uint64_t{d[p]};
      break;
    case len4:
      if (left < 4) return std::nullopt;
      skip = 4 + std::uint64_t{rd32(d + p)};
      break;
    case len8:
      if (left < 8 || rd64(d + p) > left) return std::nullopt;
      skip = 8 + rd64(d + p);
      break;
    case line1:
    case line2:
      for (int k = forms[op] == line1 ? 1 : 2; k > 0; --k) {
        const void* nl = std::memchr(d + p, '\n', n - p);
        if (nl == nullptr) return std::nullopt;
        p = static_cast<std::size_t>(static_cast<const std::uint8_t*>(nl) - d) + 1;
      }
      break;
    default:
      return std::nullopt;
    }
    if (skip > n - p) return std::nullopt;
    p += static_cast<std::size_t>(skip);
  }
  return std::nullopt;
}

}  // namespace statedict::detail
