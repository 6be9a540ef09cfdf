// The application of load_only.cpp built against statedict::compiled (STATEDICT_SEPARATE_COMPILATION defined).
#include "net.hpp"

#include <statedict/load.hpp>

#include "load_app.inc"
