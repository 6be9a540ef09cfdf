#pragma once
// Writing a planned load into the module: every copy the matcher planned, cut into jobs (a large
// tensor read straight into its parameter, or cast through a buffer, is several jobs of at most
// kPieceBytes), run on LoadOptions::threads() threads that take the jobs in file order.
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/io/file_tensor.hpp>
#include <statedict/detail/lazy.hpp>
#include <statedict/detail/match/plan.hpp>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <fcntl.h>
#include <sched.h>

namespace statedict::detail {

/// The largest piece of one tensor a job reads (straight into the parameter, or into a cast buffer).
inline constexpr std::uint64_t kPieceBytes = 8u << 20;
/// Small tensors that lie one after another in the file (at most kBatchGap apart) are read with one
/// pread of at most kBatchBytes into a buffer, then copied into their parameters: a pread costs
/// microseconds, which a file of 100k small tensors would pay 100k times.
inline constexpr std::uint64_t kBatchTensor = 64u << 10, kBatchBytes = 1u << 20, kBatchGap = 4096;
/// Reading into a parameter: straight (pread into its memory) or through a buffer (pread into a
/// buffer of kBounceBytes the thread reuses, then memcpy). Straight is one copy and the faster on
/// most machines; but on some virtual machines the kernel's first write into each page of fresh
/// process memory costs microseconds (measured here: 2 s per GiB, where the same pread into memory
/// it wrote before takes 0.15 s), and a model's parameters are fresh memory. Each load measures
/// both on its first large read (kProbeBytes each) and keeps the buffer only if it is at least
/// twice as fast.
inline constexpr std::uint64_t kBounceBytes = 256u << 10, kProbeBytes = 1u << 20, kProbeWindow = 16u << 20;
/// With threads() left at 0, a load that copies less than this runs on the calling thread alone.
inline constexpr std::uint64_t kParallelFromBytes = 16u << 20;

/// Reads `n` bytes at `offset` of the file straight into `out`: one copy, from the page cache,
/// without touching the mapping.
inline void pread_bytes(const MappedFile& f, void* out, std::uint64_t n, std::uint64_t offset, const std::string& key) {
  read_or_throw(f, out, static_cast<std::size_t>(n), offset, key);
}

/// Gives back the mapped pages under a contiguous tensor that points into `f` (they stay valid:
/// touched again, they are read again from the file). Only for bytes nobody else sees.
inline void release_pages(const MappedFile& f, const at::Tensor& t) {
  f.release(static_cast<std::size_t>(static_cast<const std::uint8_t*>(t.data_ptr()) - f.data()), static_cast<std::size_t>(tensor_bytes(t)));
}
/// The same for the chunks a lazy tensor was made from.
inline void release_pieces(const LazyTensor& lazy) {
  if (!lazy.pieces) return;
  for (const auto& p : lazy.pieces->parts)
    if (const MappedFile* f = p.data.defined() && p.data.is_contiguous() ? mapped_file_of(p.data) : nullptr) release_pages(*f, p.data);
}

/// While alive, the kernel reads ahead nothing on the file: a tensor-parallel slice is followed in the
/// file by the other ranks' parts (the rest of the tensor, or of each row), and readahead (8 MiB on
/// some disks) would read them too.
struct NoReadahead {
  int fd;
  explicit NoReadahead(int f) : fd(f) { ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM); }
  ~NoReadahead() { ::posix_fadvise(fd, 0, 0, POSIX_FADV_NORMAL); }
  NoReadahead(const NoReadahead&) = delete;
  NoReadahead& operator=(const NoReadahead&) = delete;
};

/// A strided view of the mapping (a slice along a dim other than 0), read run by run with pread:
/// only the slice's bytes reach the page cache, where touching the mapping would fault in, and read
/// ahead, whole rows. Used when each contiguous run is at least a page.
inline bool pread_runs(const MappedFile& f, const at::Tensor& src, at::Tensor& dst, const std::string& key) {
  const std::int64_t dims = src.dim();
  std::int64_t inner = dims, run = 1;  // dims [inner, dims) form contiguous runs of `run` elements
  while (inner > 0 && src.stride(inner - 1) == run) run *= src.size(--inner);
  const std::size_t run_bytes = static_cast<std::size_t>(run) * src.element_size();
  if (inner == 0 || run_bytes < 4096 || src.numel() == 0) return false;
  const auto* base = static_cast<const std::uint8_t*>(src.data_ptr());
  auto* out = static_cast<std::uint8_t*>(dst.data_ptr());
  std::vector<std::int64_t> idx(static_cast<std::size_t>(inner), 0);
  for (std::int64_t n = src.numel() / run; n > 0; --n) {
    std::int64_t at = 0;
    for (std::int64_t d = 0; d < inner; ++d) at += idx[static_cast<std::size_t>(d)] * src.stride(d);
    const std::uint8_t* p = base + at * static_cast<std::int64_t>(src.element_size());
    read_or_throw(f, out, run_bytes, static_cast<std::uint64_t>(p - f.data()), key);
    out += run_bytes;
    for (std::int64_t d = inner - 1; d >= 0; --d) {  // next outer index, last dim fastest
      if (++idx[static_cast<std::size_t>(d)] < src.size(d)) break;
      idx[static_cast<std::size_t>(d)] = 0;
    }
  }
  return true;
}

/// The mapped files the planned copies read from (a tensor's own, or its DCP chunks').
inline std::vector<const MappedFile*> files_of(const std::vector<Copy>& copies) {
  std::vector<const MappedFile*> out;
  auto add = [&out](const at::Tensor& t) {
    const MappedFile* f = t.defined() ? mapped_file_of(t) : nullptr;
    if (f != nullptr && std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  };
  std::function<void(const LazyTensor&)> add_lazy = [&](const LazyTensor& l) {
    if (l.joined) {
      for (const auto& part : l.joined->parts)
        if (part.lazy)
          add_lazy(*part.lazy);
        else
          add(part.tensor);
    } else if (l.pieces) {
      for (const auto& p : l.pieces->parts) add(p.data);
    } else {
      add(l.base);
    }
  };
  for (const auto& c : copies) {
    if (!c.lazy)
      add(c.source);
    else
      add_lazy(*c.lazy);
  }
  return out;
}

/// Reports progress through the user's callback; one that throws is dropped, with a warning.
class ProgressSink {
public:
  ProgressSink(const std::function<void(std::uint64_t, std::uint64_t)>& f, std::vector<std::string>& warnings)
      : f_(f), warnings_(warnings) {}
  void operator()(std::uint64_t done, std::uint64_t total) {
    if (!f_ || failed_) return;
    try {
      f_(done, total);
    } catch (const std::exception& e) { drop(e.what()); } catch (...) {
      drop("an exception that is not a std::exception");
    }
  }

private:
  void drop(const std::string& what) {
    failed_ = true;
    warnings_.push_back("the progress callback threw (" + what + "); it was not called again, and the load went on.");
  }
  const std::function<void(std::uint64_t, std::uint64_t)>& f_;
  std::vector<std::string>& warnings_;
  bool failed_ = false;
};

/// The file a copy's bytes are read from with pread, or nullptr when they are read as memory. A
/// file's bytes are read with pread when this load read it (`owns_source`), or when it was read
/// pread-only (statedict::read's default): a shrunk file is then an error, not SIGBUS. A protected
/// mapping is read as memory: the file may be another's now, the mapping stays ours.
inline const MappedFile* pread_file_of(const at::Tensor& source, bool owns_source) {
  const MappedFile* file = mapped_file_of(source);
  if (file != nullptr && ((!owns_source && !file->pread_only()) || file->is_protected())) return nullptr;
  return file;
}

/// One piece of a load's work: a whole copy; elements [begin, end) of one whose parameter is read
/// straight from the file (`cast` false) or cast from a buffer read from it (`cast` true); or
/// (`batch` > 0) the small copies [copy, copy + batch) read with one pread.
struct Job {
  std::size_t copy;
  std::int64_t begin = 0, end = -1;  // end < 0: the whole copy
  bool cast = false;
  std::size_t batch = 0;
};

/// The state of one apply(): its jobs, which copies have begun writing, and the first error.
class Applier {
  static constexpr int kOpen = 0, kProbing = 1, kStraight = 2, kBuffered = 3;

public:
  Applier(const std::vector<Target>& targets, const std::vector<Copy>& copies, bool zero_copy, bool owns_source,
          std::optional<bool> buffered)
      : targets_(targets), copies_(copies), zero_copy_(zero_copy), owns_(owns_source), begun_(new std::atomic<bool>[copies.size()]),
        mode_(!buffered   ? kOpen
              : *buffered ? kBuffered
                          : kStraight) {
    for (std::size_t i = 0; i < copies.size(); ++i) begun_[i].store(false, std::memory_order_relaxed);
  }

  /// Cuts the copies into jobs; a non-lazy slice's file reads ahead nothing while the load runs.
  void plan_jobs() {
    std::unordered_set<const void*> destinations;
    for (std::size_t i = 0; i < copies_.size(); ++i) {
      const Copy& c = copies_[i];
      const at::Tensor& dst = targets_[c.target].tensor;
      total_ += tensor_bytes(dst);
      // A module that holds one tensor under two names (tied weights, a submodule registered
      // twice) gets two copies into it: they run in order on one thread, the later one winning.
      if (dst.defined() && dst.has_storage() && !destinations.insert(dst.storage().unsafeGetStorageImpl()).second) aliased_ = true;
      if (c.lazy) {  // counted by what run_whole will do: hand over the one piece that holds it, or copy
        const at::Tensor view = c.lazy->view();
        if (!view.defined() || c.own || !shares(view, dst, pread_file_of(view, owns_))) copied_ += tensor_bytes(dst);
        jobs_.push_back({i});
        continue;
      }
      const MappedFile* file = pread_file_of(c.source, owns_);
      if (c.own || !shares(c.source, dst, file)) copied_ += tensor_bytes(dst);
      if (file != nullptr && c.slice &&
          std::none_of(exact_.begin(), exact_.end(), [&](const NoReadahead& n) { return n.fd == file->fd(); }))
        exact_.emplace_back(file->fd());
      // Pieces: a contiguous tensor of the file read straight into (or cast into) a contiguous CPU
      // parameter of its shape; zero-copy candidates and everything else stay whole.
      const bool piecewise = file != nullptr && !(zero_copy_ && !file->pread_only()) && dst.device().is_cpu() && dst.is_contiguous() &&
                             c.source.is_contiguous() && c.source.sizes().equals(dst.sizes()) && dst.numel() > 0;
      if (!piecewise) {
        jobs_.push_back({i});
        continue;
      }
      const bool cast = c.source.scalar_type() != dst.scalar_type();
      if (!cast && tensor_bytes(dst) <= kBatchTensor) {
        add_small(i, *file);
        continue;
      }
      const auto widest = static_cast<std::int64_t>(std::max(dst.element_size(), c.source.element_size()));
      const std::int64_t step = std::max<std::int64_t>(1, static_cast<std::int64_t>(kPieceBytes) / widest);
      for (std::int64_t b = 0; b < dst.numel(); b += step) jobs_.push_back({i, b, std::min(dst.numel(), b + step), cast});
    }
  }

  /// Copy i (small, read straight into its parameter) joins the last job's batch, or starts one.
  void add_small(std::size_t i, const MappedFile& file) {
    const std::uint64_t at = file_offset(file, copies_[i].source), bytes = tensor_bytes(copies_[i].source);
    if (!jobs_.empty() && jobs_.back().batch > 0) {
      Job& last = jobs_.back();
      const Copy& first = copies_[last.copy];
      const Copy& prev = copies_[last.copy + last.batch - 1];
      const std::uint64_t lo = file_offset(file, first.source), end = file_offset(file, prev.source) + tensor_bytes(prev.source);
      if (last.copy + last.batch == i && mapped_file_of(first.source) == &file && at >= end && at - end <= kBatchGap &&
          at + bytes - lo <= kBatchBytes) {
        ++last.batch;
        return;
      }
    }
    jobs_.push_back({i, 0, -1, false, 1});
  }

  std::uint64_t total() const { return total_; }
  /// The bytes the load writes into parameters (a zero-copy load takes the file's memory instead).
  std::uint64_t copied() const { return copied_; }
  /// Whether two copies write into the same memory (then the load runs on one thread).
  bool aliased() const { return aliased_; }
  std::size_t job_count() const { return jobs_.size(); }
  std::uint64_t done() const { return done_.load(std::memory_order_relaxed); }

  /// Runs jobs until none is left or one failed; `after_job` runs after each (on this thread).
  /// `until_decided`: return as soon as the way of reading is decided (or kProbeWindow bytes were
  /// copied without a read large enough to decide it), so the probe runs with no other thread.
  void work(const std::function<void()>& after_job, bool until_decided = false) {
    at::NoGradGuard no_grad;           // thread-local: each thread sets its own
    std::vector<std::uint8_t> buffer;  // a batch's bytes, reused by the thread's batches
    for (;;) {
      if (failed_.load(std::memory_order_relaxed)) return;
      if (until_decided && (mode_.load(std::memory_order_relaxed) != kOpen || done() >= kProbeWindow)) return;
      const std::size_t j = next_.fetch_add(1, std::memory_order_relaxed);
      if (j >= jobs_.size()) return;
      try {
        run(jobs_[j], buffer);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
      }
      if (after_job) after_job();
    }
  }

  /// The module keys whose tensors began to be written, in the plan's order.
  std::vector<std::string> begun() const {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < copies_.size(); ++i)
      if (begun_[i].load(std::memory_order_relaxed)) out.push_back(targets_[copies_[i].target].key);
    return out;
  }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

private:
  void begin(std::size_t copy) { begun_[copy].store(true, std::memory_order_relaxed); }

  /// Whether a contiguous source has the CPU parameter's dtype and shape (its bytes are the
  /// parameter's bytes).
  static bool same_layout(const at::Tensor& source, const at::Tensor& dst) {
    return dst.device().is_cpu() && source.scalar_type() == dst.scalar_type() && source.is_contiguous() &&
           source.sizes().equals(dst.sizes());
  }
  /// Whether the parameter takes the source's memory as it is (zero-copy) rather than its bytes.
  bool shares(const at::Tensor& source, const at::Tensor& dst, const MappedFile* file) const {
    return zero_copy_ && same_layout(source, dst) &&
           reinterpret_cast<std::uintptr_t>(source.data_ptr()) % std::min<std::size_t>(source.element_size(), 16) == 0 &&
           (file == nullptr || !file->pread_only());
  }
  void count(std::uint64_t bytes) { done_.fetch_add(bytes, std::memory_order_relaxed); }

  void run(const Job& job, std::vector<std::uint8_t>& buffer) {
    if (job.batch > 0) return run_batch(job, buffer);
    if (job.end < 0) return run_whole(job.copy, buffer);
    const Copy& c = copies_[job.copy];
    const std::string& key = targets_[c.target].key;
    const at::Tensor& dst = targets_[c.target].tensor;
    const MappedFile& file = *pread_file_of(c.source, owns_);
    const std::int64_t n = job.end - job.begin;
    const std::uint64_t at_file = file_offset(file, c.source) + static_cast<std::uint64_t>(job.begin) * c.source.element_size();
    const std::uint64_t src_bytes = static_cast<std::uint64_t>(n) * c.source.element_size();
    auto* out = static_cast<std::uint8_t*>(dst.data_ptr()) + job.begin * static_cast<std::int64_t>(dst.element_size());
    if (!job.cast) {
      // A read straight into the parameter that fails half way leaves it partly new: it counts as
      // written from the moment the read starts.
      begin(job.copy);
      read_into(file, out, src_bytes, at_file, key, buffer);
    } else {
      buffer.resize(static_cast<std::size_t>(src_bytes));
      pread_bytes(file, buffer.data(), src_bytes, at_file, key);
      begin(job.copy);
      at::from_blob(out, {n}, dst.options()).copy_(at::from_blob(buffer.data(), {n}, c.source.options().device(at::kCPU)));
    }
    count(static_cast<std::uint64_t>(n) * dst.element_size());
  }

  /// Small tensors one after another in the file: one pread, then a copy into each parameter.
  void run_batch(const Job& job, std::vector<std::uint8_t>& buf) {
    const Copy& first = copies_[job.copy];
    const MappedFile& file = *pread_file_of(first.source, owns_);
    const Copy& last = copies_[job.copy + job.batch - 1];
    const std::uint64_t lo = file_offset(file, first.source), hi = file_offset(file, last.source) + tensor_bytes(last.source);
    buf.resize(static_cast<std::size_t>(hi - lo));
    const std::string& key = targets_[first.target].key;
    pread_bytes(file, buf.data(), hi - lo, lo,
                job.batch == 1 ? key : key + " and the " + std::to_string(job.batch - 1) + " tensors after it");
    for (std::size_t i = job.copy; i < job.copy + job.batch; ++i) {
      const Copy& c = copies_[i];
      const at::Tensor& dst = targets_[c.target].tensor;
      begin(i);
      std::memcpy(dst.data_ptr(), buf.data() + (file_offset(file, c.source) - lo), static_cast<std::size_t>(tensor_bytes(dst)));
      count(tensor_bytes(dst));
    }
  }

  /// n bytes at `offset` of the file into `out`: straight, or through `buf` (see kBounceBytes). The
  /// first read of at least 2 x kProbeBytes while the choice is open decides it.
  void read_into(const MappedFile& f, std::uint8_t* out, std::uint64_t n, std::uint64_t offset, const std::string& key,
                 std::vector<std::uint8_t>& buf) {
    int mode = mode_.load(std::memory_order_relaxed);
    int open = kOpen;
    if (mode == kOpen && n >= 2 * kProbeBytes && mode_.compare_exchange_strong(open, kProbing)) {
      using Clock = std::chrono::steady_clock;
      // Through the buffer first: [0, 1 MiB), its first 256 KiB untimed (the buffer is new memory
      // too, and its first fill pays once what is measured), the rest timed. Then straight:
      // [1 MiB, 2 MiB), which readahead of the first half may have brought in, if anything tilting
      // the choice to straight reads, the better one on most machines. No byte is read twice.
      bounce(f, out, kBounceBytes, offset, key, buf);
      const auto t0 = Clock::now();
      bounce(f, out + kBounceBytes, kProbeBytes - kBounceBytes, offset + kBounceBytes, key, buf);
      const auto t1 = Clock::now();
      pread_bytes(f, out + kProbeBytes, kProbeBytes, offset + kProbeBytes, key);
      const auto t2 = Clock::now();
      const double buffered = std::chrono::duration<double>(t1 - t0).count() * static_cast<double>(kProbeBytes) /
                              static_cast<double>(kProbeBytes - kBounceBytes),
                   straight = std::chrono::duration<double>(t2 - t1).count();
      mode = buffered * 2 <= straight ? kBuffered : kStraight;
      mode_.store(mode, std::memory_order_relaxed);
      out += 2 * kProbeBytes;
      offset += 2 * kProbeBytes;
      n -= 2 * kProbeBytes;
    }
    if (mode == kBuffered)
      bounce(f, out, n, offset, key, buf);
    else
      pread_bytes(f, out, n, offset, key);
  }
  static void bounce(const MappedFile& f, std::uint8_t* out, std::uint64_t n, std::uint64_t offset, const std::string& key,
                     std::vector<std::uint8_t>& buf) {
    buf.resize(static_cast<std::size_t>(std::max<std::uint64_t>(buf.size(), std::min(n, kBounceBytes))));
    for (std::uint64_t done = 0; done < n;) {
      const std::uint64_t step = std::min<std::uint64_t>(n - done, kBounceBytes);
      pread_bytes(f, buf.data(), step, offset + done, key);
      std::memcpy(out + done, buf.data(), static_cast<std::size_t>(step));
      done += step;
    }
  }

  void run_whole(std::size_t i, std::vector<std::uint8_t>& buffer) {
    const Copy& c = copies_[i];
    const std::string& key = targets_[c.target].key;
    at::Tensor dst = targets_[c.target].tensor;
    struct Count {  // whichever way the copy ends
      Applier& a;
      std::uint64_t bytes;
      ~Count() { a.count(bytes); }
    } counted{*this, tensor_bytes(dst)};
    // A lazy source that one piece (or its base) holds is read from its file like any other view of
    // a file, straight into the parameter; one that is assembled from pieces or cast is made here,
    // one tensor at a time.
    // A merged or stacked tensor: its parts are written into their places one at a time, so the
    // load holds one part, not the whole tensor beside the parameter.
    if (c.lazy && c.lazy->joined && c.lazy->ops.empty() && !c.lazy->cast && dst.sizes().equals(c.lazy->joined->shape)) {
      begin(i);
      c.lazy->joined->write_into(dst);
      return;
    }
    at::Tensor source = c.lazy ? c.lazy->view() : c.source;
    if (!source.defined()) source = c.get();
    const MappedFile* file = pread_file_of(source, owns_);
    if (!c.own && shares(source, dst, file)) {
      begin(i);
      dst.set_data(source);
      return;
    }
    if (file != nullptr && same_layout(source, dst) && dst.is_contiguous()) {
      begin(i);
      read_into(*file, static_cast<std::uint8_t*>(dst.data_ptr()), tensor_bytes(dst), file_offset(*file, source), key, buffer);
      return;
    }
    if (file != nullptr && !source.is_contiguous() && dst.device().is_cpu() && source.scalar_type() == dst.scalar_type() &&
        source.sizes().equals(dst.sizes()) && dst.is_contiguous()) {
      begin(i);
      if (pread_runs(*file, source, dst, key)) return;
      begun_[i].store(false, std::memory_order_relaxed);  // runs too short for pread: nothing was read; copied below
    }
    // A file's bytes are read with pread even here (a cast, another layout): through a buffer.
    const at::Tensor from = file != nullptr ? pread_copy(*file, source, key) : source;
    begin(i);
    dst.copy_(from);
    if (owns_ && c.lazy) release_pieces(*c.lazy);            // assembled from chunks: let their pages go as well
    if (owns_ && file != nullptr && source.is_contiguous())  // a strided shard shares its pages with other ranks' rows
      release_pages(*file, source);
  }

  const std::vector<Target>& targets_;
  const std::vector<Copy>& copies_;
  const bool zero_copy_, owns_;
  std::vector<Job> jobs_;
  std::list<NoReadahead> exact_;
  std::uint64_t total_ = 0, copied_ = 0;
  bool aliased_ = false;
  std::unique_ptr<std::atomic<bool>[]> begun_;
  std::atomic<std::size_t> next_{0};
  std::atomic<std::uint64_t> done_{0};
  std::atomic<bool> failed_{false};
  std::atomic<int> mode_;  // how reads into parameters go (read_into): kOpen until the first large read
  std::mutex mu_;
  std::exception_ptr error_;
};

/// The CPUs this process may run on (its affinity mask), fewer when OMP_NUM_THREADS says so. Not
/// at::get_num_threads(): its first call on a thread after torch::set_num_threads() makes LibTorch
/// (1.13 and 2.x, built with OpenMP and pthreadpool) start its pthreadpool again, and the pool's new
/// threads spin for tens of milliseconds beside the load (a 1 GiB load on 2 cores: 10% slower).
inline int usable_cpus() {
  long n = 0;
#if defined(__linux__)
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
  if (n <= 0) n = static_cast<long>(std::thread::hardware_concurrency());
  if (const char* omp = std::getenv("OMP_NUM_THREADS")) {
    char* end = nullptr;
    const long v = std::strtol(omp, &end, 10);
    if (end != omp && v > 0 && v < n) n = v;
  }
  return static_cast<int>(std::clamp(n, 1L, 1024L));
}

/// How many threads a load uses: the option, or (0) the usable CPUs, at most 4, when the load
/// copies at least kParallelFromBytes; never more than there are jobs.
inline int apply_threads(int option, std::uint64_t bytes, std::size_t jobs) {
  int n = option > 0 ? option : (bytes >= kParallelFromBytes ? std::min(usable_cpus(), 4) : 1);
  return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(n), std::max<std::size_t>(jobs, 1)));
}

/// Writes the planned copies. Runs only after every check passed. `owns_source`: the checkpoint was
/// read by this load and nobody else holds it, so its bytes are the file's and may be read with
/// pread, and its mapping released as it is consumed. `written` receives each module key whose
/// tensor began to be written: if a copy throws (the file changed under the load, a read failed),
/// the caller reports which keys the module holds new. The progress callback runs on this thread.
inline void apply(const std::vector<Target>& targets, const std::vector<Copy>& copies, bool zero_copy, bool owns_source, int threads,
                  std::optional<bool> buffered, ProgressSink& progress, std::vector<std::string>& written) {
  Applier a(targets, copies, zero_copy, owns_source, buffered);
  a.plan_jobs();
  progress(0, a.total());
  std::uint64_t reported = 0;
  const auto report = [&] {
    const std::uint64_t d = a.done();
    if (d != reported) progress(reported = d, a.total());
  };
  // Threads go by the bytes copied: a zero-copy load that only hands memory over stays on this
  // thread. More threads do not speed that up, and the model's old memory freed with a second
  // thread running took longer (1 GiB: ~10% of the call, 2 threads against 1).
  const int n = a.aliased() ? 1 : apply_threads(threads, a.copied(), a.job_count());
  std::vector<std::thread> helpers;
  struct Join {  // the helpers end before the Applier they use, whatever throws
    std::vector<std::thread>& threads;
    ~Join() {
      for (auto& t : threads)
        if (t.joinable()) t.join();
    }
  } join{helpers};
  helpers.reserve(static_cast<std::size_t>(n));
  // The other threads start once the first large read decided how reads go: measured alone, as
  // they would disturb it.
  if (n > 1) a.work(report, /*until_decided=*/true);
  for (int t = 1; t < n; ++t) {
    try {
      helpers.emplace_back([&a] { a.work(nullptr); });
    } catch (...) {
      break;  // no more threads to be had: the ones running (and this one) do the work
    }
  }
  a.work(report);
  for (auto& h : helpers) h.join();
  report();
  written = a.begun();
  a.rethrow();
}

}  // namespace statedict::detail
