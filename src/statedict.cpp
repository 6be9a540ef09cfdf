// statedict::compiled: the one translation unit that defines statedict's entry points (read, load's
// and diff's run, save, checkpoint diff) and the machinery behind them. Users of this library define
// STATEDICT_COMPILED (the CMake target does it) and compile only declarations.
#define STATEDICT_COMPILING
#include <statedict/statedict.hpp>
