#pragma once
// statedict::Kind: what a value of a checkpoint holds (see Value::kind()).
#include <cstddef>
#include <cstdint>
#include <ostream>

namespace statedict {

/// What a node of a checkpoint's tree holds.
enum class Kind : std::uint8_t {
  none,
  boolean,
  integer,  // int64; larger Python ints keep their hex digits in as_string()
  floating,
  complex,
  string,
  bytes,
  list,
  tuple,
  set,
  dict,  // insertion-ordered; keys are any value (strings and ints in practice)
  tensor,
  object,  // an inert instance of a class statedict does not interpret (argparse.Namespace, ...)
};

/// The kind's name: "none", "boolean", ..., "object" (the enumerator's own spelling).
inline const char* kind_name(Kind k) {
  static const char* const names[] = {"none", "boolean", "integer", "floating", "complex", "string", "bytes",
                                      "list", "tuple",   "set",     "dict",     "tensor",  "object"};
  const auto i = static_cast<std::size_t>(k);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}
inline std::ostream& operator<<(std::ostream& os, Kind k) { return os << kind_name(k); }

}  // namespace statedict
