// The application calling statedict::load through the umbrella header (everything, TorchScript too).
#include "net.hpp"

#include <statedict/statedict.hpp>

#include "load_app.inc"
