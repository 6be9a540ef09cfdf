#pragma once
// The recipe file: LoadOptions as a small versioned JSON object, written by `statedict diff
// --write-options` and LoadOptions::to_json_file, read by LoadOptions::from_json_file and
// `--options`. One entry of option_entries() per option kind: what it writes and how it reads its
// value back, checked, with errors that name the file and the JSON pointer. A new option kind is
// one more entry (and a member in the docs' table).
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/write/writer.hpp>
#include <statedict/options.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

namespace statedict::detail {

/// Where a value is in the file being read, for errors: the file and the JSON pointer.
struct JsonPlace {
  const std::string& file;
  std::string pointer;
  JsonPlace at(const std::string& key) const { return {file, pointer + "/" + key}; }
  JsonPlace at(std::size_t i) const { return {file, pointer + "/" + std::to_string(i)}; }
  [[noreturn]] void fail(const std::string& why) const { throw Error("options.bad_file", file, pointer.empty() ? "/" : pointer, why); }
};

inline const char* json_type(const nlohmann::json& j) { return j.type_name(); }
inline std::string json_string(const nlohmann::json& j, const JsonPlace& at) {
  if (!j.is_string()) at.fail(std::string("expected a string, found ") + json_type(j));
  return j.get<std::string>();
}
inline std::int64_t json_int(const nlohmann::json& j, const JsonPlace& at) {
  if (!j.is_number_integer()) at.fail(std::string("expected an integer, found ") + json_type(j));
  return j.get<std::int64_t>();
}
inline bool json_bool(const nlohmann::json& j, const JsonPlace& at) {
  if (!j.is_boolean()) at.fail(std::string("expected true or false, found ") + json_type(j));
  return j.get<bool>();
}
inline const nlohmann::json& json_array(const nlohmann::json& j, const JsonPlace& at) {
  if (!j.is_array()) at.fail(std::string("expected an array, found ") + json_type(j));
  return j;
}
inline const nlohmann::json& json_object(const nlohmann::json& j, const JsonPlace& at) {
  if (!j.is_object()) at.fail(std::string("expected an object, found ") + json_type(j));
  return j;
}
inline std::vector<std::string> json_strings(const nlohmann::json& j, const JsonPlace& at) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < json_array(j, at).size(); ++i) out.push_back(json_string(j[i], at.at(i)));
  return out;
}
inline std::vector<std::int64_t> json_ints(const nlohmann::json& j, const JsonPlace& at) {
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < json_array(j, at).size(); ++i) out.push_back(json_int(j[i], at.at(i)));
  return out;
}
/// The members of an object, each checked against the names allowed; `need` must be there.
inline const nlohmann::json& json_member(const nlohmann::json& obj, const std::string& name, const JsonPlace& at) {
  const auto it = obj.find(name);
  if (it == obj.end()) at.fail("\"" + name + "\" is missing");
  return *it;
}
inline void json_only(const nlohmann::json& obj, std::initializer_list<const char*> names, const JsonPlace& at) {
  for (const auto& item : obj.items()) {
    bool known = false;
    for (const char* n : names) known = known || item.key() == n;
    if (known) continue;
    std::string list;
    for (const char* n : names) list += (list.empty() ? "" : ", ") + std::string(n);
    at.at(item.key()).fail("unknown member (here: " + list + ")");
  }
}

inline const char* policy_text(Policy p) { return p == Policy::error ? "error" : p == Policy::warn ? "warn" : "ignore"; }
inline Policy json_policy(const nlohmann::json& j, const JsonPlace& at) {
  const std::string s = json_string(j, at);
  if (s == "error") return Policy::error;
  if (s == "warn") return Policy::warn;
  if (s == "ignore") return Policy::ignore;
  at.fail("\"" + s + "\" is not a policy (error, warn, ignore)");
}

/// Runs a setter; its options error becomes one of the file, at `at`.
template <class F> void json_set(const JsonPlace& at, F&& set) {
  try {
    set();
  } catch (const Error& e) {
    if (e.id() == "options.bad_file") throw;
    at.fail(e.reason() + " (" + e.where() + ")");
  }
}

/// One option kind of the recipe file: its member name, how it is written (nothing when the
/// options have the default), and how it is read back.
struct OptionEntry {
  const char* name;
  void (*write)(const LoadOptions& o, nlohmann::ordered_json& out);
  void (*read)(const nlohmann::json& value, LoadOptions& o, const JsonPlace& at);
};

inline nlohmann::ordered_json transform_json(const statedict::Transform& t) {
  nlohmann::ordered_json j;
  j["kind"] = statedict::Transform::name(t.kind);
  j["key"] = t.key;
  if (!t.parts.empty()) j["parts"] = t.parts;
  if (t.kind != statedict::Transform::Kind::transpose && t.kind != statedict::Transform::Kind::reshape) j["dim"] = t.dim;
  if (!t.sizes.empty()) j["sizes"] = t.sizes;
  if (t.kind == statedict::Transform::Kind::reshape) {
    j["from"] = t.from;
    j["to"] = t.to;
  }
  return j;
}

inline statedict::Transform transform_from_json(const nlohmann::json& j, const JsonPlace& at) {
  json_object(j, at);
  const std::string kind = json_string(json_member(j, "kind", at), at.at("kind"));
  statedict::Transform t{statedict::Transform::Kind::transpose, json_string(json_member(j, "key", at), at.at("key")), {}, 0};
  bool found = false;
  for (auto k : {statedict::Transform::Kind::transpose, statedict::Transform::Kind::split, statedict::Transform::Kind::merge,
                 statedict::Transform::Kind::stack, statedict::Transform::Kind::unstack, statedict::Transform::Kind::reshape})
    if (kind == statedict::Transform::name(k)) {
      t.kind = k;
      found = true;
    }
  if (!found) at.at("kind").fail("\"" + kind + "\" is not a transform (transpose, split, merge, stack, unstack, reshape)");
  switch (t.kind) {
  case statedict::Transform::Kind::transpose:
    json_only(j, {"kind", "key"}, at);
    break;
  case statedict::Transform::Kind::reshape:
    json_only(j, {"kind", "key", "from", "to"}, at);
    t.from = json_ints(json_member(j, "from", at), at.at("from"));
    t.to = json_ints(json_member(j, "to", at), at.at("to"));
    break;
  default:
    json_only(j, {"kind", "key", "parts", "dim", "sizes"}, at);
    t.parts = json_strings(json_member(j, "parts", at), at.at("parts"));
    if (j.contains("dim")) t.dim = json_int(j["dim"], at.at("dim"));
    if (j.contains("sizes")) t.sizes = json_ints(j["sizes"], at.at("sizes"));
  }
  return t;
}

inline nlohmann::ordered_json rule_json(const KeyRule& r) {
  switch (r.kind) {
  case KeyRule::Kind::strip_prefix:
    return {{"kind", "strip_prefix"}, {"prefix", r.pattern}};
  case KeyRule::Kind::add_prefix:
    return {{"kind", "add_prefix"}, {"prefix", r.pattern}};
  case KeyRule::Kind::rename:
    return {{"kind", "rename"}, {"pattern", r.pattern}, {"replacement", r.replacement}};
  case KeyRule::Kind::strip_segment:
    return {{"kind", "strip_segment"}, {"segment", r.pattern}};
  }
  return {};
}

inline void rule_from_json(const nlohmann::json& j, LoadOptions& o, const JsonPlace& at) {
  json_object(j, at);
  const std::string kind = json_string(json_member(j, "kind", at), at.at("kind"));
  if (kind == "strip_prefix" || kind == "add_prefix") {
    json_only(j, {"kind", "prefix"}, at);
    const std::string p = json_string(json_member(j, "prefix", at), at.at("prefix"));
    kind == "strip_prefix" ? o.strip_prefix(p) : o.add_prefix(p);
  } else if (kind == "rename") {
    json_only(j, {"kind", "pattern", "replacement"}, at);
    const std::string pattern = json_string(json_member(j, "pattern", at), at.at("pattern"));
    const std::string replacement = json_string(json_member(j, "replacement", at), at.at("replacement"));
    std::string from, to;
    bool whole = false;
    // A literal prefix or key rename (what suggestions make) stays one: applied without std::regex.
    if (literal_parts(pattern, replacement, from, to, whole)) {
      add_literal_rename(o, from, to, whole);
    } else {
      o.rename(pattern, replacement);
      json_set(at.at("pattern"), [&] { KeyRewriter check(std::vector<KeyRule>{o.rules().back()}); });
    }
  } else if (kind == "strip_segment") {
    json_only(j, {"kind", "segment"}, at);
    const std::string seg = json_string(json_member(j, "segment", at), at.at("segment"));
    json_set(at.at("segment"), [&] { o.strip_segment(seg); });
  } else {
    at.at("kind").fail("\"" + kind + "\" is not a key rule (strip_prefix, add_prefix, rename, strip_segment)");
  }
}

/// The option kinds of the recipe file, in the order they are written.
inline const std::vector<OptionEntry>& option_entries() {
  static const std::vector<OptionEntry> entries{
      {"select",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (!o.select().empty()) out["select"] = o.select();
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) { o.select(json_string(v, at)); }},
      {"auto_select",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.auto_select()) out["auto_select"] = true;
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) { o.auto_select(json_bool(v, at)); }},
      {"submodule",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (!o.submodule().empty()) out["submodule"] = o.submodule();
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) { o.submodule(json_string(v, at)); }},
      {"key_rules",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.rules().empty()) return;
         auto& list = out["key_rules"] = nlohmann::ordered_json::array();
         for (const auto& r : o.rules()) list.push_back(rule_json(r));
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         for (std::size_t i = 0; i < json_array(v, at).size(); ++i) rule_from_json(v[i], o, at.at(i));
       }},
      {"rename_families",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.rename_families().empty()) return;
         auto& list = out["rename_families"] = nlohmann::ordered_json::array();
         for (const auto& f : o.rename_families()) {
           auto renames = nlohmann::ordered_json::array();
           for (const auto& [from, to] : f.renames) renames.push_back({from, to});
           list.push_back({{"name", f.name}, {"renames", std::move(renames)}});
         }
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         for (std::size_t i = 0; i < json_array(v, at).size(); ++i) {
           const JsonPlace here = at.at(i);
           json_object(v[i], here);
           json_only(v[i], {"name", "renames"}, here);
           RenameFamily f;
           f.name = json_string(json_member(v[i], "name", here), here.at("name"));
           const nlohmann::json renames = json_member(v[i], "renames", here);  // a copy: g++ 16's -Wdangling-reference
           for (std::size_t k = 0; k < json_array(renames, here.at("renames")).size(); ++k) {
             const JsonPlace pair_at = here.at("renames").at(k);
             const auto pair = json_strings(renames[k], pair_at);
             if (pair.size() != 2) pair_at.fail("expected [old name, new name]");
             f.renames.emplace_back(pair[0], pair[1]);
           }
           json_set(here, [&] { o.rename_family(std::move(f)); });
         }
       }},
      {"ties",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.ties().empty()) return;
         auto& list = out["ties"] = nlohmann::ordered_json::array();
         for (const auto& t : o.ties()) list.push_back({{"module_key", t.module_key}, {"checkpoint_key", t.checkpoint_key}});
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         for (std::size_t i = 0; i < json_array(v, at).size(); ++i) {
           const JsonPlace here = at.at(i);
           json_object(v[i], here);
           json_only(v[i], {"module_key", "checkpoint_key"}, here);
           const std::string m = json_string(json_member(v[i], "module_key", here), here.at("module_key"));
           const std::string c = json_string(json_member(v[i], "checkpoint_key", here), here.at("checkpoint_key"));
           json_set(here, [&] { o.tie(m, c); });
         }
       }},
      {"auto_prefix",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.auto_prefix()) out["auto_prefix"] = true;
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) { o.auto_prefix(json_bool(v, at)); }},
      {"transforms",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.transforms().empty()) return;
         auto& list = out["transforms"] = nlohmann::ordered_json::array();
         for (const auto& t : o.transforms()) list.push_back(transform_json(t));
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         for (std::size_t i = 0; i < json_array(v, at).size(); ++i) {
           const statedict::Transform t = transform_from_json(v[i], at.at(i));
           json_set(at.at(i), [&] { o.transform(t); });
         }
       }},
      {"policies",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         out["policies"] = {{"missing", policy_text(o.missing())},
                            {"unexpected", policy_text(o.unexpected())},
                            {"shape_mismatch", policy_text(o.shape_mismatch())},
                            {"dtype_mismatch", policy_text(o.dtype_mismatch())}};
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         json_object(v, at);
         json_only(v, {"missing", "unexpected", "shape_mismatch", "dtype_mismatch"}, at);
         if (v.contains("missing")) o.missing(json_policy(v["missing"], at.at("missing")));
         if (v.contains("unexpected")) o.unexpected(json_policy(v["unexpected"], at.at("unexpected")));
         if (v.contains("shape_mismatch")) o.shape_mismatch(json_policy(v["shape_mismatch"], at.at("shape_mismatch")));
         if (v.contains("dtype_mismatch")) o.dtype_mismatch(json_policy(v["dtype_mismatch"], at.at("dtype_mismatch")));
       }},
      {"allow_lossy_cast",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.allow_lossy_cast()) out["allow_lossy_cast"] = true;
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) { o.allow_lossy_cast(json_bool(v, at)); }},
      {"ignore_missing",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (!o.ignore_missing().empty()) out["ignore_missing"] = o.ignore_missing();
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         for (auto& g : json_strings(v, at)) o.ignore_missing(std::move(g));
       }},
      {"ignore_unexpected",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (!o.ignore_unexpected().empty()) out["ignore_unexpected"] = o.ignore_unexpected();
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         for (auto& g : json_strings(v, at)) o.ignore_unexpected(std::move(g));
       }},
      {"min_coverage",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.min_coverage() != 0.0) out["min_coverage"] = o.min_coverage();
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1) at.fail("expected a number from 0 to 1");
         o.min_coverage(v.get<double>());
       }},
      {"require_num_batches_tracked",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.require_num_batches_tracked()) out["require_num_batches_tracked"] = true;
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) { o.require_num_batches_tracked(json_bool(v, at)); }},
      {"shards",
       [](const LoadOptions& o, nlohmann::ordered_json& out) {
         if (o.shards().empty()) return;
         auto& list = out["shards"] = nlohmann::ordered_json::array();
         for (const auto& s : o.shards()) list.push_back({{"key", s.glob}, {"dim", s.dim}, {"rank", s.rank}, {"world", s.world}});
       },
       [](const nlohmann::json& v, LoadOptions& o, const JsonPlace& at) {
         for (std::size_t i = 0; i < json_array(v, at).size(); ++i) {
           const JsonPlace here = at.at(i);
           json_object(v[i], here);
           json_only(v[i], {"key", "dim", "rank", "world"}, here);
           const std::string key = json_string(json_member(v[i], "key", here), here.at("key"));
           const std::int64_t dim = json_int(json_member(v[i], "dim", here), here.at("dim"));
           const std::int64_t rank = json_int(json_member(v[i], "rank", here), here.at("rank"));
           const std::int64_t world = json_int(json_member(v[i], "world", here), here.at("world"));
           json_set(here, [&] { o.shard(key, dim, rank, world); });
         }
       }},
  };
  return entries;
}

/// The version this statedict writes and the newest it reads.
inline constexpr int kOptionsFileVersion = 1;
inline constexpr const char* kOptionsFileTag = "statedict_options";

}  // namespace statedict::detail

namespace statedict {

STATEDICT_FUNC std::string LoadOptions::to_json() const {
  nlohmann::ordered_json out;
  out[detail::kOptionsFileTag] = detail::kOptionsFileVersion;
  for (const auto& e : detail::option_entries()) e.write(*this, out);
  return out.dump(2) + "\n";
}

STATEDICT_FUNC void LoadOptions::to_json_file(const std::string& path) const {
  detail::AtomicFile f(path);
  f.write(to_json());
  f.commit();
}

STATEDICT_FUNC LoadOptions LoadOptions::from_json(const std::string& text, const std::string& file) {
  const detail::JsonPlace top{file, ""};
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error("options.bad_file", file, "byte " + std::to_string(e.byte), "not JSON: " + std::string(e.what()));
  }
  detail::json_object(j, top);
  const auto version = j.find(detail::kOptionsFileTag);
  if (version == j.end())
    top.fail(std::string("not a statedict options file: it has no \"") + detail::kOptionsFileTag + "\" version member");
  const std::int64_t v = detail::json_int(*version, top.at(detail::kOptionsFileTag));
  if (v < 1 || v > detail::kOptionsFileVersion)
    top.at(detail::kOptionsFileTag)
        .fail("version " + std::to_string(v) + "; this statedict reads version " + std::to_string(detail::kOptionsFileVersion) +
              (v > detail::kOptionsFileVersion ? " (a newer statedict wrote it)" : ""));
  LoadOptions o;
  for (const auto& item : j.items()) {
    if (item.key() == detail::kOptionsFileTag) continue;
    const detail::OptionEntry* entry = nullptr;
    for (const auto& e : detail::option_entries())
      if (item.key() == e.name) entry = &e;
    if (entry == nullptr) {
      std::string known;
      for (const auto& e : detail::option_entries()) known += (known.empty() ? "" : ", ") + std::string(e.name);
      top.at(item.key()).fail("unknown option (known: " + known + ")");
    }
    entry->read(item.value(), o, top.at(item.key()));
  }
  return o;
}

STATEDICT_FUNC LoadOptions LoadOptions::from_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error("options.bad_file", path, "", "cannot be opened");
  // A recipe is a few KB; a file past 16 MiB is not one (and is not read whole into memory).
  const std::streamoff size = in.tellg();
  if (size < 0 || size > (16 << 20)) throw Error("options.bad_file", path, "", "larger than 16 MiB (or unreadable): not an options file");
  std::string buf(static_cast<std::size_t>(size), '\0');
  in.seekg(0);
  in.read(buf.data(), size);
  if (in.gcount() != size) throw Error("options.bad_file", path, "", "could not be read whole");
  return from_json(buf, path);
}

}  // namespace statedict
