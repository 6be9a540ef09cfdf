#pragma once
// What the test programs outside Catch2 share (light/, separate/: each one unit or program built its
// own way, run by ctest with the fixtures folder): an "ok"/"FAILED" line per check, the exit status.
#include <cstdio>
#include <cstdlib>
#include <string>

namespace sdtest {

inline int failures = 0;

inline void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
  failures += ok ? 0 : 1;
}

/// argv[1], the fixtures folder; without it, the usage and exit status 2.
inline std::string fixtures_dir(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
    std::exit(2);
  }
  return argv[1];
}

inline int exit_status() { return failures == 0 ? 0 : 1; }

}  // namespace sdtest
