#pragma once
// The pickle machine: opcodes, stack, marks and memo of protocols 2 to 5 (and what legacy files of
// protocol 1 use). It never calls anything: what a global does when called, built or named as a
// storage is decided by the table in pickle_globals.hpp (and pickle_tensors.hpp for storages and
// tensors), which reach the machine's helpers as friends.
#include <statedict/detail/formats/pickle_state.hpp>
#include <statedict/detail/key_index.hpp>
#include <statedict/error.hpp>
#include <statedict/read_options.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace statedict::detail {

/// Globals whose only purpose in a pickle is to run code or reach the system (pickle_globals.hpp).
inline bool is_forbidden_global(const std::string& module, const std::string& name);
struct PickleGlobals;

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
  /// A plain pickle (pickle.dump, a detectron2 .pkl): nothing beside it holds storages, so a
  /// persistent id is refused.
  Unpickler& plain(bool on) {
    plain_ = on;
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
  std::string kind_name(std::uint32_t i);
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
  void push_int(std::int64_t v);
  std::uint32_t& small_int_slot(std::size_t v);
  void op_text_int(bool is_long);
  void op_long(std::uint32_t len) { push_long(take(len), len); }
  void push_long(const std::uint8_t* b, std::uint32_t len);
  void op_unicode(std::uint64_t len);
  void op_binstring(std::uint32_t len);
  void op_bytes(std::uint64_t len);
  static std::string latin1_to_utf8(const std::uint8_t* b, std::size_t n);
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
  void push_global(std::string module, std::string name, std::size_t at);

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
                    std::uint32_t h) const;
  /// Doubles the table (first use: 64 slots), re-slotting its entries by their stored hashes. On
  /// first use the entries are made from the keys the dict has, which are distinct: setitems
  /// compared each with the others while the dict had fewer than `searched` keys.
  void grow(DictIndex& ix, const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kv) const;
  void setitems(std::uint32_t target, const std::vector<std::uint32_t>& items);
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

  // ---- calls (the globals' side: pickle_globals.hpp, pickle_tensors.hpp) ----
  friend struct PickleGlobals;
  using Args = std::vector<std::uint32_t>;
  /// The table entry of a global "module.name" + 1, or 0: looked up once, when the GLOBAL is read.
  static std::int64_t callable_of(const std::string& fn);
  /// Calls global `fn` (a node push_global made) with the tuple `args_id`.
  std::uint32_t call(std::uint32_t fn, std::uint32_t args_id);
  std::uint32_t newobj(std::uint32_t cls, std::uint32_t args);
  void build(std::uint32_t target, std::uint32_t state);
  std::uint32_t persistent(std::uint32_t pid);
  std::uint32_t declare_storage(StorageSpec& spec);
  std::uint32_t rebuild_tensor(std::uint32_t fn, const std::vector<std::uint32_t>& a);

  std::uint32_t reduce(std::uint32_t fn, std::uint32_t args) {
    if (node(fn).internal != Internal::global) fail("pickle.type", op_at_, "REDUCE of a " + kind_name(fn) + " (not a global)");
    return call(fn, args);
  }

  /// An object that remembers what it was and with what it was called; it runs nothing.
  std::uint32_t inert(std::string what, std::uint32_t args_id) {
    Node nd;
    nd.kind = Kind::object;
    nd.text = std::move(what);
    nd.args() = args_id;
    return tree_.add(std::move(nd));
  }
  /// A tensor-like value statedict cannot represent: listed by Checkpoint::unreadable() with `why`.
  void mark_unreadable(std::uint32_t id, std::string why) {
    Node& nd = node(id);
    nd.internal = Internal::unreadable;
    nd.pending = static_cast<std::uint32_t>(st_.reasons.size());
    st_.reasons.push_back(std::move(why));
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
  bool plain_ = false;
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
