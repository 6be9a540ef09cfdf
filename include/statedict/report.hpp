#pragma once
// statedict::LoadReport: everything a load (or dry run) found, printable the way PyTorch prints.
#include <statedict/detail/config.hpp>
#include <statedict/detail/fold.hpp>
#include <statedict/error.hpp>
#include <statedict/options.hpp>

// Header-only, the report's JSON comes with the full nlohmann/json (the readers need it anyway). With
// statedict::compiled only its forward declarations: a unit that calls to_json() includes
// <nlohmann/json.hpp> itself (or the umbrella <statedict/statedict.hpp>, which does).
#if STATEDICT_DEFINITIONS || !__has_include(<nlohmann/json_fwd.hpp>)  // (single-header installs before 3.11 lack it)
#include <nlohmann/json.hpp>
#else
#include <nlohmann/json_fwd.hpp>
#endif

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace statedict {

struct MatchedKey {
  std::string target;  ///< module key
  std::string source;  ///< checkpoint key (relative to the selected sub-tree)
  std::string rule;    ///< "exact", or the rules that mapped it: strip_prefix("module.")
};

struct ShapeMismatch {
  std::string key;  ///< module key
  std::string source;
  std::vector<std::int64_t> target_shape, source_shape;
};

struct DtypeMismatch {
  std::string key;  ///< module key
  std::string source;
  std::string target_dtype, source_dtype;  ///< PyTorch names: float32, float16, ...
  bool cast = false;                       ///< the value was (or would be) cast to target_dtype
  bool lossy = false;                      ///< the cast loses information
};

struct Suggestion {
  std::string text;    ///< what statedict noticed and what to do
  std::string option;  ///< the LoadOptions call that fixes it, if one does: strip_prefix("module.")
  /// The same as `statedict` command line flags (--strip-prefix module.). The library leaves it
  /// empty; the command line tool fills it from `options`, and the report prints it when set.
  std::string cli = {};
  /// The whole options to load with (yours, plus the fix), for a fix; empty for a hint. Checked by
  /// a dry run before it was offered: `passes` says whether that load succeeds, `loads` how many
  /// tensors it fills. Fixes come first in `suggestions`, those that pass first, then by `loads`.
  std::optional<LoadOptions> options = std::nullopt;
  bool passes = false;
  std::size_t loads = 0;
};

/// The outcome of statedict::load or statedict::diff.
class LoadReport {
public:
  /// True when the load was (or, for diff, would be) acceptable under the options' policies.
  bool ok() const { return error.empty() && errors.empty(); }
  explicit operator bool() const { return ok(); }

  std::string module_name;  ///< class of the module ("ResNet")
  std::string file;
  std::string format;
  std::string selected;      ///< the sub-tree used ("" = the whole checkpoint)
  std::string selected_by;   ///< "select", "auto_select" or ""
  std::string selected_why;  ///< for auto_select: how well the sub-tree fits ("122 of 122 module keys match there, ...")
  bool dry_run = false;
  bool applied = false;  ///< the module was changed (only when ok() and not a dry run)
  std::size_t module_tensors = 0;
  std::size_t loaded = 0;  ///< tensors copied (or, for diff, that would be)

  std::vector<MatchedKey> matched;
  std::vector<std::string> missing;     ///< module keys with no checkpoint tensor
  std::vector<std::string> unexpected;  ///< checkpoint keys nothing used
  std::vector<ShapeMismatch> shape_mismatch;
  std::vector<DtypeMismatch> dtype_mismatch;
  std::vector<std::string> skipped;  ///< module keys left as they were despite a match
  /// A load that failed while writing (the file changed under it, a read failed): the module keys
  /// already written. Empty for every other failure, which leaves the module unchanged.
  std::vector<std::string> written;
  std::vector<std::string> tolerated;  ///< missing/unexpected keys an option or default allowed
  std::vector<Suggestion> suggestions;
  std::vector<std::string> errors;  ///< why the load failed under the policies, PyTorch-style lines
  std::vector<std::string> warnings;
  /// What statedict noticed about the file that needs no action: a file whose name says another
  /// format than its content ("named .safetensors, but it is a torch.save zip: read as that").
  std::vector<std::string> notes;
  std::string error;     ///< the file could not be read or the selection failed
  std::string error_id;  ///< statedict error id of `error`

  /// Throws statedict::LoadError (a std::runtime_error carrying this report) unless ok().
  void throw_if_error() const;

  /// Every field as JSON (the CLI's --json output).
  nlohmann::json to_json() const;
};

/// Thrown by LoadReport::throw_if_error(); what() is the printed report.
class LoadError : public Error {
public:
  explicit LoadError(LoadReport r, const std::string& text)
      : Error(r.error_id.empty() ? "load.failed" : r.error_id, r.file, r.selected, text), report_(std::move(r)) {}
  const LoadReport& report() const noexcept { return report_; }

private:
  LoadReport report_;
};

/// Prints the report. A failed load starts like PyTorch's message ("Error(s) in loading state_dict
/// for Net:", "Missing key(s) in state_dict: ...", "size mismatch for ..."); long key lists are
/// folded (see detail::quoted_list); suggestions come last.
STATEDICT_FUNC std::ostream& operator<<(std::ostream& os, const LoadReport& r);

namespace detail {

/// A key list as printed in a report's lines: PyTorch's quoted keys, and for more than 8 keys the
/// folded entries of fold_keys ("layers.{0..95}.attn.{q,k,v}.weight" (288)), each entry that stands
/// for several keys followed by their number, and the list by "; N keys in all". At most 24
/// entries are shown. With `fold` false, the keys themselves (cut at 24 the same way).
inline std::string quoted_list(const std::vector<std::string>& keys, bool fold) {
  constexpr std::size_t max_shown = 24;  // the report keeps every key; the printout stays readable
  std::vector<FoldedKeys> shown;
  if (fold && keys.size() > 8) {
    shown = fold_keys(keys);
  } else {
    for (std::size_t i = 0; i < keys.size() && i < max_shown + 1; ++i) shown.push_back({keys[i], 1});
  }
  std::string s;
  bool folded = false;
  for (std::size_t i = 0; i < shown.size() && i < max_shown; ++i) {
    s += (i ? ", \"" : "\"") + shown[i].text + "\"";
    if (shown[i].count > 1) s += " (" + std::to_string(shown[i].count) + ")";
    folded = folded || shown[i].count > 1;
  }
  if (shown.size() > max_shown)
    s += ", ... (" + std::to_string(keys.size()) + " keys in all)";
  else if (folded && shown.size() > 1)
    s += "; " + std::to_string(keys.size()) + " keys in all";
  return s;
}

}  // namespace detail

#if STATEDICT_DEFINITIONS

STATEDICT_FUNC std::ostream& operator<<(std::ostream& os, const LoadReport& r) {
  const std::string name = r.module_name.empty() ? "Module" : r.module_name;
  if (!r.error.empty()) {
    os << "Error(s) in loading state_dict for " << name << ":\n\t" << r.error << "\n";
    if (!r.written.empty())
      os << "\tthe module was partly written: " << r.written.size() << " of " << r.module_tensors << " tensors hold new values ("
         << detail::quoted_list(r.written, true) << "); the others are unchanged\n";
    for (const auto& n : r.notes) os << "\tnote: " << n << "\n";
  } else if (!r.ok()) {
    os << "Error(s) in loading state_dict for " << name << ":\n";
    for (const auto& e : r.errors) os << "\t" << e << "\n";
    if (!r.selected.empty())
      os << "\tfrom the sub-tree '" << r.selected << "' (" << r.selected_by << (r.selected_why.empty() ? "" : ": " + r.selected_why)
         << ")\n";
    for (const auto& w : r.warnings) os << "\twarning: " << w << "\n";
    for (const auto& n : r.notes) os << "\tnote: " << n << "\n";
  } else {
    os << (r.dry_run ? "Would load " : "Loaded ") << r.loaded << " of " << r.module_tensors << " tensors into " << name;
    if (!r.file.empty()) os << " from " << r.file;
    if (!r.selected.empty())
      os << " (" << r.selected_by << " '" << r.selected << "'" << (r.selected_why.empty() ? "" : ": " + r.selected_why) << ")";
    os << "\n";
    for (const auto& w : r.warnings) os << "\twarning: " << w << "\n";
    for (const auto& n : r.notes) os << "\tnote: " << n << "\n";
  }
  if (!r.suggestions.empty()) {
    os << "Suggestions:\n";
    for (const auto& s : r.suggestions) {
      os << "\t- " << s.text;
      if (!s.cli.empty()) os << " (CLI: " << s.cli << ")";
      if (s.options)
        os << (s.passes ? " [checked: loads " : " [checked: pairs ") << s.loads << " of " << r.module_tensors
           << (s.passes ? "]" : ", the load still fails]");
      os << "\n";
    }
  }
  return os;
}

STATEDICT_FUNC void LoadReport::throw_if_error() const {
  if (ok()) return;
  std::ostringstream os;
  os << *this;
  throw LoadError(*this, os.str());
}

STATEDICT_FUNC nlohmann::json LoadReport::to_json() const {
  nlohmann::json j;
  j["ok"] = ok();
  j["module"] = module_name;
  j["file"] = file;
  j["format"] = format;
  j["selected"] = selected;
  j["selected_by"] = selected_by;
  j["selected_why"] = selected_why;
  j["dry_run"] = dry_run;
  j["applied"] = applied;
  j["module_tensors"] = module_tensors;
  j["loaded"] = loaded;
  j["matched"] = nlohmann::json::array();
  for (const auto& m : matched) j["matched"].push_back({{"target", m.target}, {"source", m.source}, {"rule", m.rule}});
  j["missing"] = missing;
  j["unexpected"] = unexpected;
  j["shape_mismatch"] = nlohmann::json::array();
  for (const auto& s : shape_mismatch)
    j["shape_mismatch"].push_back(
        {{"key", s.key}, {"source", s.source}, {"target_shape", s.target_shape}, {"source_shape", s.source_shape}});
  j["dtype_mismatch"] = nlohmann::json::array();
  for (const auto& d : dtype_mismatch)
    j["dtype_mismatch"].push_back({{"key", d.key},
                                   {"source", d.source},
                                   {"target_dtype", d.target_dtype},
                                   {"source_dtype", d.source_dtype},
                                   {"cast", d.cast},
                                   {"lossy", d.lossy}});
  j["skipped"] = skipped;
  j["written"] = written;
  j["tolerated"] = tolerated;
  j["suggestions"] = nlohmann::json::array();
  for (const auto& s : suggestions) {
    nlohmann::json e{{"text", s.text}, {"option", s.option}, {"cli", s.cli}};
    if (s.options) {
      e["passes"] = s.passes;
      e["loads"] = s.loads;
    }
    j["suggestions"].push_back(std::move(e));
  }
  j["errors"] = errors;
  j["warnings"] = warnings;
  j["notes"] = notes;
  if (!error.empty()) j["error"] = {{"id", error_id}, {"message", error}};
  return j;
}

#endif  // STATEDICT_DEFINITIONS

}  // namespace statedict
