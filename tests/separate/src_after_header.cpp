// Must not compile: another statedict header before <statedict/src.hpp> (it declared the entry points
// without their code, and #pragma once would keep src.hpp from defining them). The test
// src_must_come_first expects src.hpp's #error.
#include <statedict/options.hpp>
#include <statedict/src.hpp>
