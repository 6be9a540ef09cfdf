// The application of load_only.cpp with separate compilation: compiled with
// -DSTATEDICT_SEPARATE_COMPILATION, as every unit of such a program; src_unit.cpp defines the code.
#include "net.hpp"

#include <statedict/load.hpp>

#include "load_app.inc"
