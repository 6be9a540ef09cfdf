#pragma once
// A protocol-2 unpickler that never calls anything. It interprets a fixed allowlist of callables
// (OrderedDict, tensor and parameter rebuilders, a few builtins, numpy scalars and arrays); every other
// class becomes an inert object; globals that exist to run code or touch the system fail the read.
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/io/mapped_file.hpp>
#include <statedict/detail/key_index.hpp>
#include <statedict/detail/tree.hpp>
#include <statedict/error.hpp>
#include <statedict/read_options.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace statedict::detail {

/// One storage a pickle refers to by persistent id.
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

/// Globals whose only purpose in a pickle is to run code or reach the system.
inline bool is_forbidden_global(const std::string& module, const std::string& name) {
  static const std::set<std::string> modules = {"os",
                                                "posix",
                                                "nt",
                                                "subprocess",
                                                "sys",
                                                "runpy",
                                                "importlib",
                                                "pickle",
                                                "_pickle",
                                                "cPickle",
                                                "shutil",
                                                "socket",
                                                "ctypes",
                                                "pty",
                                                "code",
                                                "codeop",
                                                "commands",
                                                "webbrowser",
                                                "marshal",
                                                "multiprocessing",
                                                "signal",
                                                "asyncio",
                                                "pdb",
                                                "_posixsubprocess",
                                                "io",
                                                "_io",
                                                "tempfile",
                                                "glob",
                                                "urllib",
                                                "http",
                                                "ftplib",
                                                "smtplib",
                                                "telnetlib",
                                                "requests",
                                                "timeit",
                                                "trace",
                                                "cProfile",
                                                "profile",
                                                "dill",
                                                "imp",
                                                "zipimport",
                                                "threading",
                                                "_thread",
                                                "gc",
                                                "inspect",
                                                "ssl",
                                                "select",
                                                "mmap",
                                                "resource",
                                                "fcntl",
                                                "termios",
                                                "sqlite3",
                                                "shelve",
                                                "dbm",
                                                "site",
                                                "sysconfig",
                                                "distutils",
                                                "setuptools",
                                                "pip",
                                                "torch.hub",
                                                "torch.load",
                                                "torch.jit",
                                                "torch.ops",
                                                "torch._C",
                                                "torch.serialization",
                                                "torch.package"};
  // Named by torch's own sparse-tensor pickles; as an inert global it runs nothing.
  if (module == "torch.serialization" && name == "_get_layout") return false;
  std::string top = module.substr(0, module.find('.'));
  if (modules.count(top) != 0 || modules.count(module) != 0) return true;
  for (const auto& m : modules)
    if (m.find('.') != std::string::npos && module.compare(0, m.size(), m) == 0 && (module.size() == m.size() || module[m.size()] == '.'))
      return true;
  if (module == "builtins" || module == "__builtin__") {
    static const std::set<std::string> names = {"eval",    "exec",   "execfile",    "compile",        "__import__", "getattr", "setattr",
                                                "delattr", "open",   "input",       "raw_input",      "breakpoint", "globals", "locals",
                                                "vars",    "apply",  "file",        "reload",         "help",       "exit",    "quit",
                                                "type",    "super",  "classmethod", "staticmethod",   "property",   "hasattr", "print",
                                                "map",     "filter", "__loader__",  "__build_class__"};
    return names.count(name) != 0;
  }
  if (module == "operator") return name == "attrgetter" || name == "methodcaller" || name == "itemgetter";
  if (module == "functools") return name == "reduce";
  if (module == "types") return name == "CodeType" || name == "FunctionType" || name == "MethodType" || name == "ModuleType";
  return false;
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

class Unpickler {
public:
  Unpickler(PickleState& st, const ReadOptions& opts, std::string file, std::string record, const std::uint8_t* data, std::size_t size,
            std::uint64_t base_offset, bool legacy)
      : st_(st), tree_(st.tree), opts_(opts), file_(std::move(file)), record_(std::move(record)), d_(data), n_(size), base_(base_offset),
        legacy_(legacy) {}

  /// Legacy files written with pickle_protocol=1 have no PROTO opcode: accept that there.
  Unpickler& allow_protocol_1(bool on) {
    protocol_1_ = on;
    return *this;
  }

  /// Runs to STOP; returns the root node. consumed() then tells how many bytes the pickle took.
  std::uint32_t run() {
    // The span may run past the pickle (legacy files: the rest of the file); only the bytes the
    // pickle really uses count against the limit.
    if (n_ > opts_.max_pickle_bytes()) {
      n_ = static_cast<std::size_t>(opts_.max_pickle_bytes());
      limited_ = true;
    }
    if (n_ < 2 || (d_[0] != 0x80 && !protocol_1_))
      fail("pickle.no_proto", 0, "pickle does not start with PROTO (not a pickle of protocol 2 or newer)");
    if (auto reads = memo_reads(d_, n_)) {
      memo_reads_ = std::move(*reads);
      recycle_ = true;
    }
    while (true) {
      op_at_ = p_;
      const std::uint8_t op = byte();
      switch (op) {
      case 0x80: {  // PROTO
        const std::uint8_t v = byte();
        if (v < 2 || v > 5)
          fail("pickle.protocol", op_at_, "pickle protocol " + std::to_string(v) + " is not supported (statedict reads protocols 2 to 5)");
        break;
      }
      case 0x95:  // FRAME (protocol 4): a length prefix for buffered readers; the opcodes inside read as usual
        take(8);
        break;
      case 0x94:  // MEMOIZE: store the top at the next free memo index
        memo_put(memo_count_);
        break;
      case 0x93:  // STACK_GLOBAL
        op_stack_global();
        break;
      case '.': {  // STOP
        if (!marks_.empty()) fail("pickle.unclosed_mark", op_at_, "STOP with a MARK never closed");
        if (stack_.size() != 1)
          fail("pickle.stack", op_at_, "STOP with " + std::to_string(stack_.size()) + " values on the stack (expected 1)");
        return stack_.back();
      }
      case '(':
        marks_.push_back(stack_.size());
        break;
      case '0':
        pop();
        break;  // POP
      case '1':
        pop_mark();
        break;  // POP_MARK
      case '2': {
        auto v = top();
        pin(v);
        stack_.push_back(v);
        break;
      }  // DUP
      case 'c':
        op_global();
        break;
      case 'q':
        memo_put(byte());
        break;
      case 'r':
        memo_put(u32());
        break;
      case 'h':
        memo_get(byte());
        break;
      case 'j':
        memo_get(u32());
        break;
      case 'N':
        push(shared_leaf(none_, Kind::none));
        break;
      case 0x88:
        push_bool(true);
        break;
      case 0x89:
        push_bool(false);
        break;
      case 'K':
        push_int(byte());
        break;
      case 'I':  // INT (protocols 0-1): decimal text; "01"/"00" are True/False
        op_text_int(false);
        break;
      case 'L':  // LONG (protocols 0-1): decimal text ending in 'L'
        op_text_int(true);
        break;
      case 'M':
        push_int(u16());
        break;
      case 'J':
        push_int(static_cast<std::int32_t>(u32()));
        break;
      case 0x8a:
        op_long(byte());
        break;
      case 0x8b:
        op_long(u32());
        break;
      case 'G': {
        const std::uint8_t* b = take(8);
        std::uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | b[k];
        Node nd;
        nd.kind = Kind::floating;
        std::memcpy(&nd.real, &bits, 8);
        push(tree_.add(std::move(nd)));
        break;
      }
      case 'X':
        op_unicode(u32());
        break;
      case 0x8c:
        op_unicode(byte());
        break;  // SHORT_BINUNICODE
      case 0x8d:
        op_unicode(u64());
        break;  // BINUNICODE8
      case 0x8e:
      case 0x96:
        op_bytes(u64());
        break;  // BINBYTES8, BYTEARRAY8
      case 'U':
        op_binstring(byte());
        break;
      case 'T':
        op_binstring(u32());
        break;
      case 'C':
        op_bytes(byte());
        break;
      case 'B':
        op_bytes(u32());
        break;
      case ')':
        push(shared_leaf(empty_tuple_, Kind::tuple));
        break;
      case 't': {
        auto items = pop_mark();
        push(make_seq(Kind::tuple, std::move(items)));
        break;
      }
      case 0x85: {
        auto a = pop();
        push(make_seq(Kind::tuple, {a}));
        break;
      }
      case 0x86: {
        auto b = pop();
        auto a = pop();
        push(make_seq(Kind::tuple, {a, b}));
        break;
      }
      case 0x87: {
        auto c = pop();
        auto b = pop();
        auto a = pop();
        push(make_seq(Kind::tuple, {a, b, c}));
        break;
      }
      case ']':
        push(tree_.add(Kind::list));
        break;
      case 'l': {
        auto items = pop_mark();
        push(make_seq(Kind::list, std::move(items)));
        break;
      }
      case 'a': {
        auto v = pop();
        append(top(), {v});
        break;
      }
      case 'e': {
        auto items = pop_mark();
        append(top(), items);
        break;
      }
      case '}':
        push(tree_.add(Kind::dict));
        break;
      case 'd': {
        auto items = pop_mark();
        auto dnode = tree_.add(Kind::dict);
        setitems(dnode, items);
        push(dnode);
        break;
      }
      case 's': {
        auto v = pop();
        auto k = pop();
        setitems(top(), {k, v});
        break;
      }
      case 'u': {
        auto items = pop_mark();
        setitems(top(), items);
        break;
      }
      case 0x8f:
        push(tree_.add(Kind::set));
        break;      // EMPTY_SET
      case 0x91: {  // FROZENSET
        auto items = pop_mark();
        push(make_seq(Kind::set, std::move(items)));
        break;
      }
      case 0x97:
      case 0x98:
        fail("pickle.out_of_band", op_at_,
             std::string(op == 0x97 ? "NEXT_BUFFER" : "READONLY_BUFFER") +
                 " (protocol 5 out-of-band buffer): the data is not in the file; torch.save never writes these");
      case 0x90: {  // ADDITEMS
        auto items = pop_mark();
        auto t = top();
        if (tree_.nodes[t].kind != Kind::set) fail("pickle.type", op_at_, "ADDITEMS on a " + kind_name(t));
        for (auto i : items) tree_.nodes[t].items.push_back(i);
        break;
      }
      case 'R': {
        auto args = pop();
        auto fn = pop();
        push(reduce(fn, args));
        break;
      }
      case 0x81: {
        auto args = pop();
        auto cls = pop();
        push(newobj(cls, args));
        break;
      }
      case 0x92: {  // NEWOBJ_EX: keyword arguments are kept with the object, never interpreted
        auto kwargs = pop();
        auto args = pop();
        auto cls = pop();
        if (node(kwargs).kind != Kind::dict) fail("pickle.type", op_at_, "NEWOBJ_EX keyword arguments are a " + kind_name(kwargs));
        push(newobj(cls, args));
        break;
      }
      case 'b': {
        auto state = pop();
        build(top(), state);
        break;
      }
      case 'Q': {
        auto pid = pop();
        push(persistent(pid));
        break;
      }
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "0x%02x", op);
        std::string what = std::string("unsupported pickle opcode ") + buf;
        if (op == 'i')
          what += " (INST, protocol 0)";
        else if (op == 'o')
          what += " (OBJ, protocol 1)";
        fail("pickle.opcode", op_at_, what);
      }
      }
    }
  }

  std::size_t consumed() const { return p_; }

private:
  [[noreturn]] void fail(const std::string& id, std::size_t at, const std::string& why) const {
    std::string where = record_.empty() ? "" : record_ + " ";
    where += "offset " + std::to_string(base_ + at);
    throw Error(id, file_, where, why);
  }

  // ---- input ----
  const std::uint8_t* take(std::uint64_t k) {
    if (k > n_ - p_) short_of(k);
    const std::uint8_t* r = d_ + p_;
    p_ += static_cast<std::size_t>(k);
    return r;
  }
  // take()'s failure, out of line so that take() itself stays small enough to inline everywhere.
  [[noreturn]] void short_of(std::uint64_t k) const {
    if (limited_)
      fail("limit.pickle_size", op_at_, "pickle longer than max_pickle_bytes (" + std::to_string(opts_.max_pickle_bytes()) + ")");
    fail("pickle.truncated", op_at_,
         "pickle ends inside an opcode (needs " + std::to_string(k) + " more bytes, " + std::to_string(n_ - p_) + " left)");
  }
  std::uint8_t byte() { return *take(1); }
  std::uint16_t u16() { return rd16(take(2)); }
  std::uint32_t u32() { return rd32(take(4)); }
  std::uint64_t u64() { return rd64(take(8)); }
  std::string line() {
    constexpr std::size_t max_line = 1024;
    const std::size_t start = p_;
    while (true) {
      if (p_ >= n_) fail("pickle.truncated", start, "GLOBAL name without a newline");
      if (d_[p_] == '\n') break;
      if (p_ - start >= max_line) fail("pickle.bad_global", start, "GLOBAL name longer than " + std::to_string(max_line) + " bytes");
      ++p_;
    }
    std::string s(reinterpret_cast<const char*>(d_ + start), p_ - start);
    ++p_;
    return s;  // its characters are checked by push_global
  }
  static std::string printable(const std::string& s) {
    std::string r;
    for (char c : s.substr(0, 80)) r += (c >= 32 && c < 127) ? c : '?';
    return r;
  }

  // ---- stack ----
  void push(std::uint32_t v) { stack_.push_back(v); }
  std::uint32_t pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() == marks_.back())) empty_stack();
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::uint32_t top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() == marks_.back())) empty_stack();
    return stack_.back();
  }
  [[noreturn]] void empty_stack() const { fail("pickle.stack", op_at_, "opcode needs a value but the stack is empty"); }
  std::vector<std::uint32_t> pop_mark() {
    if (marks_.empty()) fail("pickle.no_mark", op_at_, "opcode needs a MARK but there is none");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  // Picklers number memo entries 0, 1, 2, ...: those live in a vector; a far-off index (only a
  // hand-made file has one) goes to a map. The vector never outgrows twice the BINPUTs seen, so a
  // hostile index cannot make it huge. When it grows past indices the map holds, they move into it:
  // an index lives in one place only, so BINGET finds it and a second BINPUT of it is no new entry.
  void memo_put(std::uint32_t idx) {
    ++memo_puts_;
    bool fresh;
    if (idx < dense_memo_.size() || static_cast<std::uint64_t>(idx) < 2 * memo_puts_ + 4096) {
      if (idx >= dense_memo_.size()) {
        const std::size_t reached = dense_memo_.size();
        if (idx == reached)
          dense_memo_.push_back(npos);  // the common case: the next index
        else
          dense_memo_.resize(std::size_t{idx} + 1, npos);
        for (auto it = memo_.lower_bound(static_cast<std::uint32_t>(reached)); it != memo_.end() && it->first <= idx; it = memo_.erase(it))
          dense_memo_[it->first] = it->second;
      }
      fresh = dense_memo_[idx] == npos;
      dense_memo_[idx] = top();
    } else {
      fresh = memo_.insert_or_assign(idx, top()).second;
    }
    if (fresh) ++memo_count_;  // MEMOIZE's index is the memo's size, as in Python
    if (recycle_ && memo_reads_.has(idx)) pin(top());
  }
  void memo_get(std::uint32_t idx) {
    std::uint32_t v = npos;
    if (idx < dense_memo_.size()) {
      v = dense_memo_[idx];
    } else if (auto it = memo_.find(idx); it != memo_.end()) {
      v = it->second;
    }
    if (v == npos) fail("pickle.memo", op_at_, "BINGET of memo index " + std::to_string(idx) + " that was never stored");
    if (recycle_ && !memo_reads_.has(idx))
      fail("pickle.memo", op_at_, "BINGET of memo index " + std::to_string(idx) + " that the walk before the run did not see");
    push(v);
  }

  // ---- giving back nodes nothing refers to ----
  void pin(std::uint32_t id) {
    if (!recycle_) return;
    if (id >= pinned_.size()) pinned_.resize(std::max<std::size_t>(id + 1, pinned_.size() * 2), false);
    pinned_[id] = true;
  }
  /// A node a handler puts in a second place (an item copied into a new container, an argument
  /// returned as the result): it now has two holders, so it is never given back.
  std::uint32_t share(std::uint32_t id) {
    pin(id);
    return id;
  }
  const std::vector<std::uint32_t>& share_all(const std::vector<std::uint32_t>& ids) {
    for (auto id : ids) pin(id);
    return ids;
  }
  /// Gives back node `root` and what only it holds, stopping at pinned nodes: call it on a value
  /// an opcode has consumed whole (a persistent id, a rebuild's argument tuple) and kept nothing of.
  void recycle(std::uint32_t root) {
    if (!recycle_) return;
    todo_.assign(1, root);
    while (!todo_.empty()) {
      const std::uint32_t id = todo_.back();
      todo_.pop_back();
      if (id >= tree_.nodes.size() || (id < pinned_.size() && pinned_[id])) continue;
      const Node& nd = node(id);
      if (nd.pending == freed) continue;
      todo_.insert(todo_.end(), nd.items.begin(), nd.items.end());
      if (nd.has_more()) {
        for (const auto& [k, v] : nd.kv()) {
          todo_.push_back(k);
          todo_.push_back(v);
        }
        if (nd.args() != npos) todo_.push_back(nd.args());
        if (nd.state() != npos) todo_.push_back(nd.state());
      }
      // dicts and objects that got SETITEMS have an index
      if ((nd.kind == Kind::dict || nd.kind == Kind::object) && !dict_index_.empty()) dict_index_.erase(id);
      tree_.release(id);
    }
  }

  // ---- values ----
  Node& node(std::uint32_t i) { return tree_.nodes[i]; }
  const Node& node(std::uint32_t i) const { return tree_.nodes[i]; }
  std::string kind_name(std::uint32_t i) {
    const Node& nd = node(i);
    switch (nd.internal) {
    case Internal::global:
      return "global " + nd.text;
    case Internal::storage:
      return "storage";
    default:
      break;
    }
    std::string r = python_type(nd.kind);
    if (nd.kind == Kind::object) r += " " + nd.text;
    return r;
  }
  // Leaves no opcode can change (None, True, False, ints below 65536, the empty tuple) are made
  // once and shared, as the memo shares any value: 6 of the 15 nodes of a tensor in a torch.save
  // file are such leaves.
  std::uint32_t shared_leaf(std::uint32_t& slot, Kind k, bool boolean = false, std::int64_t integer = 0) {
    if (slot == npos) {
      Node nd;
      nd.kind = k;
      nd.boolean = boolean;
      nd.integer = integer;
      slot = tree_.add(std::move(nd));
      pin(slot);
    }
    return slot;
  }
  void push_bool(bool v) { push(shared_leaf(v ? true_ : false_, Kind::boolean, v)); }
  void push_int(std::int64_t v) {
    constexpr std::int64_t kShared = 65536;
    if (v >= 0 && v < kShared) return push(shared_leaf(small_int_slot(static_cast<std::size_t>(v)), Kind::integer, false, v));
    Node nd;  // a larger int: a node of its own, not shared, so given back with what holds it
    nd.kind = Kind::integer;
    nd.integer = v;
    push(tree_.add(std::move(nd)));
  }
  std::uint32_t& small_int_slot(std::size_t v) {
    if (v >= small_ints_.size())
      small_ints_.resize(std::max<std::size_t>(v + 1, std::min<std::size_t>(small_ints_.size() * 2, 65536)), npos);
    return small_ints_[v];
  }
  void op_text_int(bool is_long) {
    const std::size_t at = op_at_;
    std::string t = line();
    if (is_long && !t.empty() && t.back() == 'L') t.pop_back();
    if (!is_long && (t == "01" || t == "00")) return push_bool(t == "01");
    const bool negative = !t.empty() && t[0] == '-';
    const std::string digits = t.substr(negative || (!t.empty() && t[0] == '+') ? 1 : 0);
    if (digits.empty() || digits.size() > 400 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      fail("pickle.bad_int", at, "INT/LONG text '" + printable(t) + "' is not a decimal integer");
    // Decimal to little-endian magnitude bytes, then two's complement: the form LONG1 carries.
    std::vector<std::uint8_t> mag;
    for (char c : digits) {
      unsigned carry = static_cast<unsigned>(c - '0');
      for (auto& b : mag) {
        const unsigned v = b * 10u + carry;
        b = static_cast<std::uint8_t>(v & 0xFF);
        carry = v >> 8;
      }
      while (carry) {
        mag.push_back(static_cast<std::uint8_t>(carry & 0xFF));
        carry >>= 8;
      }
    }
    mag.push_back(0);  // room for the sign bit
    if (negative) {
      unsigned carry = 1;
      for (auto& b : mag) {
        const unsigned v = static_cast<std::uint8_t>(~b) + carry;
        b = static_cast<std::uint8_t>(v & 0xFF);
        carry = v >> 8;
      }
    }
    // Minimal length, as LONG1 writes it.
    while (mag.size() > 1 && ((mag.back() == 0 && !(mag[mag.size() - 2] & 0x80)) || (mag.back() == 0xFF && (mag[mag.size() - 2] & 0x80))))
      mag.pop_back();
    push_long(mag.data(), static_cast<std::uint32_t>(mag.size()));
  }
  void op_long(std::uint32_t len) { push_long(take(len), len); }
  void push_long(const std::uint8_t* b, std::uint32_t len) {
    Node nd;
    nd.kind = Kind::integer;
    if (len <= 8) {
      std::uint64_t v = 0;
      for (std::uint32_t k = 0; k < len; ++k) v |= static_cast<std::uint64_t>(b[k]) << (8 * k);
      if (len > 0 && len < 8 && (b[len - 1] & 0x80)) v |= ~std::uint64_t{0} << (8 * len);  // sign-extend
      nd.integer = static_cast<std::int64_t>(v);
    } else {
      nd.big = true;  // kept as two's-complement little-endian hex
      static const char* hex = "0123456789abcdef";
      for (std::uint32_t k = len; k-- > 0;) {
        nd.text += hex[b[k] >> 4];
        nd.text += hex[b[k] & 15];
      }
      nd.text = "0x" + nd.text;
      nd.integer = (b[len - 1] & 0x80) ? INT64_MIN : INT64_MAX;
    }
    push(tree_.add(std::move(nd)));
  }
  void op_unicode(std::uint64_t len) {
    const std::size_t at = op_at_;
    const std::uint8_t* b = take(len);
    if (!is_valid_utf8(b, len)) fail("pickle.utf8", at, "BINUNICODE string is not valid UTF-8");
    const std::uint32_t id = tree_.add(Kind::string);
    node(id).text.assign(reinterpret_cast<const char*>(b), len);
    push(id);
  }
  void op_binstring(std::uint32_t len) {
    // Python 2 str: text when it is valid UTF-8, otherwise its bytes read as Latin-1.
    const std::uint8_t* b = take(len);
    Node nd;
    nd.kind = Kind::string;
    if (is_valid_utf8(b, len))
      nd.text.assign(reinterpret_cast<const char*>(b), len);
    else
      nd.text = latin1_to_utf8(b, len);
    push(tree_.add(std::move(nd)));
  }
  void op_bytes(std::uint64_t len) {
    const std::uint8_t* b = take(len);
    Node nd;
    nd.kind = Kind::bytes;
    nd.text.assign(reinterpret_cast<const char*>(b), len);
    push(tree_.add(std::move(nd)));
  }
  static std::string latin1_to_utf8(const std::uint8_t* b, std::size_t n) {
    std::string r;
    for (std::size_t k = 0; k < n; ++k) {
      if (b[k] < 0x80)
        r += static_cast<char>(b[k]);
      else {
        r += static_cast<char>(0xC0 | (b[k] >> 6));
        r += static_cast<char>(0x80 | (b[k] & 0x3F));
      }
    }
    return r;
  }
  std::uint32_t make_seq(Kind k, std::vector<std::uint32_t> items) {
    const std::uint32_t id = tree_.add(k);
    node(id).items = std::move(items);
    return id;
  }
  void op_global() {
    const std::size_t at = op_at_;
    std::string module = line();
    std::string name = line();
    push_global(std::move(module), std::move(name), at);
  }
  void push_global(std::string module, std::string name, std::size_t at) {
    for (const std::string* part : {&module, &name}) {
      if (part->empty() || part->size() > 1024) fail("pickle.bad_global", at, "GLOBAL name is empty or longer than 1024 bytes");
      for (char c : *part)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'))
          fail("pickle.bad_global", at, "GLOBAL name '" + printable(*part) + "' has characters no Python name has");
    }
    if (is_forbidden_global(module, name))
      fail("pickle.forbidden_global", at,
           "the file tries to run code: it references " + module + "." + name + ", which statedict refuses to load");
    Node nd;
    nd.internal = Internal::global;
    nd.kind = Kind::object;
    nd.text = module + "." + name;
    nd.integer = callable_of(nd.text);  // what calling it does
    push(tree_.add(std::move(nd)));
  }

  void op_stack_global() {
    const std::size_t at = op_at_;
    auto name_id = pop();
    auto module_id = pop();
    if (node(module_id).kind != Kind::string || node(name_id).kind != Kind::string)
      fail("pickle.bad_global", at, "STACK_GLOBAL needs two strings, got a " + kind_name(module_id) + " and a " + kind_name(name_id));
    push_global(node(module_id).text, node(name_id).text, at);
  }

  // A repeated str or int key overwrites, as in Python. Small dicts are searched; a dict of more
  // keys keeps an open-addressing table of positions in its kv (no copy of any key, no node per key).
  static bool indexable(const Node& k) { return k.kind == Kind::string || (k.kind == Kind::integer && !k.big); }
  static bool same_key(const Node& a, const Node& b) {
    if (a.kind != b.kind) return false;
    return a.kind == Kind::string ? a.text == b.text : !a.big && !b.big && a.integer == b.integer;  // a big int is no other int
  }
  static std::size_t key_hash(const Node& k) {
    return k.kind == Kind::string ? std::hash<std::string>{}(k.text) : std::hash<std::int64_t>{}(k.integer) * 0x9E3779B97F4A7C15ULL;
  }
  // Each slot holds a key's position in kv + 1 (low half; 0 is empty) and its hash's low 32 bits
  // (high half): a probe compares hashes and touches a key's node (a cache miss in a tree of 900k
  // nodes) only when they are equal, and growing re-slots without touching any node.
  struct DictIndex {
    std::vector<std::uint64_t> slots;
    std::size_t used = 0;
  };
  static constexpr std::size_t searched = 16;  // dicts of fewer keys have no table
  /// A slot's entry: hash `h` of the key at kv position `pos`.
  static std::uint64_t slot_entry(std::uint32_t h, std::size_t pos) { return (std::uint64_t{h} << 32) | (pos + 1); }
  /// The slot of `key` (hash `h`) in `ix`: the one holding it, or the empty slot where it goes.
  std::size_t probe(const DictIndex& ix, const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kv, const Node& key,
                    std::uint32_t h) const {
    const std::size_t mask = ix.slots.size() - 1;
    for (std::size_t s = h & mask;; s = (s + 1) & mask) {
      const std::uint64_t e = ix.slots[s];
      if (e == 0 || (static_cast<std::uint32_t>(e >> 32) == h && same_key(node(kv[(e & 0xffffffffU) - 1].first), key))) return s;
    }
  }
  /// Doubles the table (first use: 64 slots), re-slotting its entries by their stored hashes. On
  /// first use the entries are made from the keys the dict has, which are distinct: setitems
  /// compared each with the others while the dict had fewer than `searched` keys.
  void grow(DictIndex& ix, const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kv) const {
    std::vector<std::uint64_t> entries;
    if (ix.slots.empty()) {
      for (std::size_t i = 0; i < kv.size(); ++i)
        if (const Node& k = node(kv[i].first); indexable(k)) entries.push_back(slot_entry(static_cast<std::uint32_t>(key_hash(k)), i));
    } else {
      entries.swap(ix.slots);
    }
    std::size_t size = 64;  // a power of two at least twice the entries: a table of 2^k slots becomes 2^(k+1)
    while (size < entries.size() * 2) size *= 2;
    ix.slots.assign(size, 0);
    ix.used = 0;
    const std::size_t mask = ix.slots.size() - 1;
    for (const std::uint64_t e : entries) {
      if (e == 0) continue;
      std::size_t s = static_cast<std::uint32_t>(e >> 32) & mask;
      while (ix.slots[s] != 0) s = (s + 1) & mask;
      ix.slots[s] = e;
      ++ix.used;
    }
  }
  void setitems(std::uint32_t target, const std::vector<std::uint32_t>& items) {
    if (items.size() % 2 != 0)
      fail("pickle.setitems", op_at_, "SETITEMS with an odd number of values (" + std::to_string(items.size()) + ")");
    Node& t = node(target);
    if (!(t.kind == Kind::dict || (t.kind == Kind::object && t.internal == Internal::value)))
      fail("pickle.type", op_at_, "SETITEM on a " + kind_name(target) + " (needs a dict)");
    auto& kv = t.kv();
    if (kv.size() + items.size() / 2 >= UINT32_MAX / 2) fail("limit.tensors", op_at_, "a dict of more than 2^31 keys");
    for (std::size_t k = 0; k < items.size(); k += 2) {
      const Node& key = node(items[k]);
      if (indexable(key)) {
        if (kv.size() < searched) {
          auto same = std::find_if(kv.begin(), kv.end(), [&](const auto& e) { return same_key(node(e.first), key); });
          if (same != kv.end()) {
            same->second = items[k + 1];
            continue;
          }
        } else {
          DictIndex& ix = dict_index_[target];
          if (ix.slots.empty() || (ix.used + 1) * 2 > ix.slots.size()) grow(ix, kv);
          const auto h = static_cast<std::uint32_t>(key_hash(key));
          const std::size_t s = probe(ix, kv, key, h);
          if (ix.slots[s] != 0) {
            kv[(ix.slots[s] & 0xffffffffU) - 1].second = items[k + 1];
            continue;
          }
          ix.slots[s] = slot_entry(h, kv.size());
          ++ix.used;
        }
      }
      kv.emplace_back(items[k], items[k + 1]);
    }
  }
  void append(std::uint32_t target, const std::vector<std::uint32_t>& items) {
    Node& t = node(target);
    if (!(t.kind == Kind::list || (t.kind == Kind::object && t.internal == Internal::value)))
      fail("pickle.type", op_at_, "APPEND on a " + kind_name(target) + " (needs a list)");
    t.items.insert(t.items.end(), items.begin(), items.end());
  }

  // ---- helpers for interpreting arguments ----
  const Node& arg(const std::vector<std::uint32_t>& a, std::size_t i) { return node(a[i]); }
  std::int64_t want_int(const std::vector<std::uint32_t>& a, std::size_t i, const char* what) {
    const Node& nd = arg(a, i);
    if (nd.kind != Kind::integer || nd.big) fail("pickle.bad_tensor", op_at_, std::string(what) + " is not an int");
    return nd.integer;
  }
  std::vector<std::int64_t> want_int_tuple(std::uint32_t id, const char* what) {
    std::vector<std::int64_t> r;
    append_int_tuple(id, what, r);
    return r;
  }
  /// Appends the ints of tuple `id` to `to`; returns how many.
  std::size_t append_int_tuple(std::uint32_t id, const char* what, std::vector<std::int64_t>& to) {
    const Node& nd = node(id);
    if (nd.kind != Kind::tuple && nd.kind != Kind::list) fail("pickle.bad_tensor", op_at_, std::string(what) + " is not a tuple");
    for (auto c : nd.items) {
      const Node& e = node(c);
      if (e.kind != Kind::integer || e.big) fail("pickle.bad_tensor", op_at_, std::string(what) + " holds a non-int");
      if (e.integer < 0) fail("pickle.bad_tensor", op_at_, std::string(what) + " holds a negative value " + std::to_string(e.integer));
      to.push_back(e.integer);
    }
    return nd.items.size();
  }
  const std::vector<std::uint32_t>& tuple_args(std::uint32_t args, const std::string& fn) {
    const Node& a = node(args);
    if (a.kind != Kind::tuple) fail("pickle.type", op_at_, "arguments of " + fn + " are a " + kind_name(args) + ", not a tuple");
    return a.items;
  }

  // ---- calls ----
  // The callables a pickle may call, one entry per global, each with its handler: supporting another
  // torch rebuild function is one entry here and, if it needs one, a handler below. A handler
  // returns the node it made, or npos when its arguments do not fit (the call then becomes an inert
  // object). A global named by no entry is an inert object when called, with one exception:
  // torch._utils._rebuild_* functions not listed are unreadable objects, never silently dropped.
  using Args = std::vector<std::uint32_t>;
  using Handler = std::uint32_t (Unpickler::*)(std::uint32_t fn, std::uint32_t args_id, const Args& a, const char* note);
  struct Callable {
    const char* name;
    Handler handler;
    const char* note = nullptr;  // for unreadable(): why
  };
  static const std::vector<Callable>& callables() {
    static const std::vector<Callable> table = {
        {"collections.OrderedDict", &Unpickler::make_dict},
        {"builtins.dict", &Unpickler::make_dict},
        {"__builtin__.dict", &Unpickler::make_dict},
        {"torch._utils._rebuild_tensor_v2", &Unpickler::make_tensor},
        {"torch._utils._rebuild_tensor", &Unpickler::make_tensor},
        {"torch._utils._rebuild_tensor_v3", &Unpickler::make_tensor},
        {"torch._utils._rebuild_parameter", &Unpickler::make_parameter},
        {"torch._utils._rebuild_parameter_with_state", &Unpickler::make_parameter},
        {"torch.nn.parameter.Parameter", &Unpickler::make_old_parameter},
        {"torch.nn.parameter.Buffer", &Unpickler::make_old_parameter},
        {"torch._tensor._rebuild_from_type_v2", &Unpickler::make_from_type},
        {"torch._tensor._rebuild_from_type", &Unpickler::make_from_type},
        {"torch._utils._rebuild_device_tensor_from_numpy", &Unpickler::make_device_tensor},
        {"torch._utils._rebuild_device_tensor_from_cpu_tensor", &Unpickler::make_device_tensor},
        {"torch.Size", &Unpickler::make_size},
        {"_codecs.encode", &Unpickler::make_encoded},
        {"builtins.set", &Unpickler::make_set},
        {"__builtin__.set", &Unpickler::make_set},
        {"builtins.frozenset", &Unpickler::make_set},
        {"__builtin__.frozenset", &Unpickler::make_set},
        {"builtins.complex", &Unpickler::make_complex},
        {"__builtin__.complex", &Unpickler::make_complex},
        {"builtins.bytearray", &Unpickler::make_bytes},
        {"__builtin__.bytearray", &Unpickler::make_bytes},
        {"builtins.bytes", &Unpickler::make_bytes},
        {"__builtin__.bytes", &Unpickler::make_bytes},
        {"builtins.list", &Unpickler::make_list},
        {"__builtin__.list", &Unpickler::make_list},
        {"builtins.tuple", &Unpickler::make_tuple},
        {"__builtin__.tuple", &Unpickler::make_tuple},
        {"copyreg._reconstructor", &Unpickler::make_reconstructed},
        {"copy_reg._reconstructor", &Unpickler::make_reconstructed},
        {"numpy.dtype", &Unpickler::make_numpy_dtype},
        {"numpy.core.multiarray._reconstruct", &Unpickler::make_numpy_array},
        {"numpy._core.multiarray._reconstruct", &Unpickler::make_numpy_array},
        {"numpy.core.multiarray.scalar", &Unpickler::make_numpy_scalar},
        {"numpy._core.multiarray.scalar", &Unpickler::make_numpy_scalar},
        {"torch._utils._rebuild_qtensor", &Unpickler::unreadable, "a quantized tensor: statedict does not read quantized tensors"},
        {"torch._utils._rebuild_sparse_tensor", &Unpickler::unreadable, "a sparse tensor: statedict reads dense tensors only"},
        {"torch._utils._rebuild_sparse_csr", &Unpickler::unreadable, "a sparse tensor: statedict reads dense tensors only"},
        {"torch._utils._rebuild_nested_tensor", &Unpickler::unreadable, "a nested tensor: statedict reads dense tensors only"},
        {"torch._utils._rebuild_meta_tensor_no_storage", &Unpickler::unreadable, "a meta tensor: it has no data"},
        {"torch._utils._rebuild_wrapper_subclass", &Unpickler::unreadable,
         "a tensor subclass without storage (meta or distributed): it has no data here"},
    };
    return table;
  }
  /// The table entry of a global "module.name" + 1, or 0: looked up once, when the GLOBAL is read.
  static std::int64_t callable_of(const std::string& fn) {
    static const KeyIndex index = [] {
      std::vector<std::string_view> names;
      for (const Callable& c : callables()) names.emplace_back(c.name);
      return KeyIndex(std::move(names));
    }();
    const std::size_t at = index.find(fn);
    return at == KeyIndex::none ? 0 : static_cast<std::int64_t>(at) + 1;
  }

  std::uint32_t reduce(std::uint32_t fn, std::uint32_t args) {
    if (node(fn).internal != Internal::global) fail("pickle.type", op_at_, "REDUCE of a " + kind_name(fn) + " (not a global)");
    return call(fn, args);
  }

  /// Calls global `fn` (a node push_global made) with the tuple `args_id`.
  std::uint32_t call(std::uint32_t fn, std::uint32_t args_id) {
    const std::int64_t entry = node(fn).integer;
    const Args a = tuple_args(args_id, node(fn).text);
    if (entry > 0) {
      const Callable& c = callables()[static_cast<std::size_t>(entry - 1)];
      const std::uint32_t made = (this->*c.handler)(fn, args_id, a, c.note);
      if (made != npos) return made;
    }
    if (node(fn).text.compare(0, 22, "torch._utils._rebuild_") == 0) return unreadable(fn, args_id, a, nullptr);
    return inert(node(fn).text, args_id);
  }

  /// An object that remembers what it was and with what it was called; it runs nothing.
  std::uint32_t inert(std::string what, std::uint32_t args_id) {
    Node nd;
    nd.kind = Kind::object;
    nd.text = std::move(what);
    nd.args() = args_id;
    return tree_.add(std::move(nd));
  }
  /// A tensor rebuilder statedict does not interpret: listed with the reason.
  std::uint32_t unreadable(std::uint32_t fn, std::uint32_t args_id, const Args&, const char* note) {
    std::string why = note != nullptr ? std::string(note) : node(fn).text + " is not a tensor rebuilder statedict interprets";
    const std::uint32_t id = inert(node(fn).text, args_id);
    mark_unreadable(id, why);
    return id;
  }

  std::uint32_t make_dict(std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    auto d = tree_.add(Kind::dict);
    if (a.empty()) return d;
    const Node& src = arg(a, 0);
    std::vector<std::uint32_t> flat;
    for (auto pair : src.items) {
      const Node& pr = node(pair);
      if (pr.items.size() != 2) fail("pickle.type", op_at_, node(fn).text + " given an item that is not a pair");
      flat.push_back(share(pr.items[0]));  // the pair may live on (in the memo)
      flat.push_back(share(pr.items[1]));
    }
    setitems(d, flat);
    return d;
  }
  std::uint32_t make_tensor(std::uint32_t fn, std::uint32_t args_id, const Args& a, const char*) {
    const std::uint32_t made = rebuild_tensor(fn, a);
    recycle(args_id);  // the storage, size, stride and hooks live on in the tensor's spec
    return made;
  }
  /// A tensor made a Parameter: the tensor, with requires_grad kept.
  std::uint32_t make_parameter(std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    if (a.empty() || arg(a, 0).kind != Kind::tensor) fail("pickle.bad_tensor", op_at_, node(fn).text + " without a tensor");
    keep_requires_grad(a);
    return share(a[0]);
  }
  /// PyTorch <= 0.3: Parameter(tensor[, requires_grad]) then BUILD; the tensor is what matters.
  std::uint32_t make_old_parameter(std::uint32_t, std::uint32_t, const Args& a, const char*) {
    if (a.empty() || arg(a, 0).kind != Kind::tensor) return npos;
    keep_requires_grad(a);
    return share(a[0]);
  }
  void keep_requires_grad(const Args& a) {
    if (a.size() > 1 && arg(a, 1).kind == Kind::boolean && arg(a, 0).pending != npos)
      st_.tensors[arg(a, 0).pending].requires_grad = arg(a, 1).boolean;
  }
  /// (func, new_type, args[, state]): rebuild with func, drop the Python subclass.
  std::uint32_t make_from_type(std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    if (a.size() < 3 || node(a[0]).internal != Internal::global)
      fail("pickle.bad_tensor", op_at_, node(fn).text + " with malformed arguments");
    if (++call_depth_ > 4) fail("pickle.bad_tensor", op_at_, node(fn).text + " nested too deeply");
    pin(a[2]);  // the inner arguments stay an item of this call's tuple, which the memo may hold
    const std::uint32_t made = call(a[0], a[2]);
    --call_depth_;
    return share(made);
  }
  std::uint32_t make_device_tensor(std::uint32_t, std::uint32_t, const Args& a, const char*) {
    return !a.empty() && arg(a, 0).kind == Kind::tensor ? share(a[0]) : npos;
  }
  std::uint32_t make_size(std::uint32_t, std::uint32_t, const Args& a, const char*) {
    if (a.size() != 1) fail("pickle.type", op_at_, "torch.Size takes one tuple");
    want_int_tuple(a[0], "torch.Size");
    return make_seq(Kind::tuple, share_all(node(a[0]).items));
  }
  std::uint32_t make_encoded(std::uint32_t, std::uint32_t, const Args& a, const char*) {
    if (a.empty() || arg(a, 0).kind != Kind::string) fail("pickle.type", op_at_, "_codecs.encode needs a str");
    std::string enc = a.size() > 1 && arg(a, 1).kind == Kind::string ? arg(a, 1).text : "utf-8";
    Node nd;
    nd.kind = Kind::bytes;
    if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1")
      nd.text = utf8_to_latin1(arg(a, 0).text);
    else if (enc == "utf-8" || enc == "utf8" || enc == "ascii")
      nd.text = arg(a, 0).text;
    else
      fail("pickle.type", op_at_, "_codecs.encode with unsupported encoding '" + printable(enc) + "'");
    return tree_.add(std::move(nd));
  }
  std::uint32_t make_set(std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    auto s = tree_.add(Kind::set);
    if (a.empty()) return s;
    const Node& src = arg(a, 0);
    if (src.kind != Kind::list && src.kind != Kind::tuple && src.kind != Kind::set)
      fail("pickle.type", op_at_, node(fn).text + " of a " + kind_name(a[0]));
    node(s).items = share_all(src.items);
    return s;
  }
  std::uint32_t make_complex(std::uint32_t, std::uint32_t, const Args& a, const char*) {
    Node nd;
    nd.kind = Kind::complex;
    if (a.size() >= 1) nd.real = number(a[0]);
    if (a.size() >= 2) nd.imag() = number(a[1]);
    return tree_.add(std::move(nd));
  }
  std::uint32_t make_bytes(std::uint32_t, std::uint32_t, const Args& a, const char*) {
    Node nd;
    nd.kind = Kind::bytes;
    if (!a.empty()) {
      const Node& src = arg(a, 0);
      if (src.kind == Kind::bytes)
        nd.text = src.text;
      else if (src.kind == Kind::string)
        nd.text = utf8_to_latin1(src.text);
    }
    return tree_.add(std::move(nd));
  }
  std::uint32_t make_list(std::uint32_t, std::uint32_t, const Args& a, const char*) {
    return make_seq(Kind::list, a.empty() ? Args{} : share_all(arg(a, 0).items));
  }
  std::uint32_t make_tuple(std::uint32_t, std::uint32_t, const Args& a, const char*) {
    return make_seq(Kind::tuple, a.empty() ? Args{} : share_all(arg(a, 0).items));
  }
  std::uint32_t make_reconstructed(std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    if (a.empty() || node(a[0]).internal != Internal::global) fail("pickle.type", op_at_, node(fn).text + " without a class");
    return newobj(a[0], tree_.add(Kind::tuple));
  }
  /// numpy dtypes and arrays are interpreted when BUILD gives them their state.
  std::uint32_t make_numpy_dtype(std::uint32_t fn, std::uint32_t args_id, const Args&, const char*) {
    const std::uint32_t id = inert(node(fn).text, args_id);
    node(id).internal = Internal::numpy_dtype;
    return id;
  }
  std::uint32_t make_numpy_array(std::uint32_t, std::uint32_t args_id, const Args&, const char*) {
    const std::uint32_t id = inert("numpy.ndarray", args_id);
    node(id).internal = Internal::numpy_array;
    return id;
  }
  /// A numpy scalar (dtype, bytes): a 0-d tensor, or an unreadable object when no tensor dtype fits.
  std::uint32_t make_numpy_scalar(std::uint32_t fn, std::uint32_t args_id, const Args& a, const char*) {
    if (a.size() != 2 || node(a[0]).internal != Internal::numpy_dtype || arg(a, 1).kind != Kind::bytes) return npos;
    Dtype dt = nullptr;
    std::string why;
    auto t = numpy_tensor(a[0], {}, node(a[1]).text, &dt, &why);
    if (!t.defined()) {
      const std::uint32_t id = inert(node(fn).text, args_id);
      mark_unreadable(id, why);
      return id;
    }
    Node nd;
    nd.kind = Kind::tensor;
    nd.tensor = t;
    if (!native(dt)) nd.raw() = dt;
    return tree_.add(std::move(nd));
  }

  double number(std::uint32_t id) {
    const Node& nd = node(id);
    if (nd.kind == Kind::floating) return nd.real;
    if (nd.kind == Kind::integer) return static_cast<double>(nd.integer);
    fail("pickle.type", op_at_, "expected a number, got a " + kind_name(id));
  }
  std::string utf8_to_latin1(const std::string& s) {
    std::string r;
    r.reserve(s.size());
    for (std::size_t k = 0; k < s.size(); ++k) {
      const auto c = static_cast<std::uint8_t>(s[k]);
      if (c < 0x80)
        r += static_cast<char>(c);
      else if ((c == 0xC2 || c == 0xC3) && k + 1 < s.size()) {
        r += static_cast<char>(((c & 0x03) << 6) | (static_cast<std::uint8_t>(s[k + 1]) & 0x3F));
        ++k;
      } else
        fail("pickle.type", op_at_, "latin-1 encode of a character above U+00FF");
    }
    return r;
  }

  std::uint32_t newobj(std::uint32_t cls, std::uint32_t args) {
    if (node(cls).internal != Internal::global) fail("pickle.type", op_at_, "NEWOBJ of a " + kind_name(cls) + " (not a class)");
    const std::string name = node(cls).text;
    if (name == "collections.OrderedDict" || name == "builtins.dict") return tree_.add(Kind::dict);
    if (name == "builtins.set" || name == "__builtin__.set") return tree_.add(Kind::set);
    if (name == "builtins.list" || name == "__builtin__.list") return tree_.add(Kind::list);
    tuple_args(args, name);
    Node nd;
    nd.kind = Kind::object;
    nd.text = name;
    nd.args() = args;
    return tree_.add(std::move(nd));
  }

  void build(std::uint32_t target, std::uint32_t state) {
    Node& t = node(target);
    if (t.internal == Internal::numpy_array) {
      build_numpy_array(target, state);
      return;
    }
    if (t.internal == Internal::numpy_dtype) {
      node(target).state() = state;
      return;
    }
    if (t.kind == Kind::object && t.internal == Internal::value) {
      node(target).state() = state;
      return;
    }
    if (t.kind == Kind::dict) {
      node(target).state() = state;
      return;
    }                                    // OrderedDict._metadata
    if (t.kind == Kind::tensor) return;  // Python attributes of a Parameter: not needed
    fail("pickle.type", op_at_, "BUILD on a " + kind_name(target));
  }

  // numpy: dtype objects are numpy.dtype(code, align, copy) then BUILD (version, byteorder, ...).
  // Returns the dtype and whether it is big-endian; nullptr (with `why`) when no tensor can hold it.
  std::pair<Dtype, bool> numpy_dtype(std::uint32_t id, std::string* why) {
    const Node& dt = node(id);
    if (dt.internal != Internal::numpy_dtype || dt.args() == npos) {
      *why = "its dtype is a " + kind_name(id) + ", not a numpy.dtype";
      return {nullptr, false};
    }
    const Node& a = node(dt.args());
    if (a.items.empty() || node(a.items[0]).kind != Kind::string) {
      *why = "its numpy.dtype has no type code";
      return {nullptr, false};
    }
    const std::string& code = node(a.items[0]).text;
    Dtype type = dtype_from_numpy(code);
    if (type == nullptr) {
      *why = "numpy dtype '" + printable(code) + "' has no tensor equivalent";
      return {nullptr, false};
    }
    bool big = false;
    if (dt.state() != npos) {
      const Node& s = node(dt.state());
      if (s.kind == Kind::tuple && s.items.size() > 1 && node(s.items[1]).kind == Kind::string) big = node(s.items[1]).text == ">";
    }
    return {type, big};
  }
  /// A numpy array's or scalar's bytes as a tensor; undefined (with `why`) when no tensor can hold it.
  at::Tensor numpy_tensor(std::uint32_t dtype_id, const std::vector<std::int64_t>& shape, const std::string& raw, Dtype* dtype,
                          std::string* why) {
    auto [dt, big] = numpy_dtype(dtype_id, why);
    *dtype = dt;
    if (dt == nullptr) return {};
    const std::size_t es = dt->size;
    std::uint64_t numel = 1;
    for (auto s : shape)
      if (mul_overflows(numel, static_cast<std::uint64_t>(s), &numel)) fail("pickle.bad_numpy", op_at_, "numpy array shape overflows");
    std::uint64_t bytes;
    if (mul_overflows(numel, es, &bytes) || bytes != raw.size())
      fail("pickle.bad_numpy", op_at_,
           "numpy array data has " + std::to_string(raw.size()) + " bytes, shape and dtype need " + std::to_string(numel * es));
    at::Tensor t = empty_of(dt, shape);
    auto* p = static_cast<std::uint8_t*>(t.data_ptr());
    std::memcpy(p, raw.data(), raw.size());
    const std::size_t unit = swap_unit(dt, big);
    if (unit > 1)
      for (std::uint64_t e = 0; e + unit <= bytes; e += unit) std::reverse(p + e, p + e + unit);
    return t;
  }
  /// A tensor-like value statedict cannot represent: listed by Checkpoint::unreadable() with `why`.
  void mark_unreadable(std::uint32_t id, std::string why) {
    Node& nd = node(id);
    nd.internal = Internal::unreadable;
    nd.pending = static_cast<std::uint32_t>(st_.reasons.size());
    st_.reasons.push_back(std::move(why));
  }
  void build_numpy_array(std::uint32_t target, std::uint32_t state) {
    // state = (version, shape, dtype, is_fortran, data)
    const Node& s = node(state);
    node(target).state() = state;
    if (s.kind != Kind::tuple || s.items.size() != 5)
      return mark_unreadable(target, "numpy array state is not (version, shape, dtype, fortran, data)");
    const Node& shape = node(s.items[1]);
    const Node& data = node(s.items[4]);
    if (shape.kind != Kind::tuple) return mark_unreadable(target, "numpy array shape is not a tuple");
    if (data.kind != Kind::bytes)
      return mark_unreadable(target, "numpy array of Python objects (dtype 'O'): its items are not tensor data");
    auto dims = want_int_tuple(s.items[1], "numpy shape");
    const bool fortran = node(s.items[3]).kind == Kind::boolean && node(s.items[3]).boolean;
    std::vector<std::int64_t> order = dims;
    if (fortran) std::reverse(order.begin(), order.end());
    Dtype dt = nullptr;
    std::string why;
    at::Tensor t = numpy_tensor(s.items[2], order, data.text, &dt, &why);
    if (!t.defined()) return mark_unreadable(target, why);
    const auto rank = static_cast<std::int64_t>(order.size());
    if (fortran && rank > 1) {
      std::vector<std::int64_t> perm(static_cast<std::size_t>(t.dim()));
      for (std::int64_t k = 0; k < t.dim(); ++k)
        perm[static_cast<std::size_t>(k)] = k < rank ? rank - 1 - k : k;  // a raw byte dim stays last
      t = t.permute(perm);
    }
    Node& nd = node(target);
    nd.kind = Kind::tensor;
    nd.internal = Internal::value;
    nd.tensor = t;
    if (!native(dt)) nd.raw() = dt;
  }

  // ---- tensors and storages ----
  std::uint32_t persistent(std::uint32_t pid) {
    const Node& t = node(pid);
    if (t.kind != Kind::tuple) fail("pickle.bad_persistent_id", op_at_, "persistent id is a " + kind_name(pid) + ", not a tuple");
    if (t.items.empty() || node(t.items[0]).kind != Kind::string) fail("pickle.bad_persistent_id", op_at_, "persistent id has no tag");
    const std::string tag = node(t.items[0]).text;
    if (tag == "module") {
      // Legacy whole modules: ('module', class, source file, source text) stands for the class.
      // The source text is never looked at, let alone run; the class stays an inert reference.
      if (t.items.size() != 4 || node(t.items[1]).internal != Internal::global)
        fail("pickle.bad_persistent_id", op_at_, "persistent id 'module' is not ('module', class, source file, source)");
      return share(t.items[1]);
    }
    if (tag != "storage") fail("pickle.bad_persistent_id", op_at_, "persistent id tag '" + printable(tag) + "' (expected 'storage')");
    const std::size_t want = legacy_ ? 6 : 5;
    if (t.items.size() != want)
      fail("pickle.bad_persistent_id", op_at_,
           "storage persistent id has " + std::to_string(t.items.size()) + " fields (expected " + std::to_string(want) + ")");
    const Node& type = node(t.items[1]);
    const Node& key = node(t.items[2]);
    const Node& numel = node(t.items[4]);
    if (type.internal != Internal::global) fail("pickle.bad_persistent_id", op_at_, "storage type is not a class");
    StorageSpec spec;
    const std::string tn = type.text.substr(type.text.rfind('.') + 1);
    if (tn == "UntypedStorage" || tn == "_UntypedStorage")
      spec.untyped = true;
    else if (Dtype dt = dtype_from_storage(tn))
      spec.dtype = dt;

    else
      fail("pickle.bad_persistent_id", op_at_, "unknown storage type " + type.text);
    if (key.kind != Kind::string || key.text.empty() || key.text.size() > 64)
      fail("pickle.bad_persistent_id", op_at_, "storage key is not a short string");
    for (char c : key.text)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
        fail("pickle.bad_persistent_id", op_at_, "storage key '" + printable(key.text) + "' is not a plain name");
    if (numel.kind != Kind::integer || numel.big || numel.integer < 0)
      fail("pickle.bad_persistent_id", op_at_, "storage '" + key.text + "' has a negative or non-integer size");
    spec.key = key.text;
    spec.numel = static_cast<std::uint64_t>(numel.integer);
    spec.declared_at = base_ + op_at_;
    std::uint64_t bytes;
    if (mul_overflows(spec.numel, spec.untyped ? 1 : spec.dtype->size, &bytes))
      fail("pickle.bad_persistent_id", op_at_, "storage '" + key.text + "' size overflows");
    std::uint32_t idx = declare_storage(spec);
    if (legacy_) {
      const Node& view = node(t.items[5]);
      if (view.kind == Kind::tuple) {
        // (view_key, offset, view_size): a window of the storage declared above.
        if (view.items.size() != 3 || node(view.items[0]).kind != Kind::string || node(view.items[1]).kind != Kind::integer ||
            node(view.items[2]).kind != Kind::integer || node(view.items[1]).integer < 0 || node(view.items[2]).integer < 0)
          fail("pickle.bad_persistent_id", op_at_, "malformed legacy storage view");
        StorageSpec v;
        v.key = "view:" + node(view.items[0]).text;
        v.dtype = spec.dtype;
        v.untyped = spec.untyped;
        v.view_of = spec.key;
        v.view_offset = static_cast<std::uint64_t>(node(view.items[1]).integer);
        v.numel = static_cast<std::uint64_t>(node(view.items[2]).integer);
        std::uint64_t end;
        if (add_overflows(v.view_offset, v.numel, &end) || end > spec.numel)
          fail("pickle.bad_persistent_id", op_at_, "legacy storage view runs past storage '" + spec.key + "'");
        idx = declare_storage(v);
      } else if (view.kind != Kind::none) {
        fail("pickle.bad_persistent_id", op_at_, "malformed legacy storage view");
      }
    }
    const std::uint32_t made = tree_.add(Kind::object);
    Node& nd = node(made);
    nd.internal = Internal::storage;
    nd.text.append("torch.").append(tn);
    nd.pending = idx;
    recycle(pid);  // the id's fields live on in the storage spec
    return made;
  }
  std::uint32_t declare_storage(StorageSpec& spec) {
    const std::uint32_t known = st_.storage_by_key.find(spec.key);
    if (known != npos) {
      const StorageSpec& old = st_.storages[known];
      if (old.dtype != spec.dtype || old.numel != spec.numel || old.untyped != spec.untyped)
        fail("pickle.storage_conflict", op_at_,
             "storage '" + spec.key + "' declared again with another type or size (first at offset " + std::to_string(old.declared_at) +
                 ")");
      return known;
    }
    const auto idx = static_cast<std::uint32_t>(st_.storages.size());
    st_.storages.push_back(std::move(spec));
    st_.storage_by_key.add(st_.storages.back().key, idx);
    return idx;
  }

  std::uint32_t rebuild_tensor(std::uint32_t fn, const std::vector<std::uint32_t>& a) {
    const bool v3 = node(fn).text == "torch._utils._rebuild_tensor_v3";
    const std::size_t need = v3 ? 7 : 4;
    if (a.size() < need)
      fail("pickle.bad_tensor", op_at_,
           node(fn).text + " with " + std::to_string(a.size()) + " arguments (needs at least " + std::to_string(need) + ")");
    const Node& storage = arg(a, 0);
    if (storage.internal != Internal::storage) fail("pickle.bad_tensor", op_at_, node(fn).text + " without a storage");
    TensorSpec t;
    t.storage = storage.pending;
    const StorageSpec& ss = st_.storages[t.storage];
    const std::int64_t off = want_int(a, 1, "storage offset");
    if (off < 0) fail("pickle.bad_tensor", op_at_, "negative storage offset " + std::to_string(off));
    t.offset = static_cast<std::uint64_t>(off);
    t.dims_at = st_.dims.size();
    const std::size_t dim = append_int_tuple(a[2], "size", st_.dims);
    const std::size_t stride_dim = append_int_tuple(a[3], "stride", st_.dims);
    if (dim != stride_dim)
      fail("pickle.bad_tensor", op_at_, "size has " + std::to_string(dim) + " dims but stride has " + std::to_string(stride_dim));
    if (dim > 64) fail("pickle.bad_tensor", op_at_, "tensor with more than 64 dimensions");
    t.dim = static_cast<std::uint32_t>(dim);
    const at::IntArrayRef sizes = st_.sizes(t), strides = st_.strides(t);
    if (a.size() > 4 && arg(a, 4).kind == Kind::boolean) t.requires_grad = arg(a, 4).boolean;
    t.dtype = ss.dtype;
    if (v3) {
      const Node& dt = arg(a, 6);
      Dtype parsed =
          dt.internal == Internal::global && dt.text.compare(0, 6, "torch.") == 0 ? dtype_from_torch(dt.text.substr(6)) : nullptr;
      if (!parsed) fail("pickle.bad_tensor", op_at_, "_rebuild_tensor_v3 with an unknown dtype " + printable(dt.text));
      t.dtype = parsed;
    } else if (ss.untyped) {
      fail("pickle.bad_tensor", op_at_, node(fn).text + " over an untyped storage needs a dtype");
    }
    if (c10::isQIntType(t.dtype->type))
      fail("pickle.bad_tensor", op_at_, node(fn).text + " over a quantized storage (only _rebuild_qtensor uses those)");
    // The elements the view can reach must lie inside the storage.
    const std::uint64_t es = t.dtype->size;
    const std::uint64_t capacity = ss.untyped ? ss.numel / es : ss.numel;
    std::uint64_t numel = 1, reach = t.offset, tmp;
    for (std::size_t k = 0; k < dim; ++k) {
      if (mul_overflows(numel, static_cast<std::uint64_t>(sizes[k]), &numel)) fail("pickle.bad_tensor", op_at_, "tensor size overflows");
    }
    if (numel > 0) {
      for (std::size_t k = 0; k < dim; ++k)
        if (mul_overflows(static_cast<std::uint64_t>(sizes[k] - 1), static_cast<std::uint64_t>(strides[k]), &tmp) ||
            add_overflows(reach, tmp, &reach))
          fail("pickle.bad_tensor", op_at_, "tensor extent overflows");
      if (reach >= capacity)
        fail("pickle.bad_tensor", op_at_,
             "tensor view reaches element " + std::to_string(reach) + " of storage '" + ss.key + "' which holds " +
                 std::to_string(capacity));
    } else if (t.offset > capacity) {
      fail("pickle.bad_tensor", op_at_, "empty tensor at offset " + std::to_string(t.offset) + " past the end of storage '" + ss.key + "'");
    }
    if (st_.tensors.size() >= opts_.max_tensors())
      fail("limit.tensors", op_at_, "more than max_tensors (" + std::to_string(opts_.max_tensors()) + ") tensors");
    t.at = base_ + op_at_;
    const std::uint32_t id = tree_.add(Kind::tensor);
    node(id).pending = static_cast<std::uint32_t>(st_.tensors.size());
    st_.tensors.push_back(std::move(t));
    return id;
  }

  PickleState& st_;
  Tree& tree_;
  const ReadOptions& opts_;
  std::string file_, record_;
  const std::uint8_t* d_;
  std::size_t n_;
  std::uint64_t base_;
  bool legacy_;
  std::size_t p_ = 0, op_at_ = 0;
  bool limited_ = false;
  bool protocol_1_ = false;
  int call_depth_ = 0;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::vector<std::uint32_t> dense_memo_;  // npos: never stored
  std::uint64_t memo_puts_ = 0;
  std::uint32_t memo_count_ = 0;
  std::map<std::uint32_t, std::uint32_t> memo_;  // far-off indices, in order (see memo_put)
  std::unordered_map<std::uint32_t, DictIndex> dict_index_;
  // Giving back nodes (recycle): on when memo_reads walked the pickle. pinned_[id]: node id may be
  // referred to more than once (a shared leaf, DUP'd, or stored at a memo index the pickle reads).
  bool recycle_ = false;
  MemoReads memo_reads_;
  std::vector<bool> pinned_;
  std::vector<std::uint32_t> todo_;
  std::uint32_t none_ = npos, true_ = npos, false_ = npos, empty_tuple_ = npos;  // shared leaves
  std::vector<std::uint32_t> small_ints_;                                        // [v]: int v's node, npos until made
};

}  // namespace statedict::detail
