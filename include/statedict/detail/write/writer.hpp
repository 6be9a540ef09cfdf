#pragma once
// Writing files safely: a temporary file in the destination's folder, renamed over it only when
// complete; a zip writer that lays records out the way torch.save does (stored, 64-byte aligned,
// ZIP64 when needed); CRC-32.
#include <statedict/detail/io/mapped_file.hpp>
#include <statedict/error.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace statedict::detail {

/// CRC-32 (IEEE, as zip uses), slicing by 8.
class Crc32 {
public:
  void update(const void* data, std::size_t n) {
    static const auto tables = make_tables();
    const auto* p = static_cast<const std::uint8_t*>(data);
    std::uint32_t c = ~crc_;
    while (n >= 8) {
      const std::uint32_t lo = rd32(p) ^ c, hi = rd32(p + 4);
      c = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^ tables[4][lo >> 24] ^ tables[3][hi & 0xff] ^
          tables[2][(hi >> 8) & 0xff] ^ tables[1][(hi >> 16) & 0xff] ^ tables[0][hi >> 24];
      p += 8;
      n -= 8;
    }
    while (n-- > 0) c = tables[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    crc_ = ~c;
  }
  std::uint32_t value() const { return crc_; }

private:
  static std::array<std::array<std::uint32_t, 256>, 8> make_tables() {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    return t;
  }
  std::uint32_t crc_ = 0;
};

/// A file written under a temporary name and renamed into place by commit(). Destroyed without a
/// commit, it removes the temporary: a failed write never leaves half a file or clobbers the old one.
class AtomicFile {
public:
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    std::filesystem::path p(path_);
    std::string dir = p.parent_path().string();
    if (dir.empty()) dir = ".";
    std::string templ = (std::filesystem::path(dir) / ("." + p.filename().string() + ".tmp-XXXXXX")).string();
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    fd_ = ::mkstemp(buf.data());
    if (fd_ < 0) throw Error("io.write", path_, "", std::string("cannot create a temporary file next to it: ") + std::strerror(errno));
    tmp_ = buf.data();
    ::fchmod(fd_, 0644);
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
  }

  void write(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    if (n < 65536 && buffer_.size() + n <= (1u << 20)) {
      buffer_.insert(buffer_.end(), p, p + n);
    } else {
      flush();
      raw_write(p, n);
    }
    offset_ += n;
  }
  void write(const std::string& s) { write(s.data(), s.size()); }
  std::uint64_t offset() const { return offset_; }

  void commit() {
    flush();
    if (::fsync(fd_) != 0) fail("fsync");
    if (::close(fd_) != 0) {
      fd_ = -1;
      fail("close");
    }
    fd_ = -1;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename");
    committed_ = true;
  }
  const std::string& path() const { return path_; }

private:
  [[noreturn]] void fail(const char* what) { throw Error("io.write", path_, "", std::string(what) + " failed: " + std::strerror(errno)); }
  void flush() {
    if (!buffer_.empty()) raw_write(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  void raw_write(const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min<std::size_t>(n, 1u << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write");
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  std::uint64_t offset_ = 0;
  std::vector<std::uint8_t> buffer_;
};

inline void put16(std::string& s, std::uint16_t v) {
  s += static_cast<char>(v & 0xff);
  s += static_cast<char>(v >> 8);
}
inline void put32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void put64(std::string& s, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}

/// Writes a zip of stored entries whose payloads start on 64-byte boundaries, as torch.save does.
class ZipWriter {
public:
  explicit ZipWriter(AtomicFile& out) : out_(out) {}

  void add(const std::string& name, const void* data, std::uint64_t n) {
    Crc32 crc;
    crc.update(data, static_cast<std::size_t>(n));
    const std::uint64_t offset = out_.offset();
    const bool big = n >= 0xFFFFFFFFu;
    std::string h;
    put32(h, 0x04034b50u);
    put16(h, big ? 45 : 20);
    put16(h, 0);     // flags
    put16(h, 0);     // stored
    put16(h, 0);     // time
    put16(h, 0x21);  // date: 1980-01-01
    put32(h, crc.value());
    put32(h, big ? 0xFFFFFFFFu : static_cast<std::uint32_t>(n));
    put32(h, big ? 0xFFFFFFFFu : static_cast<std::uint32_t>(n));
    put16(h, static_cast<std::uint16_t>(name.size()));
    std::string extra;
    if (big) {
      put16(extra, 0x0001);
      put16(extra, 16);
      put64(extra, n);
      put64(extra, n);
    }
    // Padding extra field ("FB", as PyTorch's writer names it) so the payload is 64-byte aligned.
    const std::uint64_t base = offset + 30 + name.size() + extra.size();
    if (base % 64 != 0) {
      const std::uint64_t pad = (64 - (base + 4) % 64) % 64;
      put16(extra, 0x4246);
      put16(extra, static_cast<std::uint16_t>(pad));
      extra.append(static_cast<std::size_t>(pad), 'Z');
    }
    put16(h, static_cast<std::uint16_t>(extra.size()));
    h += name;
    h += extra;
    out_.write(h);
    out_.write(data, static_cast<std::size_t>(n));
    entries_.push_back({name, crc.value(), n, offset});
  }

  void finish() {
    const std::uint64_t cd_offset = out_.offset();
    for (const auto& e : entries_) {
      const bool z64 = e.size >= 0xFFFFFFFFu || e.offset >= 0xFFFFFFFFu;
      std::string c;
      put32(c, 0x02014b50u);
      put16(c, 45);
      put16(c, z64 ? 45 : 20);
      put16(c, 0);
      put16(c, 0);
      put16(c, 0);
      put16(c, 0x21);
      put32(c, e.crc);
      put32(c, e.size >= 0xFFFFFFFFu ? 0xFFFFFFFFu : static_cast<std::uint32_t>(e.size));
      put32(c, e.size >= 0xFFFFFFFFu ? 0xFFFFFFFFu : static_cast<std::uint32_t>(e.size));
      put16(c, static_cast<std::uint16_t>(e.name.size()));
      std::string extra;
      if (z64) {
        put16(extra, 0x0001);
        std::string fields;
        if (e.size >= 0xFFFFFFFFu) {
          put64(fields, e.size);
          put64(fields, e.size);
        }
        if (e.offset >= 0xFFFFFFFFu) put64(fields, e.offset);
        put16(extra, static_cast<std::uint16_t>(fields.size()));
        extra += fields;
      }
      put16(c, static_cast<std::uint16_t>(extra.size()));
      put16(c, 0);  // comment
      put16(c, 0);  // disk
      put16(c, 0);  // internal attributes
      put32(c, 0);  // external attributes
      put32(c, e.offset >= 0xFFFFFFFFu ? 0xFFFFFFFFu : static_cast<std::uint32_t>(e.offset));
      c += e.name;
      c += extra;
      out_.write(c);
    }
    const std::uint64_t cd_size = out_.offset() - cd_offset;
    const bool z64 = entries_.size() >= 0xFFFF || cd_offset >= 0xFFFFFFFFu || cd_size >= 0xFFFFFFFFu;
    std::string t;
    if (z64) {
      const std::uint64_t z64_offset = out_.offset();
      put32(t, 0x06064b50u);
      put64(t, 44);
      put16(t, 45);
      put16(t, 45);
      put32(t, 0);
      put32(t, 0);
      put64(t, entries_.size());
      put64(t, entries_.size());
      put64(t, cd_size);
      put64(t, cd_offset);
      put32(t, 0x07064b50u);
      put32(t, 0);
      put64(t, z64_offset);
      put32(t, 1);
    }
    put32(t, 0x06054b50u);
    put16(t, 0);
    put16(t, 0);
    put16(t, z64 ? 0xFFFF : static_cast<std::uint16_t>(entries_.size()));
    put16(t, z64 ? 0xFFFF : static_cast<std::uint16_t>(entries_.size()));
    put32(t, z64 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(cd_size));
    put32(t, z64 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(cd_offset));
    put16(t, 0);
    out_.write(t);
  }

private:
  struct Entry {
    std::string name;
    std::uint32_t crc;
    std::uint64_t size, offset;
  };
  AtomicFile& out_;
  std::vector<Entry> entries_;
};

}  // namespace statedict::detail
