#pragma once
// A small, strict reader for the uncompressed zip archives torch.save writes. Every offset and length
// read from the file is checked against the file's size before use.
#include <statedict/detail/mapped_file.hpp>
#include <statedict/error.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace statedict::detail {

struct ZipEntry {
  std::string name;          // full name, e.g. "archive/data/0"
  std::uint64_t offset = 0;  // of the payload in the file
  std::uint64_t size = 0;
  std::uint16_t method = 0;  // 0 = stored; anything else is refused when the payload is read
};

class ZipArchive {
public:
  explicit ZipArchive(std::shared_ptr<MappedFile> file) : file_(std::move(file)) { parse(); }

  /// The single top-level folder every entry lives in ("archive", the file stem, ...).
  const std::string& top() const noexcept { return top_; }
  const std::vector<ZipEntry>& entries() const noexcept { return entries_; }

  /// Entry by name relative to the top folder ("data.pkl", "data/0"); nullptr when absent.
  const ZipEntry* find(const std::string& rel) const {
    auto it = by_name_.find(top_ + "/" + rel);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
  }
  /// The payload of a stored entry; a compressed one is refused (torch.save never compresses, and
  /// inflating is how zip bombs work).
  const std::uint8_t* payload(const ZipEntry& e) const {
    if (e.method != 0)
      fail("zip.compressed", e.name,
           "entry is compressed (method " + std::to_string(e.method) + "); torch.save writes stored entries only");
    return file_->data() + e.offset;
  }
  const std::string& path() const noexcept { return file_->path(); }

  static bool looks_like_zip(const MappedFile& f) { return f.size() >= 4 && rd32(f.data()) == 0x04034b50u; }

private:
  [[noreturn]] void fail(const std::string& id, const std::string& where, const std::string& why) const {
    throw Error(id, file_->path(), where, why);
  }
  static std::string at(std::uint64_t off) { return "offset " + std::to_string(off); }

  void parse() {
    const std::uint64_t n = file_->size();
    const std::uint8_t* d = file_->data();
    if (n < 22) fail("zip.truncated", "", "file too short for a zip archive (" + std::to_string(n) + " bytes)");
    // End of central directory: the last 22 bytes plus up to 64 KiB of comment.
    std::uint64_t eocd = UINT64_MAX;
    const std::uint64_t lowest = n >= 22 + 65535 ? n - 22 - 65535 : 0;
    for (std::uint64_t p = n - 22 + 1; p-- > lowest;) {
      if (rd32(d + p) == 0x06054b50u) {
        eocd = p;
        break;
      }
    }
    if (eocd == UINT64_MAX) fail("zip.no_directory", "", "end of central directory not found (truncated or not a zip)");
    std::uint64_t count = rd16(d + eocd + 10);
    std::uint64_t cd_size = rd32(d + eocd + 12);
    std::uint64_t cd_off = rd32(d + eocd + 16);
    // ZIP64: a locator sits right before the classic record.
    if (eocd >= 20 && rd32(d + eocd - 20) == 0x07064b50u) {
      std::uint64_t z64 = rd64(d + eocd - 20 + 8);
      std::uint64_t end;
      if (add_overflows(z64, 56, &end) || end > eocd - 20)
        fail("zip.bad_directory", at(eocd - 20), "ZIP64 end record offset " + std::to_string(z64) + " is past the end");
      if (rd32(d + z64) != 0x06064b50u) fail("zip.bad_directory", at(z64), "bad ZIP64 end record signature");
      count = rd64(d + z64 + 32);
      cd_size = rd64(d + z64 + 40);
      cd_off = rd64(d + z64 + 48);
    }
    std::uint64_t cd_end;
    if (add_overflows(cd_off, cd_size, &cd_end) || cd_end > n)
      fail("zip.bad_directory", at(eocd),
           "central directory (offset " + std::to_string(cd_off) + ", size " + std::to_string(cd_size) + ") lies past the end of the " +
               std::to_string(n) + "-byte file");
    if (count > cd_size / 46)
      fail("zip.bad_directory", at(eocd), "entry count " + std::to_string(count) + " does not fit the central directory");
    entries_.reserve(static_cast<std::size_t>(count));
    std::uint64_t p = cd_off;
    for (std::uint64_t i = 0; i < count; ++i) {
      if (p + 46 > cd_end || rd32(d + p) != 0x02014b50u)
        fail("zip.bad_directory", at(p), "central directory entry " + std::to_string(i) + " is malformed");
      const std::uint16_t method = rd16(d + p + 10);
      std::uint64_t csize = rd32(d + p + 20), usize = rd32(d + p + 24);
      const std::uint64_t name_len = rd16(d + p + 28), extra_len = rd16(d + p + 30), comment_len = rd16(d + p + 32);
      std::uint64_t local = rd32(d + p + 42);
      if (p + 46 + name_len + extra_len + comment_len > cd_end)
        fail("zip.bad_directory", at(p), "central directory entry " + std::to_string(i) + " runs past the directory");
      std::string name(reinterpret_cast<const char*>(d + p + 46), name_len);
      // ZIP64 extra field: the 64-bit values present are those whose 32-bit field is all ones.
      const std::uint8_t* x = d + p + 46 + name_len;
      for (std::uint64_t q = 0; q + 4 <= extra_len;) {
        const std::uint16_t id = rd16(x + q), len = rd16(x + q + 2);
        if (q + 4 + len > extra_len) fail("zip.bad_directory", at(p), "extra field of '" + name + "' runs past its entry");
        if (id == 0x0001) {
          std::uint64_t r = q + 4;
          auto take = [&](std::uint64_t& v) {
            if (v != 0xFFFFFFFFu) return;
            if (r + 8 > q + 4 + len) fail("zip.bad_directory", at(p), "ZIP64 field of '" + name + "' is too short");
            v = rd64(x + r);
            r += 8;
          };
          take(usize);
          take(csize);
          take(local);
        }
        q += 4u + len;
      }
      p += 46 + name_len + extra_len + comment_len;
      check_name(name);
      if (method == 0 && csize != usize) fail("zip.bad_entry", name, "stored entry with different compressed and uncompressed sizes");
      // The payload offset comes from the LOCAL header, whose extra field holds the alignment padding.
      std::uint64_t lh_end;
      if (add_overflows(local, 30, &lh_end) || lh_end > n)
        fail("zip.bad_entry", name, "local header offset " + std::to_string(local) + " is past the end");
      if (rd32(d + local) != 0x04034b50u) fail("zip.bad_entry", name, "bad local header signature at " + at(local));
      const std::uint64_t data_off = local + 30 + rd16(d + local + 26) + rd16(d + local + 28);
      std::uint64_t data_end;
      if (data_off > n || add_overflows(data_off, csize, &data_end) || data_end > n)
        fail("zip.truncated", name,
             "payload (" + std::to_string(csize) + " bytes at " + at(data_off) + ") lies past the end of the " + std::to_string(n) +
                 "-byte file");
      if (!by_name_.emplace(name, entries_.size()).second) fail("zip.duplicate", name, "entry appears twice");
      entries_.push_back(ZipEntry{name, data_off, usize, method});
    }
    if (entries_.empty()) fail("zip.empty", "", "archive has no entries");
  }

  void check_name(const std::string& name) {
    if (name.empty() || name.front() == '/' || name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
      fail("zip.bad_name", name, "unsafe entry name");
    std::size_t start = 0;
    while (start <= name.size()) {
      std::size_t end = name.find('/', start);
      if (end == std::string::npos) end = name.size();
      std::string part = name.substr(start, end - start);
      if (part == "..") fail("zip.bad_name", name, "entry name climbs out of the archive ('..')");
      start = end + 1;
    }
    const auto slash = name.find('/');
    if (slash == std::string::npos) fail("zip.bad_layout", name, "entry is not inside a top-level folder");
    std::string top = name.substr(0, slash);
    if (top_.empty())
      top_ = top;
    else if (top != top_)
      fail("zip.bad_layout", name, "entries under two top-level folders ('" + top_ + "' and '" + top + "')");
  }

  std::shared_ptr<MappedFile> file_;
  std::string top_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, std::size_t> by_name_;
};

}  // namespace statedict::detail
