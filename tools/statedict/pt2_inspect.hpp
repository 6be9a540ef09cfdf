#pragma once
// What `statedict inspect` adds for a .pt2: an exported program's constants (not part of its state
// dict), and what an AOTInductor package holds, also where its weights are compiled into the .so
// and statedict::read refuses it.
#include <statedict/detail/formats/pt2.hpp>

#include <nlohmann/json.hpp>

#include <iostream>
#include <optional>
#include <string>

namespace pt2cli {

/// The package a file is, or nothing when it is not a PT2 archive (or not a zip at all: the
/// ordinary read then says what it is).
inline std::optional<statedict::detail::Pt2Package> package_of(const std::string& path) {
  using namespace statedict::detail;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return std::nullopt;
  auto f = MappedFile::open(path);
  if (!ZipArchive::looks_like_zip(*f)) return std::nullopt;
  ZipArchive z(f);
  if (!is_pt2_archive(z)) return std::nullopt;
  return describe_pt2(z, statedict::ReadOptions{});
}

/// Whether statedict::read refuses the package because every model's weights are in its .so.
inline bool weights_unreadable(const statedict::detail::Pt2Package& pkg) {
  if (!pkg.programs.empty() || pkg.aoti.empty()) return false;
  for (const auto& m : pkg.aoti)
    if (m.weights != statedict::detail::AotiModel::Weights::in_library) return false;
  return true;
}

inline const char* where_text(statedict::detail::AotiModel::Weights w) {
  using W = statedict::detail::AotiModel::Weights;
  return w == W::files ? "in weight files (pickle_weights)" : w == W::blob ? "in one binary blob (binary_blob)" : "compiled into the .so";
}

inline std::string dtype_text(statedict::detail::Dtype d) { return d != nullptr ? d->torch : "?"; }

inline void print_constants(const std::vector<statedict::detail::AotiConstant>& cs, const std::string& indent) {
  std::size_t w = 3;
  for (const auto& c : cs) w = std::max(w, c.fqn.size());
  for (const auto& c : cs)
    std::cout << indent << c.fqn << std::string(w - c.fqn.size() + 2, ' ') << dtype_text(c.dtype) << "  " << statedict::shape_text(c.sizes)
              << (c.from_folded ? "  (folded at export: not a state-dict tensor)" : "") << "\n";
}

/// The lines after the ordinary listing (or instead of it, for a package read refuses).
inline void print_human(const statedict::detail::Pt2Package& pkg) {
  for (const auto& p : pkg.programs) {
    if (p.constants.empty()) continue;
    std::cout << "\nconstants of program '" << p.name << "' (" << p.constants.size()
              << ", not in its state dict; ReadOptions::pt2_constants reads them):\n";
    std::size_t w = 3;
    for (const auto& c : p.constants) w = std::max(w, c.fqn.size());
    for (const auto& c : p.constants)
      std::cout << "  " << c.fqn << std::string(w - c.fqn.size() + 2, ' ')
                << (c.tensor ? dtype_text(c.dtype) + "  " + statedict::shape_text(c.sizes) : std::string("custom object")) << "\n";
  }
  for (const auto& m : pkg.aoti) {
    std::cout << "\nAOTInductor model '" << m.name << "': " << (m.libraries.empty() ? std::string("no .so") : m.libraries.front())
              << "; constants " << where_text(m.weights) << "\n";
    if (m.weights == statedict::detail::AotiModel::Weights::in_library)
      std::cout << "  " << statedict::detail::aoti_compiled_in_text(pkg, m) << "\n";
    else if (m.weights == statedict::detail::AotiModel::Weights::blob)
      std::cout << "  the blob " << m.blob << " has no header: its constants are found through the wrapper source's list\n";
    if (!m.constants.empty()) {
      std::cout << "  constants (" << m.constants.size()
                << (m.weights == statedict::detail::AotiModel::Weights::files ? "" : ", as the wrapper source lists them") << "):\n";
      print_constants(m.constants, "    ");
    }
  }
}

inline nlohmann::ordered_json to_json(const statedict::detail::Pt2Package& pkg) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  nlohmann::ordered_json programs = nlohmann::ordered_json::array();
  for (const auto& p : pkg.programs) {
    nlohmann::ordered_json cs = nlohmann::ordered_json::array();
    for (const auto& c : p.constants)
      cs.push_back(c.tensor ? nlohmann::ordered_json{{"key", c.fqn}, {"dtype", dtype_text(c.dtype)}, {"shape", c.sizes}}
                            : nlohmann::ordered_json{{"key", c.fqn}, {"type", "custom object"}});
    programs.push_back({{"name", p.name}, {"constants", std::move(cs)}});
  }
  nlohmann::ordered_json aoti = nlohmann::ordered_json::array();
  for (const auto& m : pkg.aoti) {
    using W = statedict::detail::AotiModel::Weights;
    nlohmann::ordered_json cs = nlohmann::ordered_json::array();
    for (const auto& c : m.constants)
      cs.push_back({{"key", c.fqn}, {"name", c.name}, {"dtype", dtype_text(c.dtype)}, {"shape", c.sizes}, {"from_folded", c.from_folded}});
    nlohmann::ordered_json e = {{"name", m.name},
                                {"libraries", m.libraries},
                                {"weights", m.weights == W::files  ? "files"
                                            : m.weights == W::blob ? "blob"
                                                                   : "in_library"},
                                {"constants", std::move(cs)}};
    if (m.weights == W::in_library) e["message"] = statedict::detail::aoti_compiled_in_text(pkg, m);
    aoti.push_back(std::move(e));
  }
  if (!programs.empty()) out["programs"] = std::move(programs);
  if (!aoti.empty()) out["aoti"] = std::move(aoti);
  return out;
}

/// inspect of a package statedict::read refuses (its weights are compiled into its .so).
inline void print_package_only(const std::string& file, const statedict::detail::Pt2Package& pkg, bool json) {
  const char* format = statedict::format_name(statedict::Format::aoti_package);
  if (!json) {
    std::cout << "file:    " << file << "\nformat:  " << format << "\ntensors: 0\n";
    print_human(pkg);
    return;
  }
  nlohmann::ordered_json out = {{"file", file}, {"format", format}};
  out["tensors"] = nlohmann::ordered_json::array();
  out.update(to_json(pkg));
  std::cout << out.dump(1) << "\n";
}

}  // namespace pt2cli
