#pragma once
// Catch2 v2 (Debian bookworm) or v3, whichever CMake found.
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
