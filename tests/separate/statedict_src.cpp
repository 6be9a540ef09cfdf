// The program's one implementation unit: statedict's code, compiled once.
#include <statedict/src.hpp>
