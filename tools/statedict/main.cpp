// The statedict command line tool: inspect, diff and convert checkpoints without Python.
#include <statedict/statedict.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include <unistd.h>
#include <iostream>
#include <map>

namespace {

constexpr int exit_ok = 0, exit_not_ok = 1, exit_error = 2;

struct TreeSummary {
  std::size_t tensors = 0;
  std::uint64_t bytes = 0;
};

TreeSummary summarize(const statedict::Value& v) {
  TreeSummary s;
  for (const auto& t : statedict::detail::lazy_tensors(v)) {
    ++s.tensors;
    s.bytes += static_cast<std::uint64_t>(t.tensor.numel()) * t.tensor.element_size();
  }
  return s;
}

std::string describe(const statedict::Value& v) {
  using statedict::Kind;
  if (v.kind() == Kind::tensor) {
    const statedict::NamedTensor t = v.named();
    return "tensor " + t.dtype() + " " + statedict::shape_text(t.shape());
  }
  const TreeSummary s = summarize(v);
  std::string r = v.kind() == Kind::object                    ? v.type_name()
                  : v.kind() == Kind::dict || v.is_sequence() ? v.type_name() + " of " + std::to_string(v.size())
                                                              : v.type_name();
  if (s.tensors > 0) return r + ": " + std::to_string(s.tensors) + " tensors, " + statedict::bytes_text(s.bytes);
  return r + ": " + v.repr(70);
}

/// Values that are not tensors (epoch, args, an optimizer's param_groups): a dict or sequence that
/// holds tensors is walked into, anything else is one entry under its dotted key.
struct PlainValue {
  std::string key, type, repr;
  statedict::Value value;
};
void plain_values(const statedict::Value& v, const std::string& key, std::vector<PlainValue>& out) {
  if (v.is_tensor()) return;
  // Dicts are walked down to their leaves, and so are lists of dicts (param_groups.0.lr); a list
  // of plain values (param_groups.0.params), a set or an object without tensors is one entry.
  bool walk = v.is_dict() || summarize(v).tensors > 0;
  if (!walk && v.is_sequence())
    for (std::size_t i = 0; i < v.size() && !walk; ++i) walk = v[i].is_dict() || v[i].is_sequence();
  if (walk && v.size() > 0) {
    const std::string dot = key.empty() ? "" : key + ".";
    if (v.is_dict()) {
      const auto items = v.items();
      const auto keys = v.keys();
      for (std::size_t i = 0; i < items.size(); ++i) plain_values(items[i].second, dot + keys[i], out);
    } else {
      for (std::size_t i = 0; i < v.size(); ++i) plain_values(v[i], dot + std::to_string(i), out);
    }
    return;
  }
  if (!v.unreadable().empty()) return;  // listed as "not read as tensors"
  out.push_back({key, v.type_name(), v.repr(60), v});
}
std::vector<PlainValue> plain_values(const statedict::Value& root) {
  std::vector<PlainValue> out;
  plain_values(root, "", out);
  return out;
}

/// A value as JSON: numbers, bools, strings and None as themselves, anything else as its repr.
nlohmann::ordered_json json_value(const PlainValue& p) {
  using statedict::Kind;
  const statedict::Value& v = p.value;
  switch (v.kind()) {
  case Kind::none:
    return nullptr;
  case Kind::boolean:
    return v.as_bool();
  case Kind::string:
    return v.as_string();
  case Kind::integer:
    try {
      return v.as_int();
    } catch (const statedict::Error&) {}  // wider than 64 bits: its repr (hex)
    break;
  case Kind::floating:
    if (std::isfinite(v.as_double())) return v.as_double();
    break;
  default:
    break;
  }
  return p.repr;
}

/// Tensor-like values that are not tensors here: nothing vanishes without a word.
void print_unreadable(const statedict::Value& root) {
  const auto bad = root.unreadable();
  if (bad.empty()) return;
  std::cout << "\nnot read as tensors (" << bad.size() << "):\n";
  for (const auto& u : bad) std::cout << "  " << u.key << "  " << u.type << ": " << u.reason << "\n";
}

void print_human(const statedict::Checkpoint& ck, const statedict::Value& root, const std::string& select) {
  const auto tensors = statedict::detail::lazy_tensors(root);
  std::uint64_t bytes = 0;
  for (const auto& t : tensors) bytes += static_cast<std::uint64_t>(t.tensor.numel()) * t.tensor.element_size();
  std::cout << "file:    " << ck.path() << "\n";
  std::cout << "format:  " << statedict::format_name(ck.format());
  if (!ck.module_class().empty()) std::cout << " (whole pickled module " << ck.module_class() << ")";
  std::cout << "\n";
  if (!select.empty()) std::cout << "select:  " << select << "\n";
  std::cout << "tensors: " << tensors.size() << " (" << statedict::bytes_text(bytes) << ")\n";
  for (const auto& [k, v] : ck.metadata()) std::cout << "metadata: " << k << " = " << v << "\n";
  // The top of the tree: what each top-level key holds, so nesting is visible at a glance.
  if (root.is_dict()) {
    std::size_t top_tensors = 0;
    std::vector<std::pair<std::string, std::string>> rows;
    const auto items = root.items();
    const auto keys = root.keys();
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (items[i].second.is_tensor()) {
        ++top_tensors;
        continue;
      }
      rows.emplace_back(keys[i], describe(items[i].second));
    }
    if (!rows.empty()) {
      std::cout << "\ntop level:\n";
      std::size_t w = 0;
      for (const auto& r : rows) w = std::max(w, r.first.size());
      for (const auto& r : rows) std::cout << "  " << r.first << std::string(w - r.first.size() + 2, ' ') << r.second << "\n";
      if (top_tensors > 0) std::cout << "  (and " << top_tensors << " tensors at the top level)\n";
    }
  } else {
    std::cout << "\ntop level: " << describe(root) << "\n";
  }
  // Every value that is not a tensor (epoch, args, an optimizer's param_groups), under its key.
  const std::vector<PlainValue> values = plain_values(root);
  if (!values.empty()) {
    std::cout << "\nvalues (" << values.size() << "):\n";
    std::size_t w = 0;
    for (const auto& p : values) w = std::max(w, p.key.size());
    for (std::size_t i = 0; i < values.size() && i < 40; ++i)
      std::cout << "  " << values[i].key << std::string(w - values[i].key.size() + 2, ' ') << values[i].type << ": " << values[i].repr
                << "\n";
    if (values.size() > 40) std::cout << "  ... and " << values.size() - 40 << " more (all of them with --json)\n";
  }
  if (tensors.empty()) return print_unreadable(root);
  std::size_t wk = 3, wd = 5;
  for (const auto& t : tensors) {
    wk = std::max(wk, t.key.size());
    wd = std::max(wd, t.dtype().size());
  }
  std::cout << "\n"
            << "key" << std::string(wk - 1, ' ') << "dtype" << std::string(wd - 3, ' ') << "shape\n";
  for (const auto& t : tensors) {
    const std::string dt = t.dtype();
    std::cout << t.key << std::string(wk - t.key.size() + 2, ' ') << dt << std::string(wd - dt.size() + 2, ' ')
              << statedict::shape_text(t.shape()) << "\n";
  }
  print_unreadable(root);
}

int run_inspect(const std::string& file, const std::string& select, bool json, bool hash) {
  const statedict::Checkpoint ck = statedict::read(file);
  const statedict::Value root = select.empty() ? ck.root() : ck.at(select);
  if (!json) {
    print_human(ck, root, select);
    return exit_ok;
  }
  nlohmann::ordered_json out;
  out["file"] = file;
  out["format"] = statedict::format_name(ck.format());
  if (!select.empty()) out["select"] = select;
  if (!ck.metadata().empty()) out["metadata"] = ck.metadata();
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& t : statedict::detail::lazy_tensors(root)) {
    nlohmann::ordered_json e;
    e["key"] = t.key;
    e["dtype"] = t.dtype();
    e["shape"] = t.shape();
    if (hash) e["sha256"] = statedict::tensor_sha256(statedict::detail::resolve(t));
    list.push_back(std::move(e));
  }
  out["tensors"] = std::move(list);
  nlohmann::ordered_json values = nlohmann::ordered_json::array();
  for (const auto& p : plain_values(root)) values.push_back({{"key", p.key}, {"type", p.type}, {"value", json_value(p)}});
  out["values"] = std::move(values);
  nlohmann::ordered_json unreadable = nlohmann::ordered_json::array();
  for (const auto& u : root.unreadable()) unreadable.push_back({{"key", u.key}, {"type", u.type}, {"reason", u.reason}});
  out["unreadable"] = std::move(unreadable);
  std::cout << out.dump(1) << "\n";
  return exit_ok;
}

/// Key-rule flags shared by diff and convert, kept in the order they were given.
struct KeyFlags {
  std::vector<std::string> strip, add, rename, shard;
  CLI::Option *strip_opt = nullptr, *add_opt = nullptr, *rename_opt = nullptr;

  void add_to(CLI::App* cmd) {
    strip_opt = cmd->add_option("--strip-prefix", strip, "Remove this prefix from checkpoint keys that have it (repeatable)");
    add_opt = cmd->add_option("--add-prefix", add, "Put this prefix in front of every checkpoint key (repeatable)");
    rename_opt = cmd->add_option("--rename", rename, "REGEX=REPLACEMENT applied to checkpoint keys (ECMAScript regex, repeatable)");
    cmd->add_option(
        "--shard", shard,
        "GLOB:DIM:RANK:WORLD: keys matching GLOB keep rank RANK's torch.chunk slice along DIM (tensor parallelism, repeatable)");
  }
  /// Applies the flags to options in command-line order (shards after the key rules).
  void apply(const CLI::App& app, statedict::LoadOptions& o) const {
    for (const std::string& sh : shard) {
      std::int64_t v[3];
      std::size_t end = sh.size();
      for (int k = 2; k >= 0; --k) {
        const auto colon = sh.rfind(':', end - 1);
        char* stop = nullptr;
        const std::string part = colon == std::string::npos ? std::string() : sh.substr(colon + 1, end - colon - 1);
        v[k] = std::strtoll(part.c_str(), &stop, 10);
        if (colon == std::string::npos || colon == 0 || part.empty() || *stop != '\0')
          throw statedict::Error("options.bad_shard", "", "--shard " + sh, "expected GLOB:DIM:RANK:WORLD, e.g. 'layers.*.w1.weight:0:1:2'");
        end = colon;
      }
      o.shard(sh.substr(0, end), v[0], v[1], v[2]);
    }
    std::size_t is = 0, ia = 0, ir = 0;
    for (const CLI::Option* opt : app.parse_order()) {
      if (opt == strip_opt)
        o.strip_prefix(strip.at(is++));
      else if (opt == add_opt)
        o.add_prefix(add.at(ia++));
      else if (opt == rename_opt) {
        const std::string& r = rename.at(ir++);
        const auto eq = r.rfind('=');
        if (eq == std::string::npos) throw statedict::Error("options.bad_rename", "", "--rename " + r, "expected REGEX=REPLACEMENT");
        o.rename(r.substr(0, eq), r.substr(eq + 1));
      }
    }
    // A rename that is not a regex is a bad argument (exit 2, one line), not a failed load.
    for (const statedict::KeyRule& rule : o.rules()) {
      if (rule.kind != statedict::KeyRule::Kind::rename) continue;
      try {
        const std::vector<statedict::KeyRule> one{rule};
        const statedict::detail::KeyRewriter check(one);
      } catch (const statedict::Error& e) {
        throw statedict::Error(e.id(), "", "--rename " + rule.pattern + "=" + rule.replacement, e.reason());
      }
    }
  }
};

int run_diff(const CLI::App& cmd, const std::string& target_path, const std::string& source_path, const std::string& select,
             const std::string& submodule, bool auto_, bool lenient, bool json, const KeyFlags& keys) {
  const statedict::Checkpoint target = statedict::read(target_path);  // unreadable target: exit 2 via the handler
  statedict::LoadOptions o;
  if (!select.empty()) o.select(select);
  if (!submodule.empty()) o.submodule(submodule);
  if (auto_) o.auto_select().auto_prefix();
  if (lenient) o.lenient();
  keys.apply(cmd, o);
  statedict::LoadReport r;
  try {
    r = statedict::diff(target, statedict::read(source_path, o.read_options()), o);
  } catch (const statedict::Error& e) {
    if (json) std::cout << nlohmann::json{{"ok", false}, {"error", {{"id", e.id()}, {"message", e.what()}}}}.dump(1) << "\n";
    throw;
  }
  if (json)
    std::cout << r.to_json().dump(1) << "\n";
  else
    std::cout << r;
  return r.ok() ? exit_ok : exit_not_ok;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

/// The format convert writes to OUT: from --format, else from OUT's extension; anything else is a
/// bad argument (a typo such as out.onnx would otherwise silently become a torch zip).
statedict::SaveOptions::Format output_format(const std::string& out, const std::string& format) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (out.empty() || out.back() == '/' || fs::is_directory(out, ec))
    throw statedict::Error("options.bad_output", "", "OUT " + out,
                           "is a directory; name the file to write, e.g. " + (fs::path(out) / "model.safetensors").string());
  if (format == "torch") return statedict::SaveOptions::Format::torch;
  if (format == "safetensors") return statedict::SaveOptions::Format::safetensors;
  if (!format.empty()) throw statedict::Error("options.bad_output", "", "--format " + format, "expected torch or safetensors");
  if (ends_with(out, ".safetensors")) return statedict::SaveOptions::Format::safetensors;
  for (const char* ext : {".pt", ".pth", ".bin", ".ckpt"})
    if (ends_with(out, ext)) return statedict::SaveOptions::Format::torch;
  throw statedict::Error("options.bad_output", "", "OUT " + out,
                         "convert writes a torch.save zip (.pt, .pth, .bin, .ckpt) or safetensors (.safetensors); "
                         "name the file so, or pass --format torch|safetensors");
}

int run_convert(const CLI::App& cmd, const std::string& in, const std::string& out, const std::string& select, const std::string& dtype,
                const std::string& format, std::uint64_t max_shard, const KeyFlags& keys) {
  const statedict::SaveOptions::Format fmt = output_format(out, format);
  const statedict::Checkpoint ck = statedict::read(in);
  const statedict::Value root = select.empty() ? ck.root() : ck.at(select);
  statedict::LoadOptions o;
  keys.apply(cmd, o);
  const statedict::detail::KeyRewriter rewrite(o.rules());
  std::optional<c10::ScalarType> to;
  if (!dtype.empty()) {
    const statedict::detail::Dtype dt = statedict::detail::dtype_from_torch(dtype);
    if (dt == nullptr || !statedict::detail::native(dt) || !c10::isFloatingType(dt->type))
      throw statedict::Error("options.bad_dtype", "", "--dtype " + dtype, "expected float16, bfloat16, float32 or float64");
    to = dt->type;
  }
  std::vector<statedict::NamedTensor> tensors;
  std::vector<char> fired;  // per key rule: did it change a key
  std::uint64_t total = 0;
  // Every tensor that is cast, sliced or stored in DCP chunks is made only when it is written, so
  // the conversion holds about one tensor at a time.
  for (auto& t : statedict::detail::lazy_tensors(root)) {
    statedict::detail::LazyTensor make;
    if (t.lazy)
      make = *t.lazy;
    else
      make.base = t.tensor;
    bool lazy = static_cast<bool>(t.lazy);
    std::vector<std::int64_t> shape = t.shape();
    const statedict::detail::Dtype raw = t.raw_dtype != nullptr ? statedict::detail::dtype_from_torch(t.raw_dtype) : nullptr;
    c10::ScalarType type = t.tensor.scalar_type();
    if (to && raw == nullptr && c10::isFloatingType(type) && type != *to) {
      make.cast = *to;
      type = *to;
      lazy = true;
    }
    std::string key = rewrite.apply(t.key, nullptr, &fired);
    if (const auto* sh = statedict::detail::shard_for(o, key)) {
      const std::int64_t dims = static_cast<std::int64_t>(shape.size()), dim = sh->dim < 0 ? sh->dim + dims : sh->dim;
      if (dim < 0 || dim >= dims)
        throw statedict::Error("options.bad_shard", in, key,
                               "--shard dim " + std::to_string(sh->dim) + " of a " + std::to_string(dims) + "-d tensor");
      const auto [start, len] = statedict::detail::chunk_range(shape[static_cast<std::size_t>(dim)], sh->rank, sh->world);
      make.dim = dim;
      make.start = start;
      make.len = len;
      shape[static_cast<std::size_t>(dim)] = len;
      lazy = true;
    }
    if (!lazy) {
      tensors.push_back({std::move(key), t.tensor, t.raw_dtype});
    } else {
      const statedict::detail::Dtype dt = raw != nullptr ? raw : statedict::detail::find_dtype(type);
      tensors.push_back({std::move(key), statedict::detail::placeholder(dt, shape), t.raw_dtype,
                         std::make_shared<const statedict::detail::LazyTensor>(std::move(make))});
    }
    total += statedict::detail::tensor_bytes(tensors.back().tensor);
  }
  statedict::SaveOptions so;
  so.format(fmt);
  so.max_shard_size(max_shard);
  for (const auto& [k, v] : ck.metadata()) so.metadata(k, v);
  // A progress bar on stderr for large files when a person is watching.
  if (::isatty(2) && total > (64u << 20))
    so.progress([](std::uint64_t done, std::uint64_t all) {
      const int pct = all ? static_cast<int>(done * 100 / all) : 100;
      std::fprintf(stderr, "\r[%-40s] %3d%%", std::string(static_cast<std::size_t>(pct * 40 / 100), '#').c_str(), pct);
      if (done >= all) std::fprintf(stderr, "\n");
    });
  statedict::save(tensors, out, so);
  std::cout << "wrote " << tensors.size() << " tensors (" << statedict::bytes_text(total) << ") to " << out
            << (max_shard && total > max_shard ? " (sharded, see " + out + ".index.json)" : std::string()) << "\n";
  // Only tensors are written: say what stayed behind.
  const std::vector<PlainValue> left = plain_values(root);
  const auto bad = root.unreadable();
  if (!left.empty()) {
    std::cout << "not carried over (" << left.size() << " value(s) that are not tensors):";
    for (std::size_t i = 0; i < left.size() && i < 8; ++i) std::cout << (i ? ", " : " ") << left[i].key << " (" << left[i].type << ")";
    std::cout << (left.size() > 8 ? ", ..." : "") << "\n";
  }
  if (!bad.empty())
    std::cout << "not carried over (" << bad.size() << " tensor-like value(s) not read as tensors; see statedict inspect)\n";
  for (const std::string& w : statedict::detail::unused_rules(o.rules(), fired)) std::cerr << "statedict: warning: " << w << "\n";
  return exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"statedict: inspect, diff and convert PyTorch checkpoints without Python"};
  app.set_version_flag("--version", std::string("statedict ") + statedict::version_string);
  app.require_subcommand(1);

  std::string file, select;
  bool json = false, hash = false;
  auto* inspect =
      app.add_subcommand("inspect", "Show what a checkpoint holds: the top of its tree, then key, dtype and shape of every tensor");
  inspect->add_option("FILE", file, "Checkpoint file (torch.save zip or legacy, safetensors, TorchScript, sharded index or its folder)")
      ->required();
  inspect->add_option("--select", select, "Only the sub-tree at this dotted path, e.g. model or state_dict");
  inspect->add_flag("--json", json, "Machine-readable output: {file, format, tensors: [{key, dtype, shape, sha256}]}");
  inspect->add_flag("--hash", hash, "Add the SHA-256 of each tensor's contiguous little-endian bytes");

  std::string target, source, submodule;
  bool auto_ = false, lenient = false;
  KeyFlags diff_keys;
  auto* diff = app.add_subcommand(
      "diff", "Report what loading SOURCE into a model whose state dict is TARGET would do (exit 0 ok, 1 not, 2 unreadable)");
  diff->add_option("TARGET", target, "Checkpoint standing for the model (its tensors are the model's keys, shapes and dtypes)")->required();
  diff->add_option("SOURCE", source, "Checkpoint to load")->required();
  diff->add_option("--select", select, "Take SOURCE's tensors under this dotted path");
  diff->add_flag("--auto", auto_, "auto_select + auto_prefix: find the sub-tree and the prefix difference");
  diff->add_option("--submodule", submodule,
                   "Only SOURCE's keys under this prefix (e.g. backbone.), with it removed; the rest is left aside");
  diff->add_flag("--lenient", lenient, "Missing, unexpected and mis-shaped tensors are reported, not errors");
  diff->add_flag("--json", json, "Print the report as JSON");
  diff_keys.add_to(diff);

  std::string in, out_path, dtype, format;
  std::uint64_t max_shard = 0;
  KeyFlags convert_keys;
  auto* convert = app.add_subcommand(
      "convert", "Rewrite a checkpoint as a torch.save zip or safetensors (by OUT's extension), fixing keys and dtypes on the way");
  convert->add_option("IN", in, "Any checkpoint statedict reads")->required();
  convert->add_option("OUT", out_path, "Output file: *.safetensors, or *.pt/*.pth/*.bin/*.ckpt for a torch.save zip")->required();
  convert->add_option("--format", format, "torch or safetensors, whatever OUT's extension")->check(CLI::IsMember({"torch", "safetensors"}));
  convert->add_option("--select", select, "Only the tensors under this dotted path");
  convert->add_option("--dtype", dtype, "Cast floating-point tensors: float16, bfloat16, float32 or float64");
  convert->add_option("--max-shard-size", max_shard, "Shard into files of at most this many bytes, with OUT.index.json");
  convert_keys.add_to(convert);

  // A mistyped command gets the closest name (CLI11 alone says only that a subcommand is required).
  const std::vector<std::string> commands{"inspect", "diff", "convert"};
  if (argc > 1 && argv[1][0] != '-' && std::find(commands.begin(), commands.end(), argv[1]) == commands.end()) {
    const std::string typed = argv[1];
    std::string best;
    std::size_t best_d = 4;
    for (const std::string& name : commands) {
      const std::size_t d = statedict::detail::edit_distance(typed, name, 3);
      if (d < best_d) best = name, best_d = d;
    }
    std::cerr << "statedict: error: unknown command '" << typed << "'" << (best.empty() ? "" : "; did you mean '" + best + "'?")
              << " (commands: inspect, diff, convert; see statedict --help)\n";
    return exit_error;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) { return app.exit(e) == 0 ? exit_ok : exit_error; }
  try {
    if (*inspect) return run_inspect(file, select, json, hash);
    if (*diff) {
      file = source;
      return run_diff(*diff, target, source, select, submodule, auto_, lenient, json, diff_keys);
    }
    if (*convert) {
      file = in;
      return run_convert(*convert, in, out_path, select, dtype, format, max_shard, convert_keys);
    }
    return exit_error;
  } catch (const statedict::Error& e) {
    std::cerr << "statedict: error: " << e.what() << "\n";
    return exit_error;
  } catch (const std::exception& e) {
    std::cerr << "statedict: error: " << file << ": " << e.what() << "\n";
    return exit_error;
  }
}
