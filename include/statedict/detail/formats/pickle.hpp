#pragma once
// A protocol-2 unpickler that never calls anything. It interprets a fixed allowlist of callables
// (OrderedDict, tensor and parameter rebuilders, a few builtins, numpy scalars and arrays); every other
// class becomes an inert object; globals that exist to run code or touch the system fail the read.
// pickle_state.hpp: what it produces; pickle_machine.hpp: the opcodes; pickle_values.hpp: the values
// they make; pickle_globals.hpp: the table of globals; pickle_tensors.hpp: storages and tensors.
#include <statedict/detail/formats/pickle_globals.hpp>
#include <statedict/detail/formats/pickle_machine.hpp>
#include <statedict/detail/formats/pickle_state.hpp>
#include <statedict/detail/formats/pickle_tensors.hpp>
#include <statedict/detail/formats/pickle_values.hpp>
