// Side-by-side load benchmark. Every figure is measured in this run, on this machine, each
// measurement in a fresh child process (so peak RSS is its own), and reported as a median.
//
//   bench WORKDIR [--runs N] [--quick] [--tensor-parallel | --skip-tensor-parallel | --many] [--torch2 PYTHON]
//
// WORKDIR holds the checkpoints benchmarks/make_checkpoints.py wrote (benchmarks/run.sh does both).
// Exits 1 when a load fails or loads values other than Python's.
#include <statedict/statedict.hpp>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  double seconds = 0;
  double peak_mib = 0;  // peak RSS above the model, MiB
  double read_mib = 0;  // bytes read by read/pread system calls (rchar), MiB
  bool ok = true;
  double release_seconds = 0;  // zero-copy: freeing the model's replaced memory, after the load
  double check = 0;            // tensor parallel: the sum of the rank's parameters, compared across sources
};

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field) + 1));
  return 0;
}
/// Bytes this process has read through read-like system calls (mapped pages do not count).
double rchar_mib() {
  std::ifstream in("/proc/self/io");
  std::string key;
  long long v = 0;
  while (in >> key >> v)
    if (key == "rchar:") return static_cast<double>(v) / (1 << 20);
  return 0;
}
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

/// What a child measures with: `timed(fn)` around the measured part (clock and peak RSS),
/// `release(fn)` around freeing what the load replaced (clock only).
struct Timer {
  Sample& s;
  void operator()(const std::function<void()>& fn) const {
    reset_peak();
    const long base = status_kib("VmRSS:");
    const double read0 = rchar_mib();
    const auto t0 = Clock::now();
    fn();
    s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    s.read_mib = rchar_mib() - read0;
    s.peak_mib = static_cast<double>(status_kib("VmHWM:") - base) / 1024.0;
  }
  void release(const std::function<void()>& fn) const {
    const auto t0 = Clock::now();
    fn();
    s.release_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  }
};

/// Runs `body` in a child: body prepares (untimed), then calls `timed` around the measured part.
Sample in_child(const std::function<bool(const Timer&)>& body) {
  int fds[2];
  if (::pipe(fds) != 0) return {0, 0, false};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    Sample s;
    s.ok = body(Timer{s});
    if (::write(fds[1], &s, sizeof s) != static_cast<ssize_t>(sizeof s)) ::_exit(3);
    ::_exit(0);
  }
  ::close(fds[1]);
  Sample s{0, 0, false};
  if (::read(fds[0], &s, sizeof s) != static_cast<ssize_t>(sizeof s)) s.ok = false;
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return s;
}

Sample median(std::vector<Sample> v) {
  std::sort(v.begin(), v.end(), [](const Sample& a, const Sample& b) { return a.seconds < b.seconds; });
  return v[v.size() / 2];
}

std::uint64_t file_size(const std::string& p) { return std::filesystem::file_size(p); }

/// 16 x Linear(4096, 4096) and friends: n_layers Linear(width, width) in a Sequential, as in Python.
torch::nn::Sequential make_mlp(int layers, int width) {
  torch::NoGradGuard g;
  torch::nn::Sequential s;
  for (int i = 0; i < layers; ++i) s->push_back(torch::nn::Linear(width, width));
  return s;
}

/// n small parameters named p0..p{n-1}, for the key-count rows.
std::shared_ptr<torch::nn::Module> make_many(int n) {
  auto m = std::make_shared<torch::nn::Module>();
  for (int i = 0; i < n; ++i) m->register_parameter("p" + std::to_string(i), torch::zeros({64}));
  return m;
}

/// Reads a file (or every file of a folder) once, so that every measurement starts from a warm
/// page cache, as the targets assume; the first run of a row is otherwise a disk read.
void warm(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    for (const auto& e : std::filesystem::directory_iterator(path)) warm(e.path().string());
    return;
  }
  std::vector<char> buf(8u << 20);
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  while (::read(fd, buf.data(), buf.size()) > 0) {}
  ::close(fd);
}

/// pread of the whole file into page-aligned, already-touched memory, on `threads` threads that
/// take 64 MiB blocks in turn: the copy limit of the page cache on this machine.
Sample pread_limit(const std::string& path, int threads, std::size_t bounce = 0) {
  return in_child([&](const Timer& timed) {
    // The destination exists and is touched before the clock starts, as a model's memory is, and is
    // page-aligned as tensor memory is: glibc puts a big malloc block 16 bytes past a page boundary,
    // and the kernel copies into that markedly slower (0.2 s instead of 0.12 s for 1 GiB here),
    // which would flatter every ratio below.
    const std::size_t size = file_size(path);
    auto* buf = static_cast<char*>(std::aligned_alloc(4096, (size + 4095) / 4096 * 4096));
    std::memset(buf, 0, size);
    int fd = ::open(path.c_str(), O_RDONLY);
    std::atomic<std::size_t> next{0}, got{0};
    constexpr std::size_t block = 64u << 20;
    // bounce > 0: each pread goes into a buffer of that size the thread reuses, then memcpy.
    auto work = [&] {
      std::vector<char> b(bounce);
      for (std::size_t off; (off = next.fetch_add(block)) < size;) {
        const std::size_t end = std::min(size, off + block);
        for (std::size_t at = off; at < end;) {
          const std::size_t want = bounce > 0 ? std::min(bounce, end - at) : end - at;
          const ssize_t n = ::pread(fd, bounce > 0 ? b.data() : buf + at, want, static_cast<off_t>(at));
          if (n <= 0) return;
          if (bounce > 0) std::memcpy(buf + at, b.data(), static_cast<std::size_t>(n));
          at += static_cast<std::size_t>(n);
          got += static_cast<std::size_t>(n);
        }
      }
    };
    timed([&] {
      std::vector<std::thread> helpers;
      for (int t = 1; t < threads; ++t) helpers.emplace_back(work);
      work();
      for (auto& h : helpers) h.join();
    });
    ::close(fd);
    std::free(buf);
    return got.load() == size;
  });
}

Sample statedict_load(const std::function<std::shared_ptr<torch::nn::Module>()>& make, const std::string& path, bool zero_copy,
                      int threads = 0, std::optional<bool> buffered = std::nullopt) {
  return in_child([&](const Timer& timed) {
    auto m = make();
    bool ok = false;
    auto opts = statedict::LoadOptions{}.zero_copy(zero_copy).threads(threads);
    if (buffered) opts.buffered_reads(*buffered);
    timed([&] { ok = statedict::load(m, path, opts).ok(); });
    return ok;
  });
}

/// Zero-copy, split in two: the load itself (the model's replaced storages kept alive by an alias
/// until the clock stops), then giving the model's initial memory back to the kernel, which any
/// replacement of touched memory pays and which grows with the model, not with statedict's work.
Sample zero_copy_split(const std::function<std::shared_ptr<torch::nn::Module>()>& make, const std::string& path) {
  return in_child([&](const Timer& timed) {
    auto m = make();
    std::vector<at::Tensor> initial;
    for (const auto& t : statedict::detail::module_targets(*m)) initial.push_back(t.tensor.detach());
    bool ok = false;
    timed([&] { ok = statedict::load(m, path, statedict::LoadOptions{}.zero_copy()).ok(); });
    timed.release([&] { initial.clear(); });
    return ok;
  });
}

/// True when every parameter and buffer statedict loaded has the sha256 Python's load_state_dict
/// produced (make_checkpoints.py wrote them). Runs in a child, untimed.
bool same_values_as_python(const std::function<std::shared_ptr<torch::nn::Module>()>& make, const std::string& path,
                           const std::string& values_json, bool zero_copy) {
  return in_child([&](const Timer& timed) {
           auto m = make();
           timed([] {});
           if (!statedict::load(m, path, statedict::LoadOptions{}.zero_copy(zero_copy)).ok()) return false;
           std::ifstream in(values_json);
           const auto want = nlohmann::json::parse(in);
           std::size_t checked = 0;
           for (const auto& t : statedict::detail::module_targets(*m)) {
             if (!want.contains(t.key) || want[t.key] != statedict::tensor_sha256(t.tensor)) {
               std::cerr << path << ": " << t.key << " differs from Python's\n";
               return false;
             }
             ++checked;
           }
           return checked == want.size();
         })
      .ok;
}

Sample libtorch_load(const std::function<std::shared_ptr<torch::nn::Module>()>& make, const std::string& plain_dict_path) {
  return in_child([&](const Timer& timed) {
    auto m = make();
    bool ok = true;
    timed([&] {
      std::ifstream in(plain_dict_path, std::ios::binary);
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      auto dict = torch::pickle_load(bytes).toGenericDict();
      torch::NoGradGuard g;
      for (auto& p : m->named_parameters()) p.value().copy_(dict.at(p.key()).toTensor());
    });
    return ok;
  });
}

/// Median of `runs` PyTorch loads by benchmarks/py_load.py (MODE FILE N), each in its own process,
/// run by `python` (/usr/bin/python3: PyTorch 1.13, or 2.14 in the sid root; "bash scripts/trixie.sh python3": PyTorch 2.6).
Sample python_load(const std::string& python, const std::string& mode, const std::string& path, int n, int runs) {
  std::vector<Sample> v;
  for (int r = 0; r < runs; ++r) {
    const std::string cmd = python + " benchmarks/py_load.py " + mode + " '" + path + "' " + std::to_string(n) + " 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    Sample s{0, 0, false};
    if (p != nullptr) {
      s.ok = std::fscanf(p, "%lf %lf %lf", &s.seconds, &s.peak_mib, &s.read_mib) == 3;
      s.ok = ::pclose(p) == 0 && s.ok;
    }
    v.push_back(s);
  }
  return median(v);
}

/// A Python with PyTorch that the rows compare against, named by what it reports of itself
/// (`py_load.py version`): the same binary is PyTorch 1.13 on bookworm and 2.14 in the sid root.
struct Anchor {
  std::string python;
  std::string torch;                                                   // "1.13.1", "2.14.1"; empty when it could not be asked
  std::string safetensors;                                             // "0.8.0"; empty when that package is missing
  bool has_mmap() const { return !torch.empty() && torch[0] >= '2'; }  // torch.load(mmap=True): 2.1+
  std::string name() const { return "PyTorch " + (torch.empty() ? std::string("?") : torch); }
};

Anchor ask_anchor(const std::string& python) {
  Anchor a{python, "", ""};
  FILE* p = ::popen((python + " benchmarks/py_load.py version 2>/dev/null").c_str(), "r");
  if (p == nullptr) return a;
  char t[64] = {0}, st[64] = {0};
  if (std::fscanf(p, "%63s %63s", t, st) == 2) {
    a.torch = t;
    if (std::string(st) != "-") a.safetensors = st;
  }
  ::pclose(p);
  return a;
}

/// Drops a file's (or a folder's files') pages from the page cache: the next load reads from disk.
void evict(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    for (const auto& e : std::filesystem::directory_iterator(path)) evict(e.path().string());
    return;
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}
/// Bytes of a file (or a folder's files) in the page cache (mincore): after evict() and a load, what
/// the load read from the disk, readahead included, whether through pread or the mapping.
std::uint64_t resident(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    std::uint64_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(path)) n += resident(e.path().string());
    return n;
  }
  const std::size_t size = file_size(path);
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0 || size == 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return 0;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((size + page - 1) / page);
  std::uint64_t n = 0;
  if (::mincore(p, size, in.data()) == 0)
    for (auto b : in) n += (b & 1) ? page : 0;
  ::munmap(p, size);
  return n;
}
std::uint64_t total_size(const std::string& path) {
  if (!std::filesystem::is_directory(path)) return file_size(path);
  std::uint64_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(path)) n += file_size(e.path().string());
  return n;
}

/// Rank `rank` of `world` of the MLP under Megatron-style tensor parallelism: even layers
/// column-parallel (output features split), odd layers row-parallel (input features split).
std::shared_ptr<torch::nn::Module> make_tp_mlp(int layers, int width, int world) {
  torch::NoGradGuard g;
  torch::nn::Sequential s;
  for (int i = 0; i < layers; ++i)
    s->push_back(i % 2 == 0 ? torch::nn::Linear(width, width / world) : torch::nn::Linear(width / world, width));
  return s.ptr();
}
statedict::LoadOptions tp_options(int layers, int rank, int world) {
  statedict::LoadOptions o;
  for (int i = 0; i < layers; ++i) {
    const std::string l = std::to_string(i);
    if (i % 2 == 0)
      o.shard(l + ".weight", 0, rank, world).shard(l + ".bias", 0, rank, world);
    else
      o.shard(l + ".weight", 1, rank, world);
  }
  return o;
}
/// One rank's load: the bytes it makes the kernel read (from a cold page cache, mincore after the
/// load), then its time and peak from a warm one, as every other row is measured.
Sample tp_load(const std::string& path, int layers, int width, int rank, int world) {
  auto run = [&](bool sum) {
    return in_child([&](const Timer& timed) {
      auto m = make_tp_mlp(layers, width, world);
      bool ok = false;
      timed([&] { ok = statedict::load(m, path, tp_options(layers, rank, world)).ok(); });
      // The values, summed after the clock stopped: the same from every source. In the child: a
      // parent that ran a parallel ATen op would fork children whose thread pool is gone.
      if (ok && sum)
        for (const auto& t : statedict::detail::module_targets(*m)) timed.s.check += t.tensor.to(at::kDouble).sum().item<double>();
      return ok;
    });
  };
  evict(path);
  const Sample cold = run(false);
  const double read_mib = static_cast<double>(resident(path)) / (1 << 20);
  warm(path);
  Sample s = run(true);
  s.ok = s.ok && cold.ok;
  s.read_mib = read_mib;
  return s;
}

void row(const std::string& what, const Sample& s, double base_seconds, const char* base_name) {
  char buf[256];
  if (!s.ok) {
    std::snprintf(buf, sizeof buf, "| %-44s | %9s | %9s | %9s | %s |", what.c_str(), "failed", "", "", "");
  } else {
    char ratio[64] = "";
    if (base_seconds > 0 && base_name[0] != '\0') std::snprintf(ratio, sizeof ratio, "%6.2fx %s", s.seconds / base_seconds, base_name);
    std::snprintf(buf, sizeof buf,
                  s.seconds < 0.01 ? "| %-44s | %8.4f s | %6.0f MiB | %6.0f MiB | %s |"
                                   : "| %-44s | %8.3f s | %6.0f MiB | %6.0f MiB | %s |",
                  what.c_str(), s.seconds, s.peak_mib, s.read_mib, ratio);
  }
  std::cout << buf << std::endl;
}

/// The tensor-parallel table; false when a rank failed or loaded other values from another source.
bool tensor_parallel_rows(const std::string& dir, int layers, int width) {
  // Tensor parallelism: each rank of 2 and of 4 loads only its slice of every layer. "bytes read" is
  // what the kernel read from the disk for that rank from a cold page cache (mincore after the load,
  // readahead included); the time is from a warm cache. The baseline is one rank loading it all.
  {
    std::cout << "| tensor parallel, " << layers
              << " x Linear(4096, 4096) | time (slowest rank) | peak RSS above model | "
                 "bytes read (largest rank) | share of the file; time vs whole-model load |\n|---|---|---|---|---|\n";
    const std::string zip = dir + "/mlp" + std::to_string(layers) + ".pt", st = dir + "/mlp" + std::to_string(layers) + ".safetensors";
    auto mlp = [&] { return make_mlp(layers, width).ptr(); };
    bool values_ok = true;
    evict(zip);
    const Sample cold = statedict_load(mlp, zip, false);
    const double whole_read = static_cast<double>(resident(zip)) / (1 << 20);
    warm(zip);
    Sample whole = statedict_load(mlp, zip, false);
    whole.ok = whole.ok && cold.ok;
    whole.read_mib = whole_read;
    row("whole model, 1 rank, torch zip", whole, whole.seconds, "itself");
    std::vector<std::pair<std::string, std::string>> sources{{"torch zip", zip}, {"safetensors", st}};
    for (int w : {2, 4}) {
      const std::string folder = dir + "/mlp" + std::to_string(layers) + "_tp" + std::to_string(w);
      if (std::filesystem::exists(folder + "/.metadata")) sources.emplace_back("DCP written by " + std::to_string(w) + " ranks", folder);
    }
    if (sources.size() == 2) std::cout << "| (no DCP folders: benchmarks/run.sh makes them when the trixie root exists) | | | | |\n";
    std::map<int, std::vector<double>> reference;  // world -> each rank's sum, from the torch zip
    for (const auto& [name, path] : sources) {
      for (int w : {2, 4}) {
        Sample worst{0, 0, true};
        bool same = true;
        for (int r = 0; r < w; ++r) {
          const Sample s = tp_load(path, layers, width, r, w);
          worst.ok = worst.ok && s.ok;
          worst.seconds = std::max(worst.seconds, s.seconds);
          worst.peak_mib = std::max(worst.peak_mib, s.peak_mib);
          worst.read_mib = std::max(worst.read_mib, s.read_mib);
          auto& ref = reference[w];
          if (ref.size() <= static_cast<std::size_t>(r)) ref.push_back(s.check);
          same = same && ref[static_cast<std::size_t>(r)] == s.check;
        }
        values_ok &= same && worst.ok;
        char label[160], share[96];
        std::snprintf(share, sizeof share, "the whole load; %.0f%% of the file",
                      100.0 * worst.read_mib * (1 << 20) / static_cast<double>(total_size(path)));
        std::snprintf(label, sizeof label, "%d ranks, %s%s", w, name.c_str(), same ? "" : " (VALUES DIFFER)");
        row(label, worst, whole.seconds, share);
      }
    }
    std::cout << "\n";
    return values_ok;
  }
}

}  // namespace

/// `bench --zero-copy-child FILE LAYERS`: one zero-copy load as a user makes it (the model's initial
/// memory freed inside the call), in a process the parent started with other glibc tunables. Prints
/// "seconds peak_mib model_huge_page_mib".
int zero_copy_child(const std::string& path, int layers) {
  torch::set_num_threads(2);
  auto m = make_mlp(layers, 4096).ptr();
  const long huge_kib = [] {
    std::ifstream in("/proc/self/smaps_rollup");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("AnonHugePages:", 0) == 0) return std::stol(line.substr(14));
    return 0L;
  }();
  Sample s;
  Timer{s}([&] { s.ok = statedict::load(m, path, statedict::LoadOptions{}.zero_copy()).ok(); });
  std::printf("%f %f %f\n", s.ok ? s.seconds : -1.0, s.peak_mib, static_cast<double>(huge_kib) / 1024.0);
  return s.ok ? 0 : 1;
}

/// The same in a child process whose malloc puts big blocks on transparent huge pages.
Sample zero_copy_on_huge_pages(const std::string& path, int layers, double* huge_mib) {
  const std::string cmd = "GLIBC_TUNABLES=glibc.malloc.hugetlb=1 '" + std::filesystem::read_symlink("/proc/self/exe").string() +
                          "' --zero-copy-child '" + path + "' " + std::to_string(layers);
  Sample s{0, 0, false};
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    s.ok = std::fscanf(p, "%lf %lf %lf", &s.seconds, &s.peak_mib, huge_mib) == 3 && s.seconds >= 0;
    ::pclose(p);
  }
  return s;
}

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--zero-copy-child") return zero_copy_child(argv[2], std::stoi(argv[3]));
  if (argc < 2) {
    std::cerr << "usage: bench WORKDIR [--runs N] [--quick]\n";
    return 2;
  }
  const std::string dir = argv[1];
  int runs = 3;
  bool quick = false, tp_only = false, skip_tp = false, many_only = false;  // --tensor-parallel, --many: only that table
  std::string torch2;  // --torch2 CMD: a python3 with PyTorch 2.x (run.sh: the trixie root's)
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--runs" && i + 1 < argc) runs = std::stoi(argv[++i]);
    if (std::string(argv[i]) == "--quick") quick = true;
    if (std::string(argv[i]) == "--tensor-parallel") tp_only = true;
    if (std::string(argv[i]) == "--torch2" && i + 1 < argc) torch2 = argv[++i];
    if (std::string(argv[i]) == "--skip-tensor-parallel") skip_tp = true;
    if (std::string(argv[i]) == "--many") many_only = true;
  }
  const Anchor a1 = ask_anchor("/usr/bin/python3");
  const Anchor a2 = torch2.empty() ? Anchor{} : ask_anchor(torch2);
  // The newest PyTorch of the run: its mmap=True path is the anchor of the zero-copy target.
  const Anchor& newest = !a2.torch.empty() ? a2 : a1;
  std::cout << "anchors: " << a1.name() << (a1.safetensors.empty() ? "" : ", safetensors " + a1.safetensors) << " (/usr/bin/python3)";
  if (!a2.torch.empty())
    std::cout << "; " << a2.name() << (a2.safetensors.empty() ? "" : ", safetensors " + a2.safetensors) << " (" << torch2 << ")";
  std::cout << "\n";
  std::vector<std::string> targets;  // "target: figure: met/NOT met", printed at the end
  auto target = [&](const std::string& what, double figure, const char* unit, double limit, bool at_most) {
    char buf[300];
    const bool met = at_most ? figure <= limit : figure >= limit;
    std::snprintf(buf, sizeof buf, "- %s %s %.2f%s: %.2f%s, %s", what.c_str(), at_most ? "at most" : "at least", limit, unit, figure, unit,
                  met ? "met" : "NOT met");
    targets.emplace_back(buf);
  };
  torch::set_num_threads(2);
  auto med = [&](const std::function<Sample()>& f) {
    std::vector<Sample> v;
    for (int r = 0; r < runs; ++r) v.push_back(f());
    return median(v);
  };
  // The many-small-tensors table (and its targets): `--many` prints it alone.
  auto many_table = [&] {
    std::cout << "\n| many small tensors (64 floats each) | time | peak RSS above start | per tensor | ratio |\n|---|---|---|---|---|\n";
    auto many_row = [](const std::string& what, int n, const Sample& s, const std::string& ratio) {
      char buf[300];
      if (!s.ok) {
        std::snprintf(buf, sizeof buf, "| %6d tensors: %-38s | failed | | | |", n, what.c_str());
      } else {
        std::snprintf(buf, sizeof buf, "| %6d tensors: %-38s | %8.3f s | %6.0f MiB | %6.2f us | %s |", n, what.c_str(), s.seconds,
                      s.peak_mib, s.seconds / n * 1e6, ratio.c_str());
      }
      std::cout << buf << std::endl;
    };
    for (int n : quick ? std::vector<int>{1000, 10000} : std::vector<int>{1000, 10000, 100000}) {
      const std::string p = dir + "/many" + std::to_string(n) + ".pt";
      if (!std::filesystem::exists(p)) continue;
      warm(p);
      // The read: the file parsed and every tensor's values in memory, as torch.load leaves them.
      // Both are timed up to that point: freeing them comes after the clock, on either side.
      const Sample read = med([&] {
        return in_child([&](const Timer& timed) {
          std::optional<statedict::Checkpoint> ck;
          std::vector<statedict::NamedTensor> tensors;
          timed([&] {
            ck = statedict::read(p);
            tensors = ck->tensors();
          });
          return tensors.size() == static_cast<std::size_t>(n);
        });
      });
      const Sample load = med([&] { return statedict_load([&] { return make_many(n); }, p, false); });
      const Sample match = med([&] {
        return in_child([&](const Timer& timed) {
          auto m = make_many(n);
          const auto ck = statedict::read(p);
          bool ok = false;
          timed([&] { ok = statedict::diff(m, ck).ok(); });
          return ok;
        });
      });
      char ratio[80];
      many_row("statedict read (every tensor in memory)", n, read, "");
      std::snprintf(ratio, sizeof ratio, "%.2fx the read", load.seconds / read.seconds);
      many_row("statedict load into a module", n, load, ratio);
      many_row("statedict matching only (diff)", n, match, "");
      const Sample py1 = python_load(a1.python, "read", p, n, runs);
      std::snprintf(ratio, sizeof ratio, "%.2fx statedict's read", py1.seconds / read.seconds);
      many_row(a1.name() + " torch.load", n, py1, ratio);
      for (const Anchor* a : {&a1, &a2}) {
        if (!a->has_mmap()) continue;  // 1.13's rows above are the read alone, as before
        if (a != &a1) {
          const Sample py2r = python_load(a->python, "read", p, n, runs);
          std::snprintf(ratio, sizeof ratio, "%.2fx statedict's read", py2r.seconds / read.seconds);
          many_row(a->name() + " torch.load", n, py2r, ratio);
        }
        const Sample py2l = python_load(a->python, "load_many", p, n, runs);
        std::snprintf(ratio, sizeof ratio, "%.2fx statedict's load", py2l.seconds / load.seconds);
        many_row(a->name() + " torch.load + load_state_dict", n, py2l, ratio);
      }
      if (n == (quick ? 10000 : 100000)) {
        target("read of " + std::to_string(n) + " tensors, per tensor:", read.seconds / n * 1e6, " us", 3.0, true);
        target("read of " + std::to_string(n) + " tensors, peak above start:", read.peak_mib, " MiB", 100.0, true);
        target("load of " + std::to_string(n) + " tensors / their read:", load.seconds / read.seconds, "x", 2.0, true);
      }
    }
  };
  auto print_targets = [&] {
    std::cout << "\nTargets (issue #16), measured in this run:\n";
    for (const auto& t : targets) std::cout << t << "\n";
  };
  if (many_only) {
    many_table();
    print_targets();
    return 0;
  }
  std::cout << "| measurement | time (median of " << runs << ") | peak RSS above model | bytes read | ratio |\n|---|---|---|---|---|\n";

  if (tp_only) return tensor_parallel_rows(dir, quick ? 4 : 16, 4096) ? 0 : 1;
  // The headline: 16 x Linear(4096, 4096), fp32, 1 GiB.
  const int layers = quick ? 4 : 16, width = 4096;
  auto mlp = [&] { return make_mlp(layers, width).ptr(); };
  const std::string zip = dir + "/mlp" + std::to_string(layers) + ".pt";
  for (const char* suffix : {".pt", ".safetensors", "_legacy.pt", "_fp16.pt", "_plaindict.pt", "_sharded"})
    warm(dir + "/mlp" + std::to_string(layers) + suffix);
  const Sample pread1 = med([&] { return pread_limit(zip, 1); });
  const Sample pread = med([&] { return pread_limit(zip, 2); });
  row("pread of the file, 1 thread", pread1, pread.seconds, "pread2");
  row("pread of the file, 2 threads (the limit)", pread, pread.seconds, "pread2");
  row("pread, 2 threads, through a 256 KiB buffer", med([&] { return pread_limit(zip, 2, 256u << 10); }), pread.seconds, "pread2");
  const Sample copy = med([&] { return statedict_load(mlp, zip, false); });
  row("statedict copy-load, torch zip", copy, pread.seconds, "pread2");
  row("statedict copy-load, torch zip, 1 thread", med([&] { return statedict_load(mlp, zip, false, 1); }), pread.seconds, "pread2");
  row("  with buffered_reads(false): straight", med([&] { return statedict_load(mlp, zip, false, 0, false); }), pread.seconds, "pread2");
  row("  with buffered_reads(true): buffered", med([&] { return statedict_load(mlp, zip, false, 0, true); }), pread.seconds, "pread2");
  const std::string st = dir + "/mlp" + std::to_string(layers) + ".safetensors";
  const Sample copy_st = med([&] { return statedict_load(mlp, st, false); });
  row("statedict copy-load, safetensors", copy_st, pread.seconds, "pread2");
  const Sample copy_legacy = med([&] { return statedict_load(mlp, dir + "/mlp" + std::to_string(layers) + "_legacy.pt", false); });
  row("statedict copy-load, legacy format", copy_legacy, pread.seconds, "pread2");
  row("statedict copy-load, fp16 file into fp32",
      med([&] { return statedict_load(mlp, dir + "/mlp" + std::to_string(layers) + "_fp16.pt", false); }), pread.seconds, "pread2");
  const Sample py = python_load(a1.python, "default", zip, layers, runs);
  row(a1.name() + " torch.load + load_state_dict", py, pread.seconds, "pread2");
  Sample py2_mmap{0, 0, false};
  for (const Anchor* a : {&a1, &a2}) {
    if (a->torch.empty()) continue;
    if (a != &a1)
      row(a->name() + " torch.load + load_state_dict", python_load(a->python, "default", zip, layers, runs), pread.seconds, "pread2");
    if (a->has_mmap()) {
      const Sample m = python_load(a->python, "mmap", zip, layers, runs);
      row(a->name() + " torch.load(mmap=True) + load_state_dict", m, pread.seconds, "pread2");
      if (a == &newest) py2_mmap = m;
    }
    if (!a->safetensors.empty())
      row("safetensors " + a->safetensors + " load_file + load_state_dict (" + a->name() + ")",
          python_load(a->python, "st_load", st, layers, runs), pread.seconds, "pread2");
  }
  const Sample lt = med([&] { return libtorch_load(mlp, dir + "/mlp" + std::to_string(layers) + "_plaindict.pt"); });
  row("LibTorch pickle_load + copy_ (plain dict)", lt, pread.seconds, "pread2");
  // Shards stream one by one (peak far below one shard); a model that needs a quarter of the
  // tensors reads a quarter of the bytes.
  const std::string sharded = dir + "/mlp" + std::to_string(layers) + "_sharded";
  if (std::filesystem::exists(sharded))
    row("statedict copy-load, 4 torch shards (index)", med([&] { return statedict_load(mlp, sharded, false); }), pread.seconds, "pread2");
  const Sample part = med([&] {
    return in_child([&](const Timer& timed) {
      auto m = make_mlp(layers / 4, width).ptr();
      bool ok = false;
      timed([&] { ok = statedict::load(m, zip, statedict::LoadOptions{}.unexpected(statedict::Policy::ignore)).ok(); });
      return ok;
    });
  });
  row("statedict copy-load of 1/4 of the layers", part, pread.seconds, "pread2");
  std::printf("\nstatedict copy-load is %.1fx faster than %s and %.1fx faster than LibTorch", py.seconds / copy.seconds, a1.name().c_str(),
              lt.seconds / copy.seconds);
  if (py2_mmap.ok) std::printf("; %.2fx faster than %s's mmap=True path", py2_mmap.seconds / copy.seconds, newest.name().c_str());
  std::printf(".\n\n");
  for (const auto& [name, s] :
       std::vector<std::pair<std::string, Sample>>{{"torch zip", copy}, {"safetensors", copy_st}, {"legacy", copy_legacy}})
    target("copy-load (" + name + ") / 2-thread pread:", s.seconds / pread.seconds, "x", 1.15, true);
  target("1-thread pread / copy-load:", pread1.seconds / copy.seconds, "x", 1.4, false);
  if (py2_mmap.ok) target(newest.name() + " mmap=True copy-load / statedict copy-load:", py2_mmap.seconds / copy.seconds, "x", 1.4, false);

  // Zero-copy: the load, and separately the kernel taking back the model's initial memory that the
  // load replaced (with 4 KiB pages that is one page-table entry and one page per 4 KiB).
  std::cout << "| zero-copy | time (median of " << runs << ") | peak RSS above model | bytes read | |\n|---|---|---|---|---|\n";
  auto zero_copy_rows = [&](const std::string& what, const std::string& path) {
    std::vector<Sample> v;
    for (int r = 0; r < runs; ++r) v.push_back(zero_copy_split(mlp, path));
    const Sample load = median(v);
    std::sort(v.begin(), v.end(), [](const Sample& a, const Sample& b) { return a.release_seconds < b.release_seconds; });
    Sample rel = v[v.size() / 2];
    rel.seconds = rel.release_seconds;
    rel.peak_mib = 0;
    rel.read_mib = 0;  // the release reads nothing; the load's figure is on the row above
    row("zero-copy load, " + what, load, 0, "");
    row("  then freeing the model's initial memory", rel, load.seconds, "the load");
    row("  both in one call (4 KiB pages)", med([&] { return statedict_load(mlp, path, true); }), load.seconds, "the load");
  };
  zero_copy_rows("torch zip", zip);
  zero_copy_rows("safetensors", st);
  {
    std::vector<Sample> v;
    double huge_mib = 0;
    for (int r = 0; r < runs; ++r) v.push_back(zero_copy_on_huge_pages(zip, layers, &huge_mib));
    char what[120];
    std::snprintf(what, sizeof what, "  one call, model on huge pages (%.0f MiB)", huge_mib);
    row(what, median(v), 0, "");
  }
  if (newest.has_mmap()) {
    // PyTorch's zero-copy twin, one call measured the same way: the model built first, then the
    // clock around load_state_dict(torch.load(mmap=True), assign=True), which frees the replaced
    // parameters inside the call as statedict's one-call rows do.
    const Sample py2_assign = python_load(newest.python, "mmap_assign", zip, layers, runs);
    row(newest.name() + " mmap=True, assign=True (one call)", py2_assign, 0, "");
    std::vector<Sample> v;
    for (int r = 0; r < runs; ++r) v.push_back(statedict_load(mlp, zip, true));
    const Sample ours = median(v);
    if (py2_assign.ok)
      target("statedict zero-copy load (one call, torch zip) / " + newest.name() + " mmap=True, assign=True:",
             ours.seconds / py2_assign.seconds, "x", 1.0, true);
  }

  // Values: what statedict loaded equals what Python's load_state_dict loads, bit for bit.
  bool values_ok = true;
  const std::string values = dir + "/mlp" + std::to_string(layers) + ".values.json";
  const std::string values16 = dir + "/mlp" + std::to_string(layers) + "_fp16.values.json";
  for (const auto& [file, want, zero] :
       std::vector<std::tuple<std::string, std::string, bool>>{{zip, values, false},
                                                               {zip, values, true},
                                                               {st, values, false},
                                                               {st, values, true},
                                                               {dir + "/mlp" + std::to_string(layers) + "_legacy.pt", values, false},
                                                               {dir + "/mlp" + std::to_string(layers) + "_fp16.pt", values16, false}}) {
    const bool same = same_values_as_python(mlp, file, want, zero);
    values_ok &= same;
    std::cout << "\nvalues of " << std::filesystem::path(file).filename().string() << (zero ? " (zero-copy)" : "")
              << (same ? ": every tensor equals Python's (sha256)" : ": DIFFER from Python's");
  }
  std::cout << "\n\n";

  if (!skip_tp) values_ok &= tensor_parallel_rows(dir, layers, width);

  std::cout << "| scaling | time | peak RSS above model | per unit |\n|---|---|---|---|\n";
  for (int n : quick ? std::vector<int>{1, 4} : std::vector<int>{1, 4, 16, 32}) {
    const std::string p = dir + "/mlp" + std::to_string(n) + ".pt";
    if (!std::filesystem::exists(p)) continue;
    warm(p);
    const Sample s = med([&] { return statedict_load([&] { return make_mlp(n, width).ptr(); }, p, false); });
    char buf[200];
    std::snprintf(buf, sizeof buf, "| copy-load %5.0f MiB | %8.3f s | %6.0f MiB | %.3f s/GiB |",
                  static_cast<double>(file_size(p)) / (1 << 20), s.seconds, s.peak_mib,
                  s.seconds / (static_cast<double>(file_size(p)) / (1 << 30)));
    std::cout << buf << std::endl;
  }
  many_table();
  print_targets();
  const bool all_ok = values_ok && pread.ok && copy.ok && py.ok;
  if (!all_ok) std::cout << "\nFAILED: a measurement failed or loaded other values than Python's\n";
  return all_ok ? 0 : 1;
}
