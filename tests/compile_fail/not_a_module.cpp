// Must not compile: load() is given something that is not a module. The test
// load_rejects_non_module expects statedict's own static_assert message, not a template failure.
#include <statedict/statedict.hpp>

struct NotAModule {
  int weight = 0;
};

void try_it() {
  NotAModule m;
  (void)statedict::load(m, "model.pt");
}
