#pragma once
// A checkpoint file mapped copy-on-write: tensors may alias its pages without the file ever being
// read into a buffer, and a write to such a tensor never reaches the file. A file opened pread-only
// (statedict::read's default) is mapped too, but its mapping only gives tensors an address that
// says where their bytes are: nothing reads it, so a file that shrinks cannot raise SIGBUS.
#include <statedict/detail/io/lease.hpp>
#include <statedict/error.hpp>
#include <statedict/read_options.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace statedict::detail {

class MappedFile {
public:
  static std::shared_ptr<MappedFile> open(const std::string& path, bool pread_only = false) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw Error("io.open", path, "", std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int e = errno;
      ::close(fd);
      throw Error("io.open", path, "", std::string("cannot stat: ") + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error("io.not_a_file", path, "", S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
    }
    return adopt(fd, st, path, pread_only);
  }

  /// A file in memory (memfd) that `fill` writes, read like any other: a DCP chunk stored compressed
  /// is decompressed into one, so the zip and tensor readers take it as they take a file on disk.
  /// `fill(p)` may write up to `size` bytes at p and returns how many it wrote; only the pages it
  /// wrote take memory (the file is sparse until then). `label` names it in errors; `pread_only` as
  /// for open().
  template <class Fill>
  static std::shared_ptr<MappedFile> in_memory(const std::string& label, std::size_t size, bool pread_only, Fill&& fill) {
    const int fd = ::memfd_create("statedict", MFD_CLOEXEC);
    if (fd < 0) throw Error("io.open", label, "", std::string("cannot create an in-memory file: ") + std::strerror(errno));
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      const int e = errno;
      ::close(fd);
      throw Error("io.write", label, "", std::string("cannot size an in-memory file: ") + std::strerror(e));
    }
    if (size > 0) {
      void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        throw Error("io.mmap", label, "", std::string("cannot map an in-memory file: ") + std::strerror(e));
      }
      std::size_t used = 0;
      try {
        used = fill(static_cast<std::uint8_t*>(p));
      } catch (...) {
        ::munmap(p, size);
        ::close(fd);
        throw;
      }
      ::munmap(p, size);
      if (used < size && ::ftruncate(fd, static_cast<off_t>(used)) != 0) {
        const int e = errno;
        ::close(fd);
        throw Error("io.write", label, "", std::string("cannot size an in-memory file: ") + std::strerror(e));
      }
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      throw Error("io.open", label, "", std::string("cannot stat an in-memory file: ") + std::strerror(e));
    }
    return adopt(fd, st, label, pread_only);
  }

private:
  static std::shared_ptr<MappedFile> adopt(int fd, const struct stat& st, const std::string& path, bool pread_only) {
    auto f = std::shared_ptr<MappedFile>(new MappedFile());
    f->path_ = path;
    f->size_ = static_cast<std::size_t>(st.st_size);
    f->fd_ = fd;
    f->pread_only_ = pread_only;
    f->mtime_ = st.st_mtim;
    f->dev_ = st.st_dev;
    f->ino_ = st.st_ino;
    if (f->size_ > 0) {
      void* p = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) throw Error("io.mmap", path, "", std::string("cannot map: ") + std::strerror(errno));
      f->data_ = static_cast<std::uint8_t*>(p);
      f->head_.resize(static_cast<std::size_t>(std::min<std::size_t>(f->size_, 512)));
      if (!f->read_at(f->head_.data(), f->head_.size(), 0))
        throw Error("io.read", path, "offset 0", std::string("cannot read: ") + std::strerror(errno));
    }
    return f;
  }

public:
  /// The file of a checkpoint read with `opts`: pread-only unless map_tensors, protected if asked.
  static std::shared_ptr<MappedFile> open(const std::string& path, const ReadOptions& opts) {
    auto f = open(path, !opts.map_tensors());
    if (opts.map_tensors() && opts.protect_mapping()) f->protect();
    return f;
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (lease_ != nullptr) unprotect_mapping(lease_, fd_);
    if (data_ != nullptr) ::munmap(data_, size_);
    if (fd_ >= 0) ::close(fd_);
  }

  const std::uint8_t* data() const noexcept { return data_; }
  std::uint8_t* mutable_data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }
  int fd() const noexcept { return fd_; }
  /// Protects the mapping from writers (see lease.hpp): once called, a process that opens the file
  /// for writing or truncates it waits until a private copy of the mapping replaces it. Throws
  /// Error "io.lease" when the kernel grants no lease.
  void protect() {
    if (lease_ == nullptr && data_ != nullptr) lease_ = protect_mapping(fd_, data_, size_, path_);
  }
  /// Whether protect() holds (or held) a lease: the mapping's bytes never change nor vanish.
  bool is_protected() const noexcept { return lease_ != nullptr; }
  /// Whether a protected mapping was replaced by its private copy (a writer opened the file).
  bool protected_copy() const noexcept { return mapping_copied(lease_); }
  /// Whether the bytes of tensors on this file are read only with pread (see file_tensor.hpp).
  bool pread_only() const noexcept { return pread_only_; }
  /// The first (up to) 512 bytes, read with pread: format sniffing looks here, not at the mapping.
  const std::uint8_t* head() const noexcept { return reinterpret_cast<const std::uint8_t*>(head_.data()); }
  std::size_t head_size() const noexcept { return head_.size(); }

  /// Reads [offset, offset+n) with pread, without touching the mapping; false on a short read.
  bool read_at(void* out, std::size_t n, std::uint64_t offset) const noexcept {
    auto* dst = static_cast<char*>(out);
    while (n > 0) {
      const ssize_t got = ::pread(fd_, dst, n, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      dst += got;
      offset += static_cast<std::uint64_t>(got);
      n -= static_cast<std::size_t>(got);
    }
    return true;
  }

  /// How the open file changed since it was opened, or "" if it did not: another size, or another
  /// modification time (rewritten in place, as torch.save does). Its bytes then may not be what was
  /// parsed, and pages past a new end of file cannot be read.
  std::string change() const {
    if (protected_copy()) return {};  // its bytes are a copy of our own: no change reaches them
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return std::string("cannot stat it: ") + std::strerror(errno);
    if (static_cast<std::uint64_t>(st.st_size) != size_)
      return "its size changed from " + std::to_string(size_) + " to " + std::to_string(st.st_size) + " bytes since it was read";
    if (st.st_mtim.tv_sec != mtime_.tv_sec || st.st_mtim.tv_nsec != mtime_.tv_nsec)
      return "it was rewritten in place since it was read (its modification time changed)";
    return {};
  }
  /// Whether the path now names another file, or none (an atomic replace, a delete): the file that
  /// was read stays whole and readable through this object.
  bool replaced() const {
    struct stat st {};
    return ::stat(path_.c_str(), &st) != 0 || st.st_ino != ino_ || st.st_dev != dev_;
  }

  /// Tells the kernel the pages of [offset, offset+n) are no longer needed by us (they stay valid:
  /// a private mapping re-reads them from the file if touched again).
  void release(std::size_t offset, std::size_t n) const noexcept {
    if (data_ == nullptr || n == 0 || lease_ != nullptr) return;  // a protected copy's pages would come back as zeros
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::size_t begin = (offset + page - 1) / page * page;
    std::size_t end = (offset + n) / page * page;
    if (end > begin) ::madvise(data_ + begin, end - begin, MADV_DONTNEED);
  }

private:
  MappedFile() = default;
  std::string path_;
  std::string head_;
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
  bool pread_only_ = false;
  LeaseSlot* lease_ = nullptr;
  struct timespec mtime_ {};
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

/// A read of a tensor's bytes that failed: the file changed under us (it shrank, it was rewritten
/// in place), or the read itself failed.
[[noreturn]] inline void read_failed(const MappedFile& f, const std::string& key, std::uint64_t offset, int err) {
  const std::string where = key + " (offset " + std::to_string(offset) + ")";
  const std::string why = f.change();
  if (!why.empty()) throw Error("file.changed", f.path(), where, why);
  throw Error("io.read", f.path(), where, err != 0 ? std::string("cannot read: ") + std::strerror(err) : "cannot read: short read");
}
inline void read_or_throw(const MappedFile& f, void* out, std::size_t n, std::uint64_t offset, const std::string& key) {
  errno = 0;
  if (!f.read_at(out, n, offset)) read_failed(f, key, offset, errno);
}

/// Overflow-checked arithmetic on sizes read from files.
inline bool add_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t* out) { return __builtin_add_overflow(a, b, out); }
inline bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

inline std::uint16_t rd16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
inline std::uint32_t rd32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) | (static_cast<std::uint32_t>(p[2]) << 16) |
         (static_cast<std::uint32_t>(p[3]) << 24);
}
inline std::uint64_t rd64(const std::uint8_t* p) {
  return static_cast<std::uint64_t>(rd32(p)) | (static_cast<std::uint64_t>(rd32(p + 4)) << 32);
}

}  // namespace statedict::detail
