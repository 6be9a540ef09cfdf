// The application calling statedict::load through the header that declares it, header-only.
#include "net.hpp"

#include <statedict/load.hpp>

#include "load_app.inc"
