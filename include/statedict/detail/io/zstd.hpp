#pragma once
// zstd frames (DCP's "stream.zstd" transform), decoded by libzstd where statedict is built with it:
// CMake defines STATEDICT_HAVE_ZSTD and links libzstd when it finds it. Without it, a compressed
// item is refused with an error that says how to get the support.
//
// The output is bounded by the caller, from what the metadata says the item holds: one-shot
// decoding writes straight into that buffer (no window buffer of the decoder's choosing), and a
// frame that declares or inflates to more is refused. A frame's own content size is never trusted.
#include <statedict/error.hpp>

#include <cstdint>
#include <string>

#ifndef STATEDICT_HAVE_ZSTD
#define STATEDICT_HAVE_ZSTD 0
#endif
#if STATEDICT_HAVE_ZSTD
#include <memory>
#include <zstd.h>
#include <zstd_errors.h>
#if ZSTD_VERSION_NUMBER < 10400
#error "statedict needs zstd 1.4 or later (or build without STATEDICT_HAVE_ZSTD)"
#endif
#endif

namespace statedict::detail {

inline constexpr bool have_zstd = STATEDICT_HAVE_ZSTD != 0;

/// The zstd magic number, little-endian: what a compressed item starts with.
inline bool looks_like_zstd(const std::uint8_t* p, std::size_t n) {
  return n >= 4 && p[0] == 0x28 && p[1] == 0xB5 && p[2] == 0x2F && p[3] == 0xFD;
}

/// Decodes the zstd frames of [src, src+n) into dst, which holds at most `cap` bytes, and returns
/// the decoded size. `file` and `where` name the item in errors.
inline std::size_t zstd_decode(const std::uint8_t* src, std::size_t n, std::uint8_t* dst, std::size_t cap, const std::string& file,
                               const std::string& where) {
#if STATEDICT_HAVE_ZSTD
  if (n == 0) throw Error("zstd.corrupt", file, where, "the item is empty, not a zstd frame");
  // Each frame's header first: a declared size past the bound is named with its frame's offset.
  for (std::size_t at = 0, declared = 0; at < n;) {
    const unsigned long long size = ZSTD_getFrameContentSize(src + at, n - at);
    if (size == ZSTD_CONTENTSIZE_ERROR)
      throw Error("zstd.corrupt", file, where + ", compressed byte " + std::to_string(at), "not a zstd frame (bad magic number or header)");
    if (size != ZSTD_CONTENTSIZE_UNKNOWN) {
      if (size > cap - declared)
        throw Error("zstd.too_large", file, where + ", compressed byte " + std::to_string(at),
                    "the zstd frame declares " + std::to_string(size) + " bytes, more than the " + std::to_string(cap - declared) +
                        " the metadata leaves for it");
      declared += static_cast<std::size_t>(size);
    }
    const std::size_t frame = ZSTD_findFrameCompressedSize(src + at, n - at);
    if (ZSTD_isError(frame))
      throw Error("zstd.corrupt", file, where + ", compressed byte " + std::to_string(at),
                  std::string("cannot delimit the zstd frame: ") + ZSTD_getErrorName(frame));
    at += frame;
  }
  std::unique_ptr<ZSTD_DCtx, std::size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!ctx) throw Error("zstd.corrupt", file, where, "cannot create a zstd decoder (out of memory)");
  const std::size_t got = ZSTD_decompressDCtx(ctx.get(), dst, cap, src, n);
  if (ZSTD_isError(got)) {
    if (ZSTD_getErrorCode(got) == ZSTD_error_dstSize_tooSmall)
      throw Error("zstd.too_large", file, where,
                  "the zstd data inflates past the " + std::to_string(cap) + " bytes the metadata says the item holds");
    throw Error("zstd.corrupt", file, where, std::string("corrupt zstd data: ") + ZSTD_getErrorName(got));
  }
  return got;
#else
  (void)src, (void)n, (void)dst, (void)cap;
  throw Error("zstd.unavailable", file, where,
              "the item is zstd-compressed (DCP's stream.zstd transform) and this program was built without zstd: install "
              "libzstd (Debian: libzstd-dev) and re-run CMake, which then links it and defines STATEDICT_HAVE_ZSTD (without "
              "CMake: define STATEDICT_HAVE_ZSTD=1 and link -lzstd)");
#endif
}

}  // namespace statedict::detail
