#pragma once
// The values the pickle machine makes from opcodes on its own (ints of any length, strings, bytes,
// globals, dict items): the parts of pickle_machine.hpp that are about data, not the stack. A GLOBAL
// is checked against the table in pickle_globals.hpp as it is read.
#include <statedict/detail/formats/pickle_globals.hpp>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace statedict::detail {

inline std::string Unpickler::kind_name(std::uint32_t i) {
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

inline void Unpickler::push_int(std::int64_t v) {
  constexpr std::int64_t kShared = 65536;
  if (v >= 0 && v < kShared) return push(shared_leaf(small_int_slot(static_cast<std::size_t>(v)), Kind::integer, false, v));
  Node nd;  // a larger int: a node of its own, not shared, so given back with what holds it
  nd.kind = Kind::integer;
  nd.integer = v;
  push(tree_.add(std::move(nd)));
}

inline std::uint32_t& Unpickler::small_int_slot(std::size_t v) {
  if (v >= small_ints_.size()) small_ints_.resize(std::max<std::size_t>(v + 1, std::min<std::size_t>(small_ints_.size() * 2, 65536)), npos);
  return small_ints_[v];
}

inline void Unpickler::op_text_int(bool is_long) {
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

inline void Unpickler::push_long(const std::uint8_t* b, std::uint32_t len) {
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

inline void Unpickler::op_unicode(std::uint64_t len) {
  const std::size_t at = op_at_;
  const std::uint8_t* b = take(len);
  if (!is_valid_utf8(b, len)) fail("pickle.utf8", at, "BINUNICODE string is not valid UTF-8");
  const std::uint32_t id = tree_.add(Kind::string);
  node(id).text.assign(reinterpret_cast<const char*>(b), len);
  push(id);
}

inline void Unpickler::op_binstring(std::uint32_t len) {
  // Python 2 str: text when it is valid UTF-8, otherwise its bytes read as Latin-1.
  const std::uint8_t* b = take(len);
  Node nd;
  nd.kind = Kind::string;
  // A numpy array pickled by Python 2 holds its data in such a str: `integer` says how to get the
  // bytes back (PickleGlobals::numpy_data).
  if (is_valid_utf8(b, len)) {
    nd.text.assign(reinterpret_cast<const char*>(b), len);
    nd.integer = binstring_verbatim;
  } else {
    nd.text = latin1_to_utf8(b, len);
    nd.integer = binstring_latin1;
  }
  push(tree_.add(std::move(nd)));
}

inline void Unpickler::op_bytes(std::uint64_t len) {
  const std::uint8_t* b = take(len);
  Node nd;
  nd.kind = Kind::bytes;
  nd.text.assign(reinterpret_cast<const char*>(b), len);
  push(tree_.add(std::move(nd)));
}

inline std::string Unpickler::latin1_to_utf8(const std::uint8_t* b, std::size_t n) {
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

inline void Unpickler::push_global(std::string module, std::string name, std::size_t at) {
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

inline std::size_t Unpickler::probe(const DictIndex& ix, const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kv, const Node& key,
                                    std::uint32_t h) const {
  const std::size_t mask = ix.slots.size() - 1;
  for (std::size_t s = h & mask;; s = (s + 1) & mask) {
    const std::uint64_t e = ix.slots[s];
    if (e == 0 || (static_cast<std::uint32_t>(e >> 32) == h && same_key(node(kv[(e & 0xffffffffU) - 1].first), key))) return s;
  }
}

inline void Unpickler::grow(DictIndex& ix, const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kv) const {
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

inline void Unpickler::setitems(std::uint32_t target, const std::vector<std::uint32_t>& items) {
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

}  // namespace statedict::detail
