#pragma once
// TorchScript archives (torch.jit.save): LibTorch's own reader is the right one; statedict presents
// their parameters and persistent buffers like a state dict. Included by <statedict/jit.hpp> only, so
// that a unit pays for <torch/script.h> only where TorchScript is used; including it makes
// statedict::read read TorchScript archives in the whole program.
#include <statedict/checkpoint.hpp>
#include <statedict/read.hpp>
#include <statedict/read_options.hpp>

#include <torch/script.h>

namespace statedict::detail {

inline void collect_script_tensors(const torch::jit::Module& m, const std::string& prefix, CheckpointData& cd, Node& root,
                                   std::size_t depth) {
  if (depth > cd.max_depth) throw Error("limit.depth", cd.path, prefix, "TorchScript module nested too deeply");
  auto add = [&](const std::string& name, const at::Tensor& t) {
    Node k;
    k.kind = Kind::string;
    k.text = prefix + name;
    Node v;
    v.kind = Kind::tensor;
    v.tensor = t;
    const auto ki = cd.tree.add(std::move(k));
    root.kv().emplace_back(ki, cd.tree.add(std::move(v)));
  };
  for (const auto& p : m.named_parameters(false)) add(p.name, p.value);
  for (const auto& b : m.named_buffers(false)) add(b.name, b.value);
  for (const auto& c : m.named_children()) collect_script_tensors(c.value, prefix + c.name + ".", cd, root, depth + 1);
}

inline std::shared_ptr<CheckpointData> read_torchscript(const std::string& path, const ReadOptions& opts) {
  auto cd = std::make_shared<CheckpointData>();
  cd->format = Format::torchscript;
  cd->path = path;
  cd->max_depth = opts.max_depth();
  torch::jit::Module m;
  try {
    m = torch::jit::load(path, c10::Device(c10::kCPU));
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    throw Error("torchscript.load", path, "", "LibTorch could not load the TorchScript archive: " + msg.substr(0, msg.find('\n')));
  }
  Node root;
  root.kind = Kind::dict;
  collect_script_tensors(m, "", *cd, root, 0);
  cd->module_class = m.type()->name() ? m.type()->name()->qualifiedName() : std::string();
  cd->root = cd->tree.add(std::move(root));
  return cd;
}

/// Set before main in every program that includes this header.
inline const bool script_reader_set = (script_reader() = &read_torchscript, true);

}  // namespace statedict::detail
