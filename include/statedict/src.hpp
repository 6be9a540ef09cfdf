#pragma once
// Separate compilation (as asio's ASIO_SEPARATE_COMPILATION): define STATEDICT_SEPARATE_COMPILATION for
// every unit of the program, and include this header in exactly one unit, first or alone:
//
//   // statedict_src.cpp, compiled with -DSTATEDICT_SEPARATE_COMPILATION like every other unit
//   #include <statedict/src.hpp>
//
// That unit defines statedict's entry points (read, load's and diff's run, save, the report's printing
// and to_json(), rename()'s regex) and the readers, matcher and writers behind them; the other units
// include the usual headers and compile declarations only. The CMake target statedict::compiled is
// this unit built into a static library. Without the unit the program does not link: the linker names
// statedict's entry points (statedict::read, statedict::detail::run, ...); with two, it names them as
// defined twice.
//
// What it covers: everything <statedict/statedict.hpp> declares, TorchScript included (<statedict/
// jit.hpp> needs <torch/script.h>, part of every LibTorch; the program then reads TorchScript archives).
// <statedict/aoti.hpp> is not part of it: its code is inline in the units that include it, in every
// mode, and needs a LibTorch with AOTInductor's package loader (2.14 or newer).

// clang-format off
#if !defined(STATEDICT_SEPARATE_COMPILATION) && !defined(STATEDICT_COMPILED)
#error "<statedict/src.hpp> is for separate compilation: define STATEDICT_SEPARATE_COMPILATION for every unit of the program (-DSTATEDICT_SEPARATE_COMPILATION), or, to use statedict header-only, include <statedict/statedict.hpp> and not this header"
#elif defined(STATEDICT_DETAIL_CONFIG_SEEN)
#error "<statedict/src.hpp> must come before every other statedict header of its unit: one included earlier declared statedict's entry points without their code. Include <statedict/src.hpp> first, or alone in a unit of its own"
#else
// clang-format on
// (The rest only where it is meant to compile: the #error above is then the one message a user sees.)

#define STATEDICT_DETAIL_SRC_UNIT 1

#include <statedict/detail/match/regex.hpp>  // rename()'s regex (also reached through options.hpp)
#include <statedict/statedict.hpp>

#endif
