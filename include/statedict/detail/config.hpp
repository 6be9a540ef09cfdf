#pragma once
// Header-only (the default) or separately compiled. With STATEDICT_SEPARATE_COMPILATION defined for
// every unit of a program (the CMake target statedict::compiled defines it for its users), the headers
// declare the entry points (read, load's and diff's run, save, the report's printing and to_json(),
// the rename rules' regex) and exactly one unit defines them, with the machinery behind them, by
// including <statedict/src.hpp> (statedict::compiled's one unit does). Other units then neither parse
// the readers, matcher and writers nor generate their code. One program uses one mode.
//
// STATEDICT_FUNC marks an entry point: inline header-only, an ordinary function when separate.
// STATEDICT_DEFINITIONS is 1 where the machinery and the entry points' bodies are compiled: every
// header-only unit, and the one unit that includes <statedict/src.hpp> (STATEDICT_DETAIL_SRC_UNIT).
#define STATEDICT_DETAIL_CONFIG_SEEN 1

// STATEDICT_COMPILED, what statedict::compiled used to define, is a deprecated synonym.
#if defined(STATEDICT_COMPILED) && !defined(STATEDICT_SEPARATE_COMPILATION)
#define STATEDICT_SEPARATE_COMPILATION
#endif
#if defined(STATEDICT_COMPILING) && !defined(STATEDICT_DETAIL_SRC_UNIT)
#error "STATEDICT_COMPILING is gone: the one unit that defines statedict's code includes <statedict/src.hpp> instead"
#endif

#if defined(STATEDICT_SEPARATE_COMPILATION)
#define STATEDICT_FUNC
#else
#define STATEDICT_FUNC inline
#endif

#if !defined(STATEDICT_SEPARATE_COMPILATION) || defined(STATEDICT_DETAIL_SRC_UNIT)
#define STATEDICT_DEFINITIONS 1
#else
#define STATEDICT_DEFINITIONS 0
#endif
