#pragma once
// statedict: safe state_dict loading for LibTorch. Include this one header for everything.
#include <statedict/version.hpp>
#include <statedict/error.hpp>
#include <statedict/read_options.hpp>
#include <statedict/kind.hpp>
#include <statedict/checkpoint.hpp>
#include <statedict/read.hpp>
#include <statedict/inspect.hpp>
#include <statedict/options.hpp>
#include <statedict/report.hpp>
#include <statedict/load.hpp>
#include <statedict/save.hpp>
#include <statedict/jit.hpp>

#include <nlohmann/json.hpp>  // LoadReport::to_json() usable in both modes (see report.hpp)
