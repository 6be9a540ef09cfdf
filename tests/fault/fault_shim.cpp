// An LD_PRELOAD shim that makes one chosen file-access call fail, for the fault sweep
// (tests/fault/sweep.sh). Configured by the environment:
//   STATEDICT_FAULT=CALL:N:KIND   the N-th call (from 1) of CALL fails; CALL is open, pread, mmap,
//                                 write, fsync or rename; KIND is EIO, ENOSPC, EINTR or short
//                                 (a short count: half the bytes; for calls without a count, EIO)
//   STATEDICT_FAULT_PATH=TEXT     only calls on files whose path contains TEXT count
//   STATEDICT_FAULT_COUNT=FILE    at exit, append "CALL COUNT" lines for the calls that matched
// Only calls on matching files are counted, so libraries' own file access does not move N.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

enum { C_OPEN, C_PREAD, C_MMAP, C_WRITE, C_FSYNC, C_RENAME, C_N };
static const char* names[C_N] = {"open", "pread", "mmap", "write", "fsync", "rename"};
static long counts[C_N];
static int fail_call = -1;
static long fail_at = 0;
static int fail_errno = EIO, fail_short = 0;
static const char* filter = NULL;
static int ready = 0;

static void report(void) {
  const char* out = getenv("STATEDICT_FAULT_COUNT");
  if (out == NULL) return;
  FILE* f = fopen(out, "a");
  if (f == NULL) return;
  for (int c = 0; c < C_N; ++c) fprintf(f, "%s %ld\n", names[c], counts[c]);
  fclose(f);
}

static void setup(void) {
  if (ready) return;
  ready = 1;
  filter = getenv("STATEDICT_FAULT_PATH");
  const char* spec = getenv("STATEDICT_FAULT");
  if (spec != NULL) {
    char call[16] = {0}, kind[16] = {0};
    long n = 0;
    if (sscanf(spec, "%15[a-z]:%ld:%15s", call, &n, kind) == 3) {
      for (int c = 0; c < C_N; ++c)
        if (strcmp(call, names[c]) == 0) fail_call = c;
      fail_at = n;
      fail_short = strcmp(kind, "short") == 0;
      fail_errno = strcmp(kind, "ENOSPC") == 0 ? ENOSPC : strcmp(kind, "EINTR") == 0 ? EINTR : EIO;
    }
  }
  atexit(report);
}

static int path_matches(const char* path) { return path != NULL && (filter == NULL || strstr(path, filter) != NULL); }
static int fd_matches(int fd) {
  char link[64], target[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = '\0';
  return path_matches(target);
}
// Counts a matching call; 1 when this one is to fail.
static int hit(int call, int matches) {
  setup();
  if (!matches) return 0;
  // Atomic: a load may read on several threads (LoadOptions::threads); exactly one call is the N-th.
  return __atomic_add_fetch(&counts[call], 1, __ATOMIC_SEQ_CST) == fail_at && call == fail_call;
}

extern "C" {

#define REAL(name) static auto real_##name = reinterpret_cast<decltype(&::name)>(dlsym(RTLD_NEXT, #name))

int open(const char* path, int flags, ...) {
  REAL(open);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = static_cast<mode_t>(va_arg(ap, unsigned int));
    va_end(ap);
  }
  if (hit(C_OPEN, path_matches(path))) {
    errno = fail_errno;
    return -1;
  }
  return real_open(path, flags, mode);
}
int open64(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = static_cast<mode_t>(va_arg(ap, unsigned int));
    va_end(ap);
  }
  return open(path, flags, mode);
}

static ssize_t do_pread(int fd, void* buf, size_t n, off_t off) {
  REAL(pread);
  if (hit(C_PREAD, fd_matches(fd))) {
    if (fail_short && n > 1) return real_pread(fd, buf, n / 2, off);
    errno = fail_errno;
    return -1;
  }
  return real_pread(fd, buf, n, off);
}
ssize_t pread(int fd, void* buf, size_t n, off_t off) { return do_pread(fd, buf, n, off); }
ssize_t pread64(int fd, void* buf, size_t n, off_t off) { return do_pread(fd, buf, n, off); }

void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  REAL(mmap);
  if (fd >= 0 && hit(C_MMAP, fd_matches(fd))) {
    errno = fail_errno == ENOSPC ? ENOMEM : EIO;
    return MAP_FAILED;
  }
  return real_mmap(addr, len, prot, flags, fd, off);
}
void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off) { return mmap(addr, len, prot, flags, fd, off); }

ssize_t write(int fd, const void* buf, size_t n) {
  REAL(write);
  if (fd > 2 && hit(C_WRITE, fd_matches(fd))) {
    if (fail_short && n > 1) return real_write(fd, buf, n / 2);
    errno = fail_errno;
    return -1;
  }
  return real_write(fd, buf, n);
}

int fsync(int fd) {
  REAL(fsync);
  if (hit(C_FSYNC, fd_matches(fd))) {
    errno = fail_errno == EINTR ? EIO : fail_errno;
    return -1;
  }
  return real_fsync(fd);
}

int rename(const char* from, const char* to) {
  REAL(rename);
  if (hit(C_RENAME, path_matches(to))) {
    errno = fail_errno == EINTR ? EIO : fail_errno;
    return -1;
  }
  return real_rename(from, to);
}

}  // extern "C"
