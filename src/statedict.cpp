// statedict::compiled: the one unit that defines statedict's code, built into a static library. The
// CMake target defines STATEDICT_SEPARATE_COMPILATION for this unit and for every unit that links it.
#include <statedict/src.hpp>
