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
#include <utility>

namespace statedict::detail {

/// A heap object that storages' DataPtrs share (the file of a read, a block of packed storages):
/// its maker holds it through a SharedHold, each DataPtr the hold makes holds it too, and the last
/// to let go deletes it. `release`, the DataPtrs' deleter, also says what a DataPtr points into.
template <class T> struct Shared {
  template <class... A> explicit Shared(A&&... a) : value(std::forward<A>(a)...) {}
  T value;
  std::atomic<std::size_t> holders{1};  // the maker's SharedHold, until it goes
  static void release(void* ctx) {
    auto* s = static_cast<Shared*>(ctx);
    if (s->holders.fetch_sub(1, std::memory_order_acq_rel) == 1) delete s;
  }
};
/// The maker's hold on a new Shared<T>, and the DataPtrs into it.
template <class T> class SharedHold {
public:
  template <class... A> explicit SharedHold(A&&... a) : s_(new Shared<T>(std::forward<A>(a)...)) {}
  ~SharedHold() { Shared<T>::release(s_); }
  SharedHold(const SharedHold&) = delete;
  SharedHold& operator=(const SharedHold&) = delete;
  T& operator*() const { return s_->value; }
  T* operator->() const { return &s_->value; }
  /// A DataPtr to `p` (inside what T holds) that keeps it until the DataPtr goes.
  c10::DataPtr view(void* p) const {
    s_->holders.fetch_add(1, std::memory_order_relaxed);
    return c10::DataPtr(p, s_, &Shared<T>::release, c10::Device(c10::kCPU));
  }

private:
  Shared<T>* s_;
};

/// What the views a read makes of a file's mapping hold: the file, open and mapped while any view
/// lives. One for each read of a file, not one for each storage (100k small storages made 100k).
using FileViews = SharedHold<std::shared_ptr<MappedFile>>;

/// Memory that holds several small storages read with one pread (ReadTensors::get_many), shared
/// by them through a SharedHold: 64-byte aligned, its storages placed at 64-byte steps, as aligned
/// as memory of their own. A storage kept alive keeps its whole block (at most one pread's span).
struct AlignedBytes {
  explicit AlignedBytes(std::size_t n) : bytes(static_cast<std::uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64))) {
    if (bytes == nullptr) throw std::bad_alloc();
  }
  ~AlignedBytes() { std::free(bytes); }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  std::uint8_t* bytes;
};

/// The file a tensor's storage is a view of, if it came from statedict::read; else nullptr.
inline const MappedFile* mapped_file_of(const c10::DataPtr& dp) {
  if (dp.get_deleter() != &Shared<std::shared_ptr<MappedFile>>::release) return nullptr;
  return static_cast<Shared<std::shared_ptr<MappedFile>>*>(dp.get_context())->value.get();
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
