#pragma once
// Shared by the test files: fixture paths, expected listings written by generate.py, file helpers.
#include <statedict/statedict.hpp>

#include "catch.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sdtest {

inline std::string fixture(const std::string& name) { return std::string(STATEDICT_FIXTURES) + "/" + name; }

/// generate.py's listing of fixture `name` ("x.pt" under tests/fixtures, "torch2/x.pt" under torch2).
inline nlohmann::json expected_listing(const std::string& name) {
  const auto slash = name.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : name.substr(0, slash + 1);
  std::ifstream in(fixture(dir + "expected/" + name.substr(dir.size()) + ".json"));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

/// The checkpoint's tensors in the shape of generate.py's listing.
inline nlohmann::json listing(const statedict::Value& root) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : root.tensors())
    out.push_back({{"key", t.key}, {"dtype", t.dtype()}, {"shape", t.shape()}, {"sha256", statedict::tensor_sha256(t.tensor)}});
  return out;
}

/// A module's parameters and buffers in the same shape (state_dict order).
inline nlohmann::json module_listing(torch::nn::Module& m) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : statedict::detail::module_targets(m))
    out.push_back({{"key", t.key},
                   {"dtype", statedict::dtype_name(t.tensor.scalar_type())},
                   {"shape", t.tensor.sizes().vec()},
                   {"sha256", statedict::tensor_sha256(t.tensor)}});
  return out;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "statedict_tests";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

inline std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string p = temp_path(name);
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p;
}

/// The statedict::Error id thrown by f, or "" when nothing was thrown.
template <class F> std::string error_id(F&& f) {
  try {
    f();
  } catch (const statedict::Error& e) { return e.id(); }
  return "";
}

/// The message of the statedict::Error thrown by f, or "" when nothing was thrown.
template <class F> std::string error_text(F&& f) {
  try {
    f();
  } catch (const statedict::Error& e) { return e.what(); }
  return "";
}

}  // namespace sdtest
