// Must not compile: <statedict/src.hpp> in a unit without STATEDICT_SEPARATE_COMPILATION. The test
// src_needs_separate_compilation expects src.hpp's #error, which says what to define.
#include <statedict/src.hpp>
