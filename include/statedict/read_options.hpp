#pragma once
#include <cstddef>
#include <cstdint>

namespace statedict {

/// Limits and switches for statedict::read. The defaults are safe for files from the internet and
/// generous for any real checkpoint; each limit, when exceeded, fails the read with a clear message.
struct ReadOptions {
  /// Largest pickle (data.pkl, a legacy pickle) accepted, in bytes.
  ReadOptions& max_pickle_bytes(std::uint64_t v) {
    max_pickle_bytes_ = v;
    return *this;
  }
  /// Deepest nesting of containers accepted in a pickle or a JSON header.
  ReadOptions& max_depth(std::size_t v) {
    max_depth_ = v;
    return *this;
  }
  /// Most tensors one file may hold.
  ReadOptions& max_tensors(std::uint64_t v) {
    max_tensors_ = v;
    return *this;
  }
  /// Let tensors be views of the file's copy-on-write mapping where alignment and byte order allow.
  /// Off by default: a tensor's bytes are then read with pread the first time it is asked for
  /// (Value::tensor(), tensors()) and kept by the Checkpoint, so memory holds what was used and a
  /// file that shrinks or is rewritten gives Error "file.changed", never SIGBUS. On, reading a
  /// tensor of a file that shrank raises SIGBUS, as with PyTorch's mmap=True: the file must not be
  /// rewritten in place while its tensors are used (statedict::save and a rename over it are safe).
  ReadOptions& map_tensors(bool v) {
    map_tensors_ = v;
    return *this;
  }

  /// With map_tensors: protect the mapping from writers (Linux read lease). A process that then
  /// opens the file for writing or truncates it (torch.save rewriting it in place) is held back
  /// until statedict has moved a private copy of the mapping under its tensors, so they keep their
  /// values and never raise SIGBUS; the copy costs the file's size in memory, paid only then.
  /// Needs the file's owner (or CAP_LEASE), a local file system, and no writer holding the file
  /// open; else the read fails with Error "io.lease". Lease breaks arrive on signal SIGRTMAX-2.
  ReadOptions& protect_mapping(bool v) {
    protect_mapping_ = v;
    return *this;
  }

  /// Let tensors alias file bytes that are not aligned to their element size (legacy files,
  /// some safetensors) instead of copying them. x86-64 and AArch64 tolerate such access; off by
  /// default. statedict::load turns it on for checkpoints it reads itself, as it reads their bytes
  /// with pread rather than through the mapping.
  ReadOptions& alias_misaligned(bool v) {
    alias_misaligned_ = v;
    return *this;
  }

  /// A torch.export archive (.pt2): also read the exported program's constants (non-persistent
  /// buffers, lifted tensor constants) into the checkpoint, after its state dict, under their own
  /// FQNs. Off by default, so that the checkpoint is the state dict torch.export.load gives and
  /// loads into the module as one; the metadata's "pt2.constants" names them either way.
  ReadOptions& pt2_constants(bool v) {
    pt2_constants_ = v;
    return *this;
  }

  std::uint64_t max_pickle_bytes() const { return max_pickle_bytes_; }
  std::size_t max_depth() const { return max_depth_; }
  std::uint64_t max_tensors() const { return max_tensors_; }
  bool map_tensors() const { return map_tensors_; }
  bool protect_mapping() const { return protect_mapping_; }
  bool alias_misaligned() const { return alias_misaligned_; }
  bool pt2_constants() const { return pt2_constants_; }

private:
  std::uint64_t max_pickle_bytes_ = std::uint64_t{1} << 30;
  std::size_t max_depth_ = 1000;
  std::uint64_t max_tensors_ = 10'000'000;
  bool map_tensors_ = false;
  bool protect_mapping_ = false;
  bool alias_misaligned_ = false;
  bool pt2_constants_ = false;
};

}  // namespace statedict
