#pragma once
// Catch2 v2 (Debian bookworm) or v3, whichever CMake found.
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
using Catch::Approx;  // v2 named it at global scope; the tests spell it that way
#else
#include <catch2/catch.hpp>
#endif
