#pragma once
// libFuzzer harness helpers: the readers take paths (they map files), so each input is written to a
// file in /dev/shm (or /tmp) first. Any statedict::Error is a clean refusal; anything else is a bug.
#include <statedict/statedict.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

namespace fuzz {

inline std::string scratch(const std::string& name) {
  const char* base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(base) + "/statedict_fuzz_" + std::to_string(::getpid()) + "_" + name;
}

inline std::string write(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string p = scratch(name);
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return p;
}

/// Reads the file and touches everything a user would: the tree, every tensor's bytes.
/// Both ways: tensors read with pread on first use (the default), and views of the mapping.
inline void exercise(const std::string& path) {
  for (const bool mapped : {false, true}) {
    try {
      const auto ck = statedict::read(path, statedict::ReadOptions{}.max_pickle_bytes(1 << 20).map_tensors(mapped));
      (void)ck.root().repr(200);
      for (const auto& t : ck.tensors()) (void)statedict::tensor_sha256(t.tensor);
    } catch (const statedict::Error&) {}
  }
}

}  // namespace fuzz
