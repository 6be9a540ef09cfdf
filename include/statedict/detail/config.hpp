#pragma once
// Header-only (the default) or compiled: with the CMake target statedict::compiled, STATEDICT_COMPILED
// is defined for every user, the entry points below are declared by the headers and defined once in
// the library (src/statedict.cpp, which also defines STATEDICT_COMPILING), and a user's translation
// unit neither parses the readers, matcher and writers nor generates their code. One program uses one
// mode: statedict::statedict and statedict::compiled do not mix.
//
// STATEDICT_FUNC marks an entry point: inline when header-only, an ordinary function when compiled.
// STATEDICT_DEFINITIONS is 1 where the machinery and the entry points' bodies are compiled.
#if defined(STATEDICT_COMPILED)
#define STATEDICT_FUNC
#else
#define STATEDICT_FUNC inline
#endif

#if !defined(STATEDICT_COMPILED) || defined(STATEDICT_COMPILING)
#define STATEDICT_DEFINITIONS 1
#else
#define STATEDICT_DEFINITIONS 0
#endif
