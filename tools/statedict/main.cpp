// The statedict command line tool: inspect, diff and convert checkpoints without Python.
#include <statedict/statedict.hpp>
#include <statedict/detail/match/plan.hpp>  // the key rules, shard ranges and suggestions the commands print

#include "pt2_inspect.hpp"
#include "transform_flags.hpp"

#include <statedict/detail/write/layout.hpp>  // convert's layout changes, forward and --reverse

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <filesystem>
#include <optional>

#include <unistd.h>
#include <iostream>
#include <map>

#if STATEDICT_CLI_AOTI
#include "aoti_commands.hpp"  // inspect and diff of AOTInductor packages through LibTorch's loader
#endif

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
    const statedict::NamedTensor t = statedict::detail::lazy_tensors(v).at(0);  // its shape and dtype; no byte read
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
/// holds tensors is walked into, and so is an object of any class that holds some (a 2017 OpenNMT
/// model keeps its onmt.Optim.Optim, holding the optimizer and its Parameters), each level named as
/// tensors() names it (Value::children); anything else is one entry under its dotted key.
struct PlainValue {
  std::string key, type, repr;
  statedict::Value value;
};
void plain_values(const statedict::Value& v, const std::string& key, std::vector<PlainValue>& out, std::vector<statedict::Value>& on_path) {
  if (v.is_tensor()) return;
  for (const auto& up : on_path)
    if (up.is(v)) return;  // a cycle: Python objects may refer to themselves (tensors() stops there too)
  // Dicts are walked down to their leaves, and so are lists of dicts (param_groups.0.lr); a list
  // of plain values (param_groups.0.params), a set or an object without tensors is one entry.
  bool walk = v.is_dict() || summarize(v).tensors > 0;
  if (!walk && v.is_sequence())
    for (std::size_t i = 0; i < v.size() && !walk; ++i) walk = v[i].is_dict() || v[i].is_sequence();
  const auto children = walk ? v.children() : std::vector<std::pair<std::string, statedict::Value>>{};
  if (!children.empty()) {
    on_path.push_back(v);
    for (const auto& [k, child] : children) plain_values(child, k.empty() ? key : key.empty() ? k : key + "." + k, out, on_path);
    on_path.pop_back();
    return;
  }
  if (!v.unreadable().empty()) return;  // listed as "not read as tensors"
  out.push_back({key, v.type_name(), v.repr(60), v});
}
std::vector<PlainValue> plain_values(const statedict::Value& root) {
  std::vector<PlainValue> out;
  std::vector<statedict::Value> on_path;
  plain_values(root, "", out, on_path);
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

/// What statedict noticed about the file (a name that says another format; an optimizer's state
/// given where weights are expected), one sentence each.
std::vector<std::string> notes(const statedict::Checkpoint& ck, const statedict::Value& root, const std::string& select) {
  std::vector<std::string> out = ck.notes();
  if (statedict::detail::is_optimizer_state(root))
    out.push_back((select.empty() ? std::string("this file") : "'" + select + "'") + " is " + statedict::detail::optimizer_state_words());
  return out;
}

void print_human(const statedict::Checkpoint& ck, const statedict::Value& root, const std::string& select, bool hash) {
  const auto tensors = statedict::detail::lazy_tensors(root);
  std::uint64_t bytes = 0;
  for (const auto& t : tensors) bytes += static_cast<std::uint64_t>(t.tensor.numel()) * t.tensor.element_size();
  std::cout << "file:    " << ck.path() << "\n";
  std::cout << "format:  " << statedict::format_name(ck.format());
  if (!ck.module_class().empty()) std::cout << " (whole pickled module " << ck.module_class() << ")";
  std::cout << "\n";
  for (const auto& n : notes(ck, root, select)) std::cout << "note:    " << n << "\n";
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
  // With --hash a last column: the SHA-256 after the shape, the shapes padded to one width.
  std::size_t ws = 5;
  if (hash)
    for (const auto& t : tensors) ws = std::max(ws, statedict::shape_text(t.shape()).size());
  std::cout << "\n"
            << "key" << std::string(wk - 1, ' ') << "dtype" << std::string(wd - 3, ' ') << "shape"
            << (hash ? std::string(ws - 3, ' ') + "sha256" : std::string()) << "\n";
  for (const auto& t : tensors) {
    const std::string dt = t.dtype(), shape = statedict::shape_text(t.shape());
    std::cout << t.key << std::string(wk - t.key.size() + 2, ' ') << dt << std::string(wd - dt.size() + 2, ' ') << shape;
    if (hash) std::cout << std::string(ws - shape.size() + 2, ' ') << statedict::tensor_sha256(statedict::detail::resolve(t));
    std::cout << "\n";
  }
  print_unreadable(root);
}

/// --trust-package and --model: where the CLI is built with AOTInductor, TARGET/FILE is a package
/// opened with LibTorch's loader.
struct PackageFlags {
  bool trust = false;
  std::string model = "model";
};

int run_inspect(const std::string& file, const std::string& select, bool json, bool hash, const PackageFlags& package) {
#if STATEDICT_CLI_AOTI
  if (package.trust) return statedict_cli_aoti::inspect(file, package.model, json, hash);
#else
  (void)package;
#endif
  // A .pt2 whose weights are compiled into its .so is no checkpoint, but inspect says what it holds.
  const auto pkg = pt2cli::package_of(file);
  if (pkg && pt2cli::weights_unreadable(*pkg)) {
    pt2cli::print_package_only(file, *pkg, json);
    return exit_ok;
  }
  const statedict::Checkpoint ck = statedict::read(file);
  const statedict::Value root = select.empty() ? ck.root() : ck.at(select);
  if (!json) {
    print_human(ck, root, select, hash);
    if (pkg) pt2cli::print_human(*pkg);
    return exit_ok;
  }
  nlohmann::ordered_json out;
  out["file"] = file;
  out["format"] = statedict::format_name(ck.format());
  if (!select.empty()) out["select"] = select;
  out["notes"] = notes(ck, root, select);
  if (!ck.metadata().empty()) out["metadata"] = ck.metadata();
  if (pkg) out.update(pt2cli::to_json(*pkg));
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

/// diff's own flags.
struct DiffFlags {
  std::string select, submodule, missing, unexpected, shape, write_options;
  std::vector<std::string> ignore_missing, ignore_unexpected;
  bool auto_ = false, lenient = false, json = false;
};

/// Key-rule and transform flags shared by diff and convert, kept in the order they were given, and
/// the recipe file they add to.
struct KeyFlags {
  std::vector<std::string> strip, add, rename, shard, segment, tie;
  bool legacy = false;
  CLI::Option *strip_opt = nullptr, *add_opt = nullptr, *rename_opt = nullptr, *segment_opt = nullptr;
  static constexpr statedict::Transform::Kind kinds[] = {statedict::Transform::Kind::transpose, statedict::Transform::Kind::split,
                                                         statedict::Transform::Kind::merge,     statedict::Transform::Kind::stack,
                                                         statedict::Transform::Kind::unstack,   statedict::Transform::Kind::reshape};
  std::vector<std::string> transform_values[6];
  CLI::Option* transform_opts[6] = {};
  std::string recipe;

  /// The recipe file's options (--options), or the defaults; the other flags add to them.
  statedict::LoadOptions base() const { return recipe.empty() ? statedict::LoadOptions{} : statedict::LoadOptions::from_json_file(recipe); }

  void add_to(CLI::App* cmd) {
    cmd->add_option("--options", recipe, "A recipe file (JSON) with the options to start from, as diff --write-options writes it");
    const char* help[6] = {"GLOB: 2-D tensors stored [in, out] (GPT-2's Conv1D) are transposed (repeatable)",
                           "KEY=PART,PART,...@DIM[:SIZE,...]: one checkpoint tensor cut along DIM into module tensors, in equal parts "
                           "or SIZEs; '*' in KEY is carried into the PARTs (repeatable)",
                           "PART,PART,...=KEY@DIM[:SIZE,...]: checkpoint tensors joined along DIM into one module tensor (repeatable)",
                           "PARTS=KEY[@DIM]: numbered checkpoint tensors (PARTS has '#' for the number, 0..E-1) stacked into one "
                           "(repeatable)",
                           "KEY=PARTS[@DIM]: one checkpoint tensor taken apart into numbered module tensors ('#' in PARTS) (repeatable)",
                           "GLOB=FROM:TO: shapes that differ only in size-1 dims, each a comma list of -1 (carried over) and 1, "
                           "e.g. 'proj.*.weight=-1,-1,1,1:-1,-1' (repeatable)"};
    for (int k = 0; k < 6; ++k)
      transform_opts[k] = cmd->add_option(std::string("--") + statedict::Transform::name(kinds[k]), transform_values[k], help[k]);
    strip_opt = cmd->add_option("--strip-prefix", strip, "Remove this prefix from checkpoint keys that have it (repeatable)");
    add_opt = cmd->add_option("--add-prefix", add, "Put this prefix in front of every checkpoint key (repeatable)");
    rename_opt = cmd->add_option("--rename", rename, "REGEX=REPLACEMENT applied to checkpoint keys (ECMAScript regex, repeatable)");
    segment_opt = cmd->add_option("--strip-segment", segment,
                                  "Remove this path segment wherever it stands in checkpoint keys, e.g. _checkpoint_wrapped_module. "
                                  "(repeatable)");
    cmd->add_flag("--legacy-names", legacy,
                  "Rename legacy parameter names on each parent together: LayerNorm gamma/beta, weight_norm's weight_g/weight_v");
    cmd->add_option("--tie", tie,
                    "MODULE_KEY=CKPT_KEY: fill MODULE_KEY from checkpoint tensor CKPT_KEY (tied weights, e.g. "
                    "lm_head.weight=transformer.wte.weight; repeatable)");
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
    std::size_t is = 0, ia = 0, ir = 0, ig = 0, it[6] = {};
    for (const CLI::Option* opt : app.parse_order()) {
      for (int k = 0; k < 6; ++k)
        if (opt == transform_opts[k]) o.transform(transform_flags::parse(kinds[k], transform_values[k].at(it[k]++)));
      if (opt == strip_opt)
        o.strip_prefix(strip.at(is++));
      else if (opt == segment_opt)
        o.strip_segment(segment.at(ig++));
      else if (opt == add_opt)
        o.add_prefix(add.at(ia++));
      else if (opt == rename_opt) {
        const std::string& r = rename.at(ir++);
        const auto eq = r.rfind('=');
        if (eq == std::string::npos) throw statedict::Error("options.bad_rename", "", "--rename " + r, "expected REGEX=REPLACEMENT");
        o.rename(r.substr(0, eq), r.substr(eq + 1));
      }
    }
    if (legacy) o.legacy_names();
    for (const std::string& t : tie) {
      const auto eq = t.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == t.size())
        throw statedict::Error("options.bad_tie", "", "--tie " + t,
                               "expected MODULE_KEY=CKPT_KEY, e.g. lm_head.weight=transformer.wte.weight");
      o.tie(t.substr(0, eq), t.substr(eq + 1));
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

/// A word as the shell reads it back: quoted when it holds anything but plain characters.
std::string shell_word(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("._-/:,+@%=", c) != nullptr;
  });
  if (plain) return s;
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

const char* policy_name(statedict::Policy p) {
  return p == statedict::Policy::error ? "error" : p == statedict::Policy::warn ? "warn" : "ignore";
}

/// The diff flags that mean the same as `o`, one entry a flag with its value; nullopt when `o` uses
/// something diff has no flag for. The library knows no flag names: this is the one place.
std::optional<std::vector<std::string>> diff_flags(const statedict::LoadOptions& o) {
  using statedict::Policy;
  const statedict::LoadOptions defaults;
  std::vector<std::string> f;
  if (!o.select().empty()) f.push_back("--select " + shell_word(o.select()));
  if (o.auto_select() != o.auto_prefix()) return std::nullopt;
  if (o.auto_select()) f.push_back("--auto");
  if (!o.submodule().empty()) f.push_back("--submodule " + shell_word(o.submodule()));
  for (const auto& rule : o.rules()) switch (rule.kind) {
    case statedict::KeyRule::Kind::strip_prefix:
      f.push_back("--strip-prefix " + shell_word(rule.pattern));
      break;
    case statedict::KeyRule::Kind::add_prefix:
      f.push_back("--add-prefix " + shell_word(rule.pattern));
      break;
    case statedict::KeyRule::Kind::rename:
      f.push_back("--rename " + shell_word(rule.pattern + "=" + rule.replacement));
      break;
    case statedict::KeyRule::Kind::strip_segment:
      f.push_back("--strip-segment " + shell_word(rule.pattern));
      break;
    }
  if (!o.rename_families().empty()) {
    // Only the built-in families have a flag.
    const auto legacy = statedict::RenameFamily::legacy();
    if (o.rename_families().size() % legacy.size() != 0) return std::nullopt;
    for (std::size_t i = 0; i < o.rename_families().size(); ++i)
      if (o.rename_families()[i].renames != legacy[i % legacy.size()].renames) return std::nullopt;
    f.push_back("--legacy-names");
  }
  for (const auto& t : o.ties()) f.push_back("--tie " + shell_word(t.module_key + "=" + t.checkpoint_key));
  for (const auto& t : o.transforms())
    f.push_back(std::string("--") + statedict::Transform::name(t.kind) + " " + shell_word(transform_flags::value(t)));
  for (const auto& sh : o.shards())
    f.push_back("--shard " +
                shell_word(sh.glob + ":" + std::to_string(sh.dim) + ":" + std::to_string(sh.rank) + ":" + std::to_string(sh.world)));
  if (o.missing() == Policy::warn && o.unexpected() == Policy::warn && o.shape_mismatch() == Policy::warn)
    f.push_back("--lenient");
  else
    for (const auto& [flag, now, then] :
         {std::tuple{"--missing ", o.missing(), defaults.missing()}, std::tuple{"--unexpected ", o.unexpected(), defaults.unexpected()},
          std::tuple{"--shape-mismatch ", o.shape_mismatch(), defaults.shape_mismatch()}})
      if (now != then) f.push_back(flag + std::string(policy_name(now)));
  for (const auto& g : o.ignore_missing()) f.push_back("--ignore-missing " + shell_word(g));
  for (const auto& g : o.ignore_unexpected()) f.push_back("--ignore-unexpected " + shell_word(g));
  if (o.dtype_mismatch() != defaults.dtype_mismatch() || o.allow_lossy_cast() != defaults.allow_lossy_cast() ||
      o.min_coverage() != defaults.min_coverage() || o.require_num_batches_tracked() != defaults.require_num_batches_tracked() ||
      o.zero_copy() != defaults.zero_copy())
    return std::nullopt;
  return f;
}

/// Each fix's `cli`: the flags to add to this command line for its options (those of `given` it
/// keeps stay as they are); empty where diff has no flag for what the fix needs.
void fill_cli(statedict::LoadReport& r, const statedict::LoadOptions& given) {
  const auto before = diff_flags(given);
  for (auto& s : r.suggestions) {
    if (!s.options || !before) continue;
    const auto after = diff_flags(*s.options);
    if (!after) continue;
    std::vector<std::string> left = *before, added;
    for (const auto& flag : *after) {
      const auto it = std::find(left.begin(), left.end(), flag);
      if (it != left.end())
        left.erase(it);
      else
        added.push_back(flag);
    }
    // A flag of the command line the fix drops (a --select it replaces) cannot be said by adding.
    const bool replaces = std::any_of(left.begin(), left.end(), [](const std::string& x) { return x.rfind("--select ", 0) == 0; });
    if (!left.empty() && !replaces) continue;
    std::string cli;
    for (const auto& a : added) cli += (cli.empty() ? "" : " ") + a;
    s.cli = cli;
  }
}

/// --write-options: the options that pass, as a recipe file: those given when the diff passes,
/// else the first suggestion whose dry run passed. Says on stderr which it wrote, or that none passes.
void write_options(const statedict::LoadReport& r, const statedict::LoadOptions& given, const std::string& path) {
  const statedict::LoadOptions* pick = r.ok() ? &given : nullptr;
  std::string what = "the options given";
  for (std::size_t i = 0; pick == nullptr && i < r.suggestions.size(); ++i)
    if (r.suggestions[i].options && r.suggestions[i].passes) {
      pick = &*r.suggestions[i].options;
      what = "the options of suggestion " + std::to_string(i + 1) + " (" + r.suggestions[i].option + ")";
    }
  if (pick == nullptr) {
    std::cerr << "statedict: no options file written: neither the options given nor any suggestion passes\n";
    return;
  }
  pick->to_json_file(path);
  std::cerr << "statedict: wrote " << what << " to " << path << "\n";
}

int run_diff(const CLI::App& cmd, const std::string& target_path, const std::string& source_path, const DiffFlags& flags,
             const KeyFlags& keys, const PackageFlags& package) {
#if STATEDICT_CLI_AOTI
  const auto loader = package.trust ? statedict_cli_aoti::open(target_path, package.model) : nullptr;
  // unreadable target: exit 2 via the handler
  const auto target = loader ? std::optional<statedict::Checkpoint>() : std::optional(statedict::read(target_path));
#else
  (void)package;
  const std::optional<statedict::Checkpoint> target = statedict::read(target_path);  // unreadable target: exit 2 via the handler
#endif
  statedict::LoadOptions o = keys.base();
  if (!flags.select.empty()) o.select(flags.select);
  if (!flags.submodule.empty()) o.submodule(flags.submodule);
  if (flags.auto_) o.auto_select().auto_prefix();
  if (flags.lenient) o.lenient();
  const auto policy = [](const std::string& p) {
    return p == "error" ? statedict::Policy::error : p == "warn" ? statedict::Policy::warn : statedict::Policy::ignore;
  };
  if (!flags.missing.empty()) o.missing(policy(flags.missing));
  if (!flags.unexpected.empty()) o.unexpected(policy(flags.unexpected));
  if (!flags.shape.empty()) o.shape_mismatch(policy(flags.shape));
  for (const auto& g : flags.ignore_missing) o.ignore_missing(g);
  for (const auto& g : flags.ignore_unexpected) o.ignore_unexpected(g);
  keys.apply(cmd, o);
  const bool json = flags.json;
  statedict::LoadReport r;
  try {
#if STATEDICT_CLI_AOTI
    if (loader)
      r = statedict::diff(*loader, statedict::read(source_path, o.read_options()), o);
    else
#endif
      r = statedict::diff(*target, statedict::read(source_path, o.read_options()), o);
  } catch (const statedict::Error& e) {
    if (json) std::cout << nlohmann::json{{"ok", false}, {"error", {{"id", e.id()}, {"message", e.what()}}}}.dump(1) << "\n";
    throw;
  }
  fill_cli(r, o);
  if (json)
    std::cout << r.to_json().dump(1) << "\n";
  else
    std::cout << r;
  if (!flags.write_options.empty()) write_options(r, o, flags.write_options);
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

int run_convert(const CLI::App& cmd, const std::string& in, const std::string& out, std::string select, const std::string& dtype,
                const std::string& format, std::uint64_t max_shard, bool reverse, const KeyFlags& keys) {
  const statedict::SaveOptions::Format fmt = output_format(out, format);
  statedict::LoadOptions o = keys.base();
  keys.apply(cmd, o);
  if (select.empty()) select = o.select();  // a recipe's sub-tree, unless --select says another
  if (reverse && !o.shards().empty())
    throw statedict::Error("options.not_invertible", "", "--shard", "a rank's slice cannot be made whole again: --reverse takes no shard");
  const statedict::Checkpoint ck = statedict::read(in);
  const statedict::Value root = select.empty() ? ck.root() : ck.at(select);
  std::optional<c10::ScalarType> to;
  if (!dtype.empty()) {
    const statedict::detail::Dtype dt = statedict::detail::dtype_from_torch(dtype);
    if (dt == nullptr || !statedict::detail::native(dt) || !c10::isFloatingType(dt->type))
      throw statedict::Error("options.bad_dtype", "", "--dtype " + dtype, "expected float16, bfloat16, float32 or float64");
    to = dt->type;
  }
  std::vector<char> fired;  // per key rule: did it change a key
  std::vector<std::string> warnings;
  // The keys through the rules and the transforms (or, with --reverse, both undone); every tensor a
  // transform makes is lazy, made when written.
  std::vector<statedict::NamedTensor> laid =
      reverse ? statedict::detail::checkpoint_layout(statedict::detail::lazy_tensors(root), o, in, &warnings)
              : statedict::detail::module_layout(statedict::detail::lazy_tensors(root), o, in, &warnings, &fired);
  std::vector<statedict::NamedTensor> tensors;
  std::uint64_t total = 0;
  // Every tensor that is cast, sliced or stored in DCP chunks is made only when it is written, so
  // the conversion holds about one tensor at a time.
  for (auto& t : laid) {
    statedict::detail::LazyTensor make;
    if (t.lazy)
      make = *t.lazy;
    else
      make.base = t.tensor;
    bool lazy = static_cast<bool>(t.lazy);
    std::vector<std::int64_t> shape = t.shape();
    const statedict::detail::Dtype raw = t.raw_dtype != nullptr ? statedict::detail::dtype_from_torch(t.raw_dtype) : nullptr;
    c10::ScalarType type = t.tensor.scalar_type();
    // float4_e2m1fn_x2 holds two values an element: no cast gives them a meaning, so they stay as they are.
    const statedict::detail::Dtype own = statedict::detail::find_dtype(type);
    if (to && raw == nullptr && c10::isFloatingType(type) && type != *to && !(own != nullptr && statedict::detail::packs_two(own))) {
      make.cast = *to;
      type = *to;
      lazy = true;
    }
    std::string key = std::move(t.key);
    if (const auto* sh = statedict::detail::shard_for(o, key)) {
      const std::int64_t dims = static_cast<std::int64_t>(shape.size()), dim = sh->dim < 0 ? sh->dim + dims : sh->dim;
      if (dim < 0 || dim >= dims)
        throw statedict::Error("options.bad_shard", in, key,
                               "--shard dim " + std::to_string(sh->dim) + " of a " + std::to_string(dims) + "-d tensor");
      const auto [start, len] = statedict::detail::chunk_range(shape[static_cast<std::size_t>(dim)], sh->rank, sh->world);
      make = make.narrowed(dim, start, len);
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
  // Rename families: no module here, so a parent's keys are renamed where the checkpoint has every
  // old name of a family under it and none of the new ones.
  if (!o.rename_families().empty()) {
    std::vector<std::string_view> names;
    for (const auto& t : tensors) names.emplace_back(t.key);
    const statedict::detail::KeyIndex present(names);
    const auto has = [&](const std::string& k) { return present.count(k) > 0; };
    std::vector<std::string> renamed(tensors.size());
    for (std::size_t i = 0; i < tensors.size(); ++i)
      renamed[i] = statedict::detail::family_rename(o.rename_families(), tensors[i].key, has, nullptr).first;
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (!renamed[i].empty()) tensors[i].key = std::move(renamed[i]);
  }
  // Ties: the tensor again under the module's name.
  for (const auto& tie : o.ties()) {
    const auto it =
        std::find_if(tensors.begin(), tensors.end(), [&](const statedict::NamedTensor& t) { return t.key == tie.checkpoint_key; });
    if (it == tensors.end())
      throw statedict::Error("options.bad_tie", in, tie.checkpoint_key, "--tie names a key the converted checkpoint does not have");
    if (std::any_of(tensors.begin(), tensors.end(), [&](const statedict::NamedTensor& t) { return t.key == tie.module_key; }))
      throw statedict::Error("options.bad_tie", in, tie.module_key, "--tie names a key the converted checkpoint already has");
    statedict::NamedTensor copy = *it;
    copy.key = tie.module_key;
    total += statedict::detail::tensor_bytes(copy.tensor);
    tensors.push_back(std::move(copy));
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
  if (!reverse)
    for (std::string& w : statedict::detail::unused_rules(o.rules(), fired)) warnings.push_back(std::move(w));
  for (const std::string& w : warnings) std::cerr << "statedict: warning: " << w << "\n";
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
  inspect
      ->add_option(
          "FILE", file,
          "Checkpoint file (torch.save, safetensors, TorchScript, sharded index or its folder, DCP folder, .pt2, a pickle of numpy arrays)")
      ->required();
  inspect->add_option("--select", select, "Only the sub-tree at this dotted path, e.g. model or state_dict");
  inspect->add_flag("--json", json, "Machine-readable output: {file, format, tensors: [{key, dtype, shape, sha256}]}");
  inspect->add_flag("--hash", hash,
                    "Add the SHA-256 of each tensor's contiguous little-endian bytes (a column of the table, or sha256 in --json)");
  PackageFlags package;
#if STATEDICT_CLI_AOTI
  const auto add_package_flags = [&package](CLI::App* cmd, const char* what) {
    cmd->add_flag("--trust-package", package.trust,
                  std::string(what) + " is an AOTInductor package (.pt2): open it with LibTorch's loader, which loads (runs) its "
                                      "compiled code. Only for packages you trust");
    cmd->add_option("--model", package.model, "With --trust-package: the package's model to open (default: model)");
  };
  add_package_flags(inspect, "FILE");
#endif

  std::string target, source;
  DiffFlags df;
  KeyFlags diff_keys;
  auto* diff = app.add_subcommand(
      "diff", "Report what loading SOURCE into a model whose state dict is TARGET would do (exit 0 ok, 1 not, 2 unreadable)");
  diff->add_option("TARGET", target, "Checkpoint standing for the model (its tensors are the model's keys, shapes and dtypes)")->required();
  diff->add_option("SOURCE", source, "Checkpoint to load")->required();
  // A value given twice: the last counts, so a suggestion's flags can be appended to the command.
  diff->add_option("--select", df.select, "Take SOURCE's tensors under this dotted path")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  diff->add_flag("--auto", df.auto_, "auto_select + auto_prefix: find the sub-tree and the prefix difference");
  diff->add_option("--submodule", df.submodule,
                   "Only SOURCE's keys under this prefix (e.g. backbone.), with it removed; the rest is left aside")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  diff->add_flag("--lenient", df.lenient, "Missing, unexpected and mis-shaped tensors are reported, not errors");
  const auto policies = CLI::IsMember({"error", "warn", "ignore"});
  diff->add_option("--missing", df.missing, "Policy for model keys the checkpoint lacks: error (default), warn or ignore")
      ->check(policies)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  diff->add_option("--unexpected", df.unexpected, "Policy for checkpoint keys the model lacks: error (default), warn or ignore")
      ->check(policies)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  diff->add_option("--shape-mismatch", df.shape, "Policy for tensors of another shape: error (default), warn (skip them) or ignore")
      ->check(policies)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  diff->add_option("--ignore-missing", df.ignore_missing, "GLOB of model keys that may be missing (repeatable)");
  diff->add_option("--ignore-unexpected", df.ignore_unexpected, "GLOB of checkpoint keys that may be left unused (repeatable)");
  diff->add_flag("--json", df.json, "Print the report as JSON");
  diff->add_option("--write-options", df.write_options,
                   "Write the options that pass (these, or the first suggestion that passes) to this recipe file (JSON)");
  diff_keys.add_to(diff);
#if STATEDICT_CLI_AOTI
  add_package_flags(diff, "TARGET");
#endif

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
  bool reverse = false;
  convert->add_flag("--reverse", reverse,
                    "Undo the key rules and transforms given (each transform's inverse, in reverse order): what a conversion with "
                    "the same flags wrote becomes its input again, bit for bit");
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
    if (*inspect) return run_inspect(file, select, json, hash, package);
    if (*diff) {
      file = source;
      return run_diff(*diff, target, source, df, diff_keys, package);
    }
    if (*convert) {
      file = in;
      return run_convert(*convert, in, out_path, select, dtype, format, max_shard, reverse, convert_keys);
    }
    return exit_error;
  } catch (const statedict::Error& e) {
    std::cerr << "statedict: error: " << e.what() << "\n";
#if STATEDICT_CLI_AOTI
    if (!package.trust) statedict_cli_aoti::hint(*inspect ? file : target);
#endif
    return exit_error;
  } catch (const std::exception& e) {
    std::cerr << "statedict: error: " << file << ": " << e.what() << "\n";
    return exit_error;
  }
}
