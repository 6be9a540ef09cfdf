// Catch2 v2's main; with v3, Catch2::Catch2WithMain provides it and this file is not compiled.
#define CATCH_CONFIG_MAIN
#include "catch.hpp"
