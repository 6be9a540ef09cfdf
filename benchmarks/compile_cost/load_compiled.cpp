// The application of load_only.cpp built against statedict::compiled (STATEDICT_COMPILED defined).
#include "net.hpp"

#include <statedict/load.hpp>

#include "load_app.inc"
