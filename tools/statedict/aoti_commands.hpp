#pragma once
// The CLI's AOTInductor part, built where LibTorch has the package loader (STATEDICT_CLI_AOTI):
// `inspect --trust-package PKG.pt2` lists what the package's loader holds, `diff --trust-package
// PKG.pt2 CKPT` reports a load into it. Opening a package with LibTorch's loader loads its compiled
// .so, which runs the package's code: statedict never does that unasked, hence the flag.
#include <statedict/aoti.hpp>
#include <statedict/detail/formats/zip.hpp>
#include <statedict/inspect.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace statedict_cli_aoti {

/// The models an AOTInductor package holds (its folders under data/aotinductor/), read from the
/// zip's directory alone; empty when the file is no such package.
inline std::vector<std::string> package_models(const std::string& path) {
  std::set<std::string> models;
  try {
    const statedict::detail::ZipArchive zip(statedict::detail::MappedFile::open(path, /*pread_only=*/true));
    const std::string prefix = zip.top() + "/data/aotinductor/";
    for (const auto& e : zip.entries()) {
      if (e.name.compare(0, prefix.size(), prefix) != 0) continue;
      const std::size_t slash = e.name.find('/', prefix.size());
      if (slash != std::string::npos && slash > prefix.size()) models.insert(e.name.substr(prefix.size(), slash - prefix.size()));
    }
  } catch (const std::exception&) {
    return {};  // not a zip: not a package either
  }
  return {models.begin(), models.end()};
}

/// Opens the package with LibTorch's loader; its failures become statedict errors naming the file.
inline std::unique_ptr<torch::inductor::AOTIModelPackageLoader> open(const std::string& path, const std::string& model) {
  const std::vector<std::string> models = package_models(path);
  if (models.empty())
    throw statedict::Error("aoti.package", path, "", "not an AOTInductor package (no data/aotinductor/<model>/ folder in a zip)");
  if (std::find(models.begin(), models.end(), model) == models.end()) {
    std::string list;
    for (const auto& m : models) list += (list.empty() ? "" : ", ") + m;
    throw statedict::Error("aoti.package", path, "model " + model, "the package has no such model (it holds: " + list + "); pass --model");
  }
  try {
    return std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, model);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));  // LibTorch appends a C++ backtrace
    throw statedict::Error("aoti.package", path, "model " + model, "LibTorch's AOTIModelPackageLoader could not open it: " + what);
  }
}

/// `statedict inspect --trust-package PKG.pt2`.
inline int inspect(const std::string& path, const std::string& model, bool json, bool hash) {
  auto loader = open(path, model);
  const std::vector<statedict::NamedTensor> constants = statedict::state_dict(*loader);
  const auto metadata = loader->get_metadata();
  const std::map<std::string, std::string> meta(metadata.begin(), metadata.end());
  if (json) {
    nlohmann::ordered_json out;
    out["file"] = path;
    out["format"] = "aoti_package";
    out["models"] = package_models(path);
    out["model"] = model;
    out["metadata"] = meta;
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& t : constants) {
      nlohmann::ordered_json e;
      e["key"] = t.key;
      e["dtype"] = t.dtype();
      e["shape"] = t.tensor.sizes().vec();
      if (hash) e["sha256"] = statedict::tensor_sha256(t.tensor);
      list.push_back(std::move(e));
    }
    out["constants"] = std::move(list);
    std::cout << out.dump(1) << "\n";
    return 0;
  }
  std::string models;
  for (const auto& m : package_models(path)) models += (models.empty() ? "" : ", ") + m;
  std::cout << path << ": AOTInductor package, opened with LibTorch's loader (models: " << models << "; shown: " << model << ")\n";
  if (!meta.empty()) {
    std::cout << "metadata:";
    for (const auto& [k, v] : meta) std::cout << " " << k << "=" << v;
    std::cout << "\n";
  }
  std::cout << "\n" << constants.size() << " updatable constant(s), what statedict::load writes:\n";
  std::size_t wk = 3, wd = 5;
  for (const auto& t : constants) {
    wk = std::max(wk, t.key.size());
    wd = std::max(wd, t.dtype().size());
  }
  std::cout << "key" << std::string(wk - 1, ' ') << "dtype" << std::string(wd - 3, ' ') << "shape" << (hash ? "          sha256" : "")
            << "\n";
  for (const auto& t : constants) {
    const std::string dt = t.dtype(), shape = statedict::shape_text(t.tensor.sizes());
    std::cout << t.key << std::string(wk - t.key.size() + 2, ' ') << dt << std::string(wd - dt.size() + 2, ' ') << shape;
    if (hash) std::cout << std::string(shape.size() < 15 ? 15 - shape.size() : 1, ' ') << statedict::tensor_sha256(t.tensor);
    std::cout << "\n";
  }
  std::cout << "\nAny other tensor of the exported model was folded into the compiled code at export: a checkpoint cannot change it.\n";
  return 0;
}

/// The one line the CLI adds to an error about a file that is an AOTInductor package.
inline void hint(const std::string& path) {
  if (path.empty() || package_models(path).empty()) return;
  std::cerr << "statedict: note: " << path
            << " is an AOTInductor package; --trust-package opens it with LibTorch's loader (which loads, and so runs, its "
               "compiled code) to list or diff the constants it takes\n";
}

}  // namespace statedict_cli_aoti
