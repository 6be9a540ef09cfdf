// A program built as if libzstd were missing (what a consumer without it gets): DCP folders saved
// with the zstd transform are refused with zstd.unavailable, which says how to get the support; the
// others, the safetensors format among them, read as usual.
#undef STATEDICT_HAVE_ZSTD
#define STATEDICT_HAVE_ZSTD 0
#include <statedict/read.hpp>

#include "../program.hpp"

#include <cstdio>
#include <string>

using sdtest::check;

int main(int argc, char** argv) {
  const std::string dir = sdtest::fixtures_dir(argc, argv) + "/torch214/";
  check(!statedict::detail::have_zstd, "built without zstd");
  try {
    statedict::read(dir + "dcp_zstd_ranks");
    check(false, "a zstd folder is refused");
  } catch (const statedict::Error& e) {
    const std::string what = e.what();
    check(e.id() == "zstd.unavailable" && what.find("libzstd-dev") != std::string::npos && what.find("__") != std::string::npos,
          "a zstd folder is refused naming its file and how to get zstd: " + what);
  }
  try {
    const auto ck = statedict::read(dir + "dcp_st_single");
    check(ck.at("embed.weight").tensor().sizes() == c10::IntArrayRef({10, 6}), "the safetensors format reads without zstd");
  } catch (const statedict::Error& e) { check(false, std::string("the safetensors format reads without zstd: ") + e.what()); }
  return sdtest::exit_status();
}
