// The one unit of a separately compiled program that defines statedict's code (what statedict::compiled
// builds into libstatedict.a): paid once per program, not per unit.
#include <statedict/src.hpp>
