// The statedict command line tool: inspect, diff and convert checkpoints without Python.
#include <statedict/statedict.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <map>

namespace {

constexpr int exit_ok = 0, exit_not_ok = 1, exit_error = 2;

struct TreeSummary {
  std::size_t tensors = 0;
  std::uint64_t bytes = 0;
};

TreeSummary summarize(const statedict::Value& v) {
  TreeSummary s;
  for (const auto& t : v.tensors()) {
    ++s.tensors;
    s.bytes += static_cast<std::uint64_t>(t.tensor.numel()) * t.tensor.element_size();
  }
  return s;
}

std::string describe(const statedict::Value& v) {
  using statedict::Kind;
  if (v.kind() == Kind::tensor)
    return "tensor " + statedict::dtype_name(v.tensor().scalar_type()) + " " + statedict::shape_text(v.tensor().sizes());
  const TreeSummary s = summarize(v);
  std::string r = v.kind() == Kind::object ? v.type_name()
                  : v.kind() == Kind::dict || v.is_sequence() ? v.type_name() + " of " + std::to_string(v.size())
                                                              : v.type_name();
  if (s.tensors > 0) return r + ": " + std::to_string(s.tensors) + " tensors, " + statedict::bytes_text(s.bytes);
  return r + ": " + v.repr(70);
}

void print_human(const statedict::Checkpoint& ck, const statedict::Value& root, const std::string& select) {
  const auto tensors = root.tensors();
  std::uint64_t bytes = 0;
  for (const auto& t : tensors) bytes += static_cast<std::uint64_t>(t.tensor.numel()) * t.tensor.element_size();
  std::cout << "file:    " << ck.path() << "\n";
  std::cout << "format:  " << statedict::format_name(ck.format());
  if (!ck.module_class().empty()) std::cout << " (whole pickled module " << ck.module_class() << ")";
  std::cout << "\n";
  if (!select.empty()) std::cout << "select:  " << select << "\n";
  std::cout << "tensors: " << tensors.size() << " (" << statedict::bytes_text(bytes) << ")\n";
  for (const auto& [k, v] : ck.metadata()) std::cout << "metadata: " << k << " = " << v << "\n";
  // The top of the tree: what each top-level key holds, so nesting is visible at a glance.
  if (root.is_dict()) {
    std::size_t top_tensors = 0;
    std::vector<std::pair<std::string, std::string>> rows;
    for (const auto& [k, v] : root.items()) {
      if (v.is_tensor()) { ++top_tensors; continue; }
      rows.emplace_back(k.key_text(), describe(v));
    }
    if (!rows.empty()) {
      std::cout << "\ntop level:\n";
      std::size_t w = 0;
      for (const auto& r : rows) w = std::max(w, r.first.size());
      for (const auto& r : rows) std::cout << "  " << r.first << std::string(w - r.first.size() + 2, ' ') << r.second << "\n";
      if (top_tensors > 0) std::cout << "  (and " << top_tensors << " tensors at the top level)\n";
    }
  } else {
    std::cout << "\ntop level: " << describe(root) << "\n";
  }
  if (tensors.empty()) return;
  std::size_t wk = 3, wd = 5;
  for (const auto& t : tensors) {
    wk = std::max(wk, t.key.size());
    wd = std::max(wd, statedict::dtype_name(t.tensor.scalar_type()).size());
  }
  std::cout << "\n" << "key" << std::string(wk - 1, ' ') << "dtype" << std::string(wd - 3, ' ') << "shape\n";
  for (const auto& t : tensors) {
    const std::string dt = statedict::dtype_name(t.tensor.scalar_type());
    std::cout << t.key << std::string(wk - t.key.size() + 2, ' ') << dt << std::string(wd - dt.size() + 2, ' ')
              << statedict::shape_text(t.tensor.sizes()) << "\n";
  }
}

int run_inspect(const std::string& file, const std::string& select, bool json, bool hash) {
  const statedict::Checkpoint ck = statedict::read(file);
  const statedict::Value root = select.empty() ? ck.root() : ck.at(select);
  if (!json) {
    print_human(ck, root, select);
    return exit_ok;
  }
  nlohmann::ordered_json out;
  out["file"] = file;
  out["format"] = statedict::format_name(ck.format());
  if (!select.empty()) out["select"] = select;
  if (!ck.metadata().empty()) out["metadata"] = ck.metadata();
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& t : root.tensors()) {
    nlohmann::ordered_json e;
    e["key"] = t.key;
    e["dtype"] = statedict::dtype_name(t.tensor.scalar_type());
    e["shape"] = t.tensor.sizes().vec();
    if (hash) e["sha256"] = statedict::tensor_sha256(t.tensor);
    list.push_back(std::move(e));
  }
  out["tensors"] = std::move(list);
  std::cout << out.dump(1) << "\n";
  return exit_ok;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"statedict: inspect, diff and convert PyTorch checkpoints without Python"};
  app.set_version_flag("--version", std::string("statedict ") + statedict::version_string);
  app.require_subcommand(1);

  std::string file, select;
  bool json = false, hash = false;
  auto* inspect = app.add_subcommand("inspect", "Show what a checkpoint holds: the top of its tree, then key, dtype and shape of every tensor");
  inspect->add_option("FILE", file, "Checkpoint file (torch.save zip or legacy, safetensors, TorchScript, sharded index or its folder)")->required();
  inspect->add_option("--select", select, "Only the sub-tree at this dotted path, e.g. model or state_dict");
  inspect->add_flag("--json", json, "Machine-readable output: {file, format, tensors: [{key, dtype, shape, sha256}]}");
  inspect->add_flag("--hash", hash, "Add the SHA-256 of each tensor's contiguous little-endian bytes");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? exit_ok : exit_error;
  }
  try {
    if (*inspect) return run_inspect(file, select, json, hash);
    return exit_error;
  } catch (const statedict::Error& e) {
    std::cerr << "statedict: error: " << e.what() << "\n";
    return exit_error;
  } catch (const std::exception& e) {
    std::cerr << "statedict: error: " << file << ": " << e.what() << "\n";
    return exit_error;
  }
}
