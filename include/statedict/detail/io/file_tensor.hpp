#pragma once
// Tensors whose storage is a view of a checkpoint file's mapping, and the one way statedict reads
// their bytes. A file read in pread mode (the default, ReadOptions::map_tensors off) is never read
// through its mapping: its tensors there only say where their bytes are, and readable() reads them
// with pread. A mapped file (map_tensors on) is checked for changes, then read from memory.
#include <statedict/detail/io/mapped_file.hpp>

#include <statedict/detail/compat.hpp>

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <memory>
#include <string>

namespace statedict::detail {

/// What the views of one file's mapping hold: the file, open and mapped while any view lives. One
/// for each read of a file, not one for each storage (a file of 100k small storages made 100k).
struct FileAnchor {
  explicit FileAnchor(std::shared_ptr<MappedFile> file) : f(std::move(file)) {}
  std::shared_ptr<MappedFile> f;
  std::atomic<std::size_t> holders{1};  // the reader's FileViews, until the read is done
};
inline void release_file_anchor(void* ctx) {
  auto* a = static_cast<FileAnchor*>(ctx);
  if (a->holders.fetch_sub(1, std::memory_order_acq_rel) == 1) delete a;
}

/// A reader's hold on one file's FileAnchor, from which it makes DataPtrs that view the mapping.
class FileViews {
public:
  explicit FileViews(std::shared_ptr<MappedFile> f) : a_(new FileAnchor(std::move(f))) {}
  ~FileViews() { release_file_anchor(a_); }
  FileViews(const FileViews&) = delete;
  FileViews& operator=(const FileViews&) = delete;
  MappedFile& file() const { return *a_->f; }
  /// A DataPtr to `p` (inside the mapping) that keeps the file until it goes.
  c10::DataPtr view(std::uint8_t* p) const {
    a_->holders.fetch_add(1, std::memory_order_relaxed);
    return c10::DataPtr(p, a_, &release_file_anchor, c10::Device(c10::kCPU));
  }

private:
  FileAnchor* a_;
};

/// Memory read with one pread that holds several small storages (ReadTensors::get_many): each
/// storage's DataPtr points into it and counts as one holder, and the last holder to go frees it.
/// The block is 64-byte aligned and its storages are placed at 64-byte steps, as aligned as memory
/// of their own. A storage kept alive keeps its whole block (at most one pread's span).
struct SharedBlock {
  explicit SharedBlock(std::size_t n) : bytes(static_cast<std::uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64))) {
    if (bytes == nullptr) throw std::bad_alloc();
  }
  ~SharedBlock() { std::free(bytes); }
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;
  std::uint8_t* bytes;
  std::atomic<std::size_t> holders{1};  // the reader that fills it, until it is done
};
inline void release_block(void* ctx) {
  auto* b = static_cast<SharedBlock*>(ctx);
  if (b->holders.fetch_sub(1, std::memory_order_acq_rel) == 1) delete b;
}
/// A storage of `nbytes` at `at` inside `b`, holding `b`.
inline c10::Storage storage_in_block(SharedBlock* b, std::uint8_t* at, std::size_t nbytes) {
  b->holders.fetch_add(1, std::memory_order_relaxed);
  c10::DataPtr dp(at, b, &release_block, c10::Device(c10::kCPU));
  return c10::Storage(c10::Storage::use_byte_size_t(), nbytes, std::move(dp), nullptr, false);
}

/// The file a tensor's storage is a view of, if it came from statedict::read; else nullptr.
inline const MappedFile* mapped_file_of(const c10::DataPtr& dp) {
  if (dp.get_deleter() != &release_file_anchor) return nullptr;
  return static_cast<FileAnchor*>(dp.get_context())->f.get();
}
inline const MappedFile* mapped_file_of(const at::Tensor& t) { return t.defined() ? mapped_file_of(t.storage().data_ptr()) : nullptr; }

/// Offset in the file of a view of its mapping.
inline std::uint64_t file_offset(const MappedFile& f, const at::Tensor& src) {
  return static_cast<std::uint64_t>(static_cast<const std::uint8_t*>(src.data_ptr()) - f.data());
}

/// The bytes `src` (a view of f's mapping) spans, read with pread into memory and viewed with its
/// sizes and strides. Holds one tensor's span.
inline at::Tensor pread_copy(const MappedFile& f, const at::Tensor& src, const std::string& key) {
  std::int64_t span = src.numel() > 0 ? 1 : 0;
  for (std::int64_t d = 0; d < src.dim() && span > 0; ++d) span += (src.size(d) - 1) * src.stride(d);
  at::Tensor buf = at::empty({span}, src.options());
  read_or_throw(f, buf.data_ptr(), static_cast<std::size_t>(span) * src.element_size(), file_offset(f, src), key);
  return buf.as_strided(src.sizes(), src.strides(), 0);
}

/// A file that changed since it was read (shrunk: its pages would raise SIGBUS; rewritten: other
/// bytes) is file.changed, before any of its bytes are read.
inline void check_unchanged(const MappedFile& f, const std::string& what) {
  const std::string why = f.change();
  if (!why.empty()) throw Error("file.changed", f.path(), what, why);
}

/// A tensor's bytes, safe to read: a view of a pread-only file is read now with pread (its span
/// only); a view of a mapped file is checked for changes and returned, its memory then read, not
/// the file (a tensor written in place, as a zero-copy parameter after training or an edited tensor
/// of a mapped Checkpoint, holds values the file does not have); any other tensor as it is.
inline at::Tensor readable(const at::Tensor& t, const std::string& key) {
  const MappedFile* f = mapped_file_of(t);
  if (f == nullptr || f->protected_copy()) return t;  // a protected mapping a writer broke is memory of our own now
  check_unchanged(*f, key);
  return f->pread_only() ? pread_copy(*f, t, key) : t;
}

/// The same for a whole storage (what a torch zip writer copies).
inline at::Storage readable(const at::Storage& s, const std::string& key) {
  const MappedFile* f = mapped_file_of(s.data_ptr());
  if (f == nullptr || f->protected_copy()) return s;
  check_unchanged(*f, key);
  if (!f->pread_only() || s.nbytes() == 0) return s;
  c10::Storage out(c10::Storage::use_byte_size_t(), s.nbytes(), c10::GetCPUAllocator(), false);
  const auto* at_byte = static_cast<const std::uint8_t*>(s.data_ptr().get());
  read_or_throw(*f, storage_bytes(out), s.nbytes(), static_cast<std::uint64_t>(at_byte - f->data()), key);
  return out;
}

}  // namespace statedict::detail
