#pragma once
// TorchScript modules as load/diff/save targets: a torch::jit::Module (what torch::jit::load
// returns) is loaded like a torch::nn::Module, checked first and changed only when the whole load is
// acceptable. Its parameters and buffers are the targets; attributes that are not tensors are not.
// Including it also makes statedict::read read TorchScript archives (torch.jit.save), in the whole
// program; units that include only <statedict/read.hpp> or <statedict/load.hpp> compile no
// TorchScript code.
#include <statedict/load.hpp>

#include <torch/script.h>

#if STATEDICT_DEFINITIONS
#include <statedict/detail/formats/torchscript.hpp>
#endif

#include <string>
#include <vector>

namespace statedict::detail {

template <> struct ModuleAccess<torch::jit::Module> {
  /// Each module's own parameters, then its buffers, then its children depth first: the order of
  /// the scripted model's state_dict() in Python.
  static std::vector<Target> targets(const torch::jit::Module& m) {
    std::vector<Target> out;
    add(m, "", out);
    return out;
  }
  /// The scripted class without its module path: "Net" for "__torch__.Net".
  static std::string name(const torch::jit::Module& m) {
    const auto qualified = m.type()->name();
    return qualified ? qualified->name() : std::string("RecursiveScriptModule");
  }

private:
  static void add(const torch::jit::Module& m, const std::string& prefix, std::vector<Target>& out) {
    for (const auto& p : m.named_parameters(/*recurse=*/false))
      if (p.value.defined()) out.push_back({prefix + p.name, p.value});
    for (const auto& b : m.named_buffers(/*recurse=*/false))
      if (b.value.defined()) out.push_back({prefix + b.name, b.value});
    for (const auto& c : m.named_children()) add(c.value, prefix + c.name + ".", out);
  }
};

}  // namespace statedict::detail
