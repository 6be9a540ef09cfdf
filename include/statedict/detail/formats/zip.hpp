#pragma once
// A small, strict reader for the uncompressed zip archives torch.save writes. Every offset and length
// read from the file is checked against the file's size before use.
#include <statedict/detail/io/mapped_file.hpp>
#include <statedict/detail/key_index.hpp>
#include <statedict/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
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
  explicit ZipArchive(std::shared_ptr<MappedFile> file) : file_(std::move(file)), length_(file_->size()) { parse(); }
  /// A zip stored inside a larger file at [base, base+length) (torch.distributed.checkpoint keeps one
  /// per chunk in its .distcp files); the caller has checked the range lies inside the file.
  ZipArchive(std::shared_ptr<MappedFile> file, std::uint64_t base, std::uint64_t length)
      : file_(std::move(file)), base_(base), length_(length) {
    parse();
  }

  // The index views the entries' names: moving keeps them where they are, a copy would not.
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;
  ZipArchive(ZipArchive&&) noexcept = default;
  ZipArchive& operator=(ZipArchive&&) noexcept = default;

  /// The single top-level folder every entry lives in ("archive", the file stem, ...).
  const std::string& top() const noexcept { return top_; }
  const std::vector<ZipEntry>& entries() const noexcept { return entries_; }

  /// Entry by name relative to the top folder ("data.pkl", "data/0"); nullptr when absent.
  const ZipEntry* find(std::string_view rel) const {
    const std::size_t i = by_name_.find(rel);
    return i == KeyIndex::none ? nullptr : &entries_[i];
  }
  /// The payload of a stored entry; a compressed one is refused (torch.save never compresses, and
  /// inflating is how zip bombs work).
  const std::uint8_t* payload(const ZipEntry& e) const {
    if (e.method != 0)
      fail("zip.compressed", e.name,
           "entry is compressed (method " + std::to_string(e.method) + "); torch.save writes stored entries only");
    return file_->data() + e.offset;
  }
  /// The bytes of a stored entry, read with pread (for records the reader parses: data.pkl,
  /// version, byteorder), so that reading a checkpoint maps none of its tensor pages.
  std::string read(const ZipEntry& e) const {
    payload(e);  // refuses a compressed entry
    std::string out(static_cast<std::size_t>(e.size), '\0');
    if (!out.empty() && !file_->read_at(out.data(), out.size(), e.offset))
      fail("io.read", e.name, std::string("cannot read the record: ") + std::strerror(errno));
    return out;
  }
  const std::string& path() const noexcept { return file_->path(); }

  static bool looks_like_zip(const MappedFile& f) { return f.head_size() >= 4 && rd32(f.head()) == 0x04034b50u; }
  const std::shared_ptr<MappedFile>& file() const noexcept { return file_; }

private:
  [[noreturn]] void fail(const std::string& id, const std::string& where, const std::string& why) const {
    throw Error(id, file_->path(), where, why);
  }
  std::string at(std::uint64_t off) const { return "offset " + std::to_string(base_ + off); }

  /// Reads spans of the file with pread through a small buffer. Parsing never touches the mapping:
  /// a touch maps the page-cache folio around it (up to 2 MiB of tensor bytes) into our RSS.
  class Window {
  public:
    Window(const MappedFile& f, std::uint64_t base, std::uint64_t length) : f_(f), base_(base), length_(length) {}
    /// [off, off+len) of the archive, which the caller has checked lies inside it.
    const std::uint8_t* get(std::uint64_t off, std::size_t len) {
      if (off >= start_ && off - start_ + len <= buf_.size()) return buf_.data() + (off - start_);
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(std::max<std::size_t>(len, 256u << 10), length_ - off));
      buf_.resize(want);
      if (!f_.read_at(buf_.data(), want, base_ + off))
        throw Error("io.read", f_.path(), "offset " + std::to_string(base_ + off), std::string("cannot read: ") + std::strerror(errno));
      start_ = off;
      return buf_.data();
    }

  private:
    const MappedFile& f_;
    std::uint64_t base_, length_;
    std::vector<std::uint8_t> buf_;
    std::uint64_t start_ = 0;
  };

  void parse() {
    const std::uint64_t n = length_;
    if (n < 22) fail("zip.truncated", "", "file too short for a zip archive (" + std::to_string(n) + " bytes)");
    Window w(*file_, base_, length_);
    // End of central directory: the last 22 bytes plus up to 64 KiB of comment.
    std::uint64_t eocd = UINT64_MAX;
    const std::uint64_t lowest = n >= 22 + 65535 ? n - 22 - 65535 : 0;
    const std::uint8_t* tail = w.get(lowest, static_cast<std::size_t>(n - lowest));
    for (std::uint64_t p = n - 22 + 1; p-- > lowest;) {
      if (rd32(tail + (p - lowest)) == 0x06054b50u) {
        eocd = p;
        break;
      }
    }
    if (eocd == UINT64_MAX) fail("zip.no_directory", "", "end of central directory not found (truncated or not a zip)");
    const std::uint8_t* e = tail + (eocd - lowest);
    std::uint64_t count = rd16(e + 10);
    std::uint64_t cd_size = rd32(e + 12);
    std::uint64_t cd_off = rd32(e + 16);
    // ZIP64: a locator sits right before the classic record.
    if (eocd >= lowest + 20 && rd32(e - 20) == 0x07064b50u) {
      std::uint64_t z64 = rd64(e - 20 + 8);
      std::uint64_t end;
      if (add_overflows(z64, 56, &end) || end > eocd - 20)
        fail("zip.bad_directory", at(eocd - 20), "ZIP64 end record offset " + std::to_string(z64) + " is past the end");
      const std::uint8_t* z = w.get(z64, 56);
      if (rd32(z) != 0x06064b50u) fail("zip.bad_directory", at(z64), "bad ZIP64 end record signature");
      count = rd64(z + 32);
      cd_size = rd64(z + 40);
      cd_off = rd64(z + 48);
    }
    std::uint64_t cd_end;
    if (add_overflows(cd_off, cd_size, &cd_end) || cd_end > n)
      fail("zip.bad_directory", at(eocd),
           "central directory (offset " + std::to_string(cd_off) + ", size " + std::to_string(cd_size) + ") lies past the end of the " +
               std::to_string(n) + "-byte file");
    if (count > cd_size / 46)
      fail("zip.bad_directory", at(eocd), "entry count " + std::to_string(count) + " does not fit the central directory");
    entries_.reserve(static_cast<std::size_t>(count));
    // Central entries first (one window over the directory), then the local headers they point to.
    struct Central {
      std::uint64_t local, csize;
    };
    std::vector<Central> central;
    central.reserve(static_cast<std::size_t>(count));
    std::uint64_t p = cd_off;
    for (std::uint64_t i = 0; i < count; ++i) {
      if (p + 46 > cd_end) fail("zip.bad_directory", at(p), "central directory entry " + std::to_string(i) + " is malformed");
      const std::uint8_t* c = w.get(p, 46);
      if (rd32(c) != 0x02014b50u) fail("zip.bad_directory", at(p), "central directory entry " + std::to_string(i) + " is malformed");
      const std::uint16_t method = rd16(c + 10);
      std::uint64_t csize = rd32(c + 20), usize = rd32(c + 24);
      const std::uint64_t name_len = rd16(c + 28), extra_len = rd16(c + 30), comment_len = rd16(c + 32);
      std::uint64_t local = rd32(c + 42);
      if (p + 46 + name_len + extra_len + comment_len > cd_end)
        fail("zip.bad_directory", at(p), "central directory entry " + std::to_string(i) + " runs past the directory");
      c = w.get(p, static_cast<std::size_t>(46 + name_len + extra_len));
      std::string name(reinterpret_cast<const char*>(c + 46), name_len);
      // ZIP64 extra field: the 64-bit values present are those whose 32-bit field is all ones.
      const std::uint8_t* x = c + 46 + name_len;
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
      entries_.push_back(ZipEntry{std::move(name), 0, usize, method});
      central.push_back({local, csize});
    }
    if (entries_.empty()) fail("zip.empty", "", "archive has no entries");
    // Indexed by the name below the top folder (every entry has one), once the entries stay put.
    std::vector<std::string_view> relative;
    relative.reserve(entries_.size());
    for (const auto& en : entries_) relative.push_back(std::string_view(en.name).substr(top_.size() + 1));
    by_name_ = KeyIndex(std::move(relative));
    if (!by_name_.duplicates().empty()) fail("zip.duplicate", entries_[by_name_.duplicates().front().second].name, "entry appears twice");
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const std::string& name = entries_[i].name;
      const std::uint64_t local = central[i].local, csize = central[i].csize;
      // The payload offset comes from the LOCAL header, whose extra field holds the alignment padding.
      std::uint64_t lh_end;
      if (add_overflows(local, 30, &lh_end) || lh_end > n)
        fail("zip.bad_entry", name, "local header offset " + std::to_string(local) + " is past the end");
      const std::uint8_t* lh = w.get(local, 30);
      if (rd32(lh) != 0x04034b50u) fail("zip.bad_entry", name, "bad local header signature at " + at(local));
      const std::uint64_t data_off = local + 30 + rd16(lh + 26) + rd16(lh + 28);
      std::uint64_t data_end;
      if (data_off > n || add_overflows(data_off, csize, &data_end) || data_end > n)
        fail("zip.truncated", name,
             "payload (" + std::to_string(csize) + " bytes at " + at(data_off) + ") lies past the end of the " + std::to_string(n) +
                 "-byte file");
      entries_[i].offset = base_ + data_off;
    }
  }

  /// Every entry name is checked without building a string: 100k of them is a common archive.
  void check_name(const std::string& name) {
    if (name.empty() || name.front() == '/' || name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
      fail("zip.bad_name", name, "unsafe entry name");
    const std::string_view all(name);
    std::size_t start = 0;
    while (start <= all.size()) {
      std::size_t end = all.find('/', start);
      if (end == std::string_view::npos) end = all.size();
      if (all.substr(start, end - start) == "..") fail("zip.bad_name", name, "entry name climbs out of the archive ('..')");
      start = end + 1;
    }
    const auto slash = all.find('/');
    if (slash == std::string_view::npos) fail("zip.bad_layout", name, "entry is not inside a top-level folder");
    const std::string_view top = all.substr(0, slash);
    if (top_.empty())
      top_ = std::string(top);
    else if (top != top_)
      fail("zip.bad_layout", name, "entries under two top-level folders ('" + top_ + "' and '" + std::string(top) + "')");
  }

  std::shared_ptr<MappedFile> file_;
  std::uint64_t base_ = 0, length_ = 0;
  std::string top_;
  std::vector<ZipEntry> entries_;
  KeyIndex by_name_;  // over the names below top_
};

}  // namespace statedict::detail
