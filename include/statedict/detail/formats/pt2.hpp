#pragma once
// PT2 archives (.pt2): what torch.export.save writes, and the packages of
// torch._inductor.aoti_compile_and_package. Both are torch zips whose `archive_format` record holds
// "pt2". An exported program keeps its state dict in data/weights/ (raw bytes, or a torch.save'd
// tensor for tensor subclasses) described by data/weights/<model>_weights_config.json, its constants
// likewise in data/constants/. An AOTInductor package keeps data/aotinductor/<model>/: the compiled
// .so and its sources, and its constants either inside the .so (the default) or beside it
// (aot_inductor.package_constants_in_so=False): data/weights/weight_N named by weights_config.json,
// or one *.wrapper_weights.blob. Nothing here loads or runs the .so.
//
// describe_pt2() says what a package holds (the detail API the AOTI load target builds on);
// read_pt2() turns it into a checkpoint.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/formats/aoti_sources.hpp>
#include <statedict/detail/formats/safetensors.hpp>
#include <statedict/detail/formats/torch_file.hpp>
#include <statedict/detail/formats/zip.hpp>

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

namespace statedict::detail {

/// torch._export.serde.schema.ScalarType: the dtype codes of a tensor_meta (PyTorch 2.14, schema
/// 8.20), as PyTorch's dtype names; nullptr for a code it does not define.
inline const char* pt2_dtype_name(std::int64_t code) {
  static constexpr std::pair<int, const char*> codes[] = {{1, "uint8"},
                                                          {2, "int8"},
                                                          {3, "int16"},
                                                          {4, "int32"},
                                                          {5, "int64"},
                                                          {6, "float16"},
                                                          {7, "float32"},
                                                          {8, "float64"},
                                                          {9, "complex32"},
                                                          {10, "complex64"},
                                                          {11, "complex128"},
                                                          {12, "bool"},
                                                          {13, "bfloat16"},
                                                          {28, "uint16"},
                                                          {29, "float8_e4m3fn"},
                                                          {30, "float8_e5m2"},
                                                          {31, "float8_e4m3fnuz"},
                                                          {32, "float8_e5m2fnuz"},
                                                          {33, "float8_e8m0fnu"},
                                                          {34, "uint32"},
                                                          {35, "uint64"}};
  for (const auto& [c, name] : codes)
    if (c == code) return name;
  return nullptr;
}

/// One entry of a payload config: a tensor of the state dict or a constant.
struct Pt2Payload {
  std::string fqn;
  std::string record;  // below the archive's top folder: "data/weights/weight_0"
  bool is_param = false;
  bool use_pickle = false;  // the record is a torch.save'd tensor (a tensor subclass), not raw bytes
  bool tensor = true;       // false: a custom object (torchbind or opaque), no tensor_meta
  Dtype dtype = nullptr;
  std::vector<std::int64_t> sizes, strides;
  std::int64_t storage_offset = 0;  // in elements
};

/// One exported program of the archive (models/<name>.json).
struct Pt2Program {
  std::string name;  // "model" for torch.export.save
  std::vector<Pt2Payload> weights, constants;
};

/// One constant of an AOTInductor model, as the package's files describe it.
struct AotiConstant {
  std::string fqn;        // the state-dict name (original_fqn), e.g. "fc.weight"
  std::string name;       // the name inside the compiled model, e.g. "fc_weight" (empty if unknown)
  Dtype dtype = nullptr;  // nullptr where the files do not say
  std::vector<std::int64_t> sizes, strides;
  std::int64_t storage_offset = 0;
  std::string record;           // pickle_weights: the data/weights/ record holding its bytes
  bool from_folded = false;     // computed at export from other constants (not a state-dict tensor)
  std::uint64_t data_size = 0;  // bytes of its storage in the compiled constants (the wrapper source says)
};

/// The constants the wrapper source of a package describes (empty when it is absent or too large).
inline std::vector<AotiConstant> aoti_constants_from_source(const ZipArchive& z, const ZipEntry& e) {
  std::vector<AotiConstant> out;
  if (e.size > (256u << 20) || e.method != 0) return out;
  for (auto& s : aoti_constants_in_source(z.read(e))) {
    AotiConstant c;
    c.fqn = s.fqn.empty() ? s.name : s.fqn;
    c.name = std::move(s.name);
    c.dtype = s.dtype;
    c.sizes = std::move(s.sizes);
    c.strides = std::move(s.strides);
    c.storage_offset = s.offset;
    c.from_folded = s.from_folded;
    c.data_size = s.data_size;
    out.push_back(std::move(c));
  }
  return out;
}

/// One AOTInductor model of a package (data/aotinductor/<name>/).
struct AotiModel {
  enum class Weights { in_library, files, blob };
  std::string name;                    // "model"
  std::vector<std::string> libraries;  // the .so records
  std::string wrapper_source;          // the generated wrapper .cpp record ("" if absent)
  std::string weights_config;          // weights_config.json record (pickle_weights)
  std::string blob;                    // *.wrapper_weights.blob record (binary_blob)
  Weights weights = Weights::in_library;
  /// The constants: from weights_config.json when the weights are files, else from the wrapper
  /// source the package carries (name, fqn, dtype, shape, stride of each). Empty when neither says.
  std::vector<AotiConstant> constants;
};

/// What a .pt2 holds.
struct Pt2Package {
  std::string path;
  std::string top;  // the archive's top folder
  std::vector<Pt2Program> programs;
  std::vector<AotiModel> aoti;
};

/// Whether a torch zip is a PT2 archive (its `archive_format` record holds "pt2").
inline bool is_pt2_archive(const ZipArchive& z) {
  const ZipEntry* e = z.find("archive_format");
  if (e == nullptr) return false;
  const std::string v = record_text(z, *e, 64);
  if (v != "pt2") throw Error("pt2.archive", z.path(), e->name, "archive_format is '" + v.substr(0, 20) + "', not 'pt2'");
  return true;
}

/// Reads and checks one JSON record of a PT2 archive; errors name the file, the record and the key.
class Pt2Json {
public:
  Pt2Json(const ZipArchive& z, const ZipEntry& e, const ReadOptions& opts) : z_(z), record_(e.name) {
    if (e.size > (64u << 20)) fail("", "record is " + std::to_string(e.size) + " bytes, over the 64 MiB a config may have");
    const std::string text = z.read(e);
    parse_json_header(text.data(), text.size(), z.path(), record_, opts.max_depth());  // UTF-8, depth, duplicate keys
    json_ = nlohmann::ordered_json::parse(text);  // again, keeping the writer's order (PyTorch's dict order)
  }
  const nlohmann::ordered_json& root() const { return json_; }
  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw Error("pt2.config", z_.path(), key.empty() ? record_ : record_ + ": " + key, why);
  }
  const nlohmann::ordered_json& member(const nlohmann::ordered_json& obj, const char* name, const std::string& where) const {
    if (!obj.is_object()) fail(where, "is not a JSON object");
    const auto it = obj.find(name);
    if (it == obj.end()) fail(where, std::string("has no '") + name + "'");
    return *it;
  }
  bool boolean(const nlohmann::ordered_json& obj, const char* name, const std::string& where) const {
    const auto& v = member(obj, name, where);
    if (!v.is_boolean()) fail(where + "." + name, "is not true or false");
    return v.get<bool>();
  }
  std::string text(const nlohmann::ordered_json& v, const std::string& where) const {
    if (!v.is_string()) fail(where, "is not a string");
    return v.get<std::string>();
  }
  /// A non-negative int, plain or as a SymInt ({"as_int": n}); a symbolic one is refused.
  std::int64_t count(const nlohmann::ordered_json& v, const std::string& where) const {
    const nlohmann::ordered_json* n = &v;
    if (v.is_object()) {
      if (v.contains("as_expr")) fail(where, "is symbolic (as_expr): a stored tensor has concrete sizes");
      n = &member(v, "as_int", where);
    }
    if (!n->is_number_integer() || (n->is_number_integer() && !n->is_number_unsigned() && n->get<std::int64_t>() < 0))
      fail(where, "is not a non-negative integer");
    const std::uint64_t u = n->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX / 2)) fail(where, "is too large");
    return static_cast<std::int64_t>(u);
  }
  std::vector<std::int64_t> counts(const nlohmann::ordered_json& v, const std::string& where) const {
    if (!v.is_array()) fail(where, "is not a list");
    if (v.size() > 64) fail(where, "has more than 64 dimensions");
    std::vector<std::int64_t> out;
    for (std::size_t i = 0; i < v.size(); ++i) out.push_back(count(v[i], where + "[" + std::to_string(i) + "]"));
    return out;
  }
  const std::string& record() const { return record_; }
  const std::string& path() const { return z_.path(); }

private:
  const ZipArchive& z_;
  std::string record_;
  nlohmann::ordered_json json_;
};

/// A record name from a config: a plain file name inside `dir` (no folder, no '..').
inline std::string pt2_record_in(const Pt2Json& cfg, const std::string& dir, const std::string& name, const std::string& where) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
      name.find('\0') != std::string::npos)
    throw Error("pt2.bad_path", cfg.path(), cfg.record() + ": " + where,
                "names '" + name.substr(0, 200) + "', which is not a plain file name inside " + dir);
  return dir + "/" + name;
}

/// Checks that the elements a view (sizes, strides, storage_offset) reaches lie inside a record of
/// `nbytes` bytes of `dtype` elements.
inline void check_view_fits(const std::string& path, const std::string& where, Dtype dtype, const std::vector<std::int64_t>& sizes,
                            const std::vector<std::int64_t>& strides, std::int64_t offset, std::uint64_t nbytes) {
  if (sizes.size() != strides.size())
    throw Error("pt2.bounds", path, where,
                "has " + std::to_string(sizes.size()) + " sizes but " + std::to_string(strides.size()) + " strides");
  const std::uint64_t es = dtype->size, capacity = nbytes / es;
  std::uint64_t numel = 1, reach = static_cast<std::uint64_t>(offset), tmp = 0;
  for (auto s : sizes)
    if (mul_overflows(numel, static_cast<std::uint64_t>(s), &numel)) throw Error("pt2.bounds", path, where, "size overflows");
  if (numel == 0) {
    if (reach > capacity)
      throw Error("pt2.bounds", path, where,
                  "empty tensor at storage offset " + std::to_string(reach) + ", past the record's " + std::to_string(capacity) +
                      " elements");
    return;
  }
  for (std::size_t k = 0; k < sizes.size(); ++k)
    if (mul_overflows(static_cast<std::uint64_t>(sizes[k] - 1), static_cast<std::uint64_t>(strides[k]), &tmp) ||
        add_overflows(reach, tmp, &reach))
      throw Error("pt2.bounds", path, where, "tensor extent overflows");
  if (reach >= capacity)
    throw Error("pt2.bounds", path, where,
                "sizes " + shape_str(sizes) + ", strides " + shape_str(strides) + " and storage offset " + std::to_string(offset) +
                    " reach element " + std::to_string(reach) + " of a record holding " + std::to_string(capacity) + " " + dtype->torch +
                    " elements (" + std::to_string(nbytes) + " bytes)");
}

/// A payload config (data/weights/<model>_weights_config.json, data/constants/<model>_constants_config.json).
inline std::vector<Pt2Payload> parse_payload_config(const ZipArchive& z, const ZipEntry& e, const std::string& dir, bool constants,
                                                    const ReadOptions& opts) {
  const Pt2Json cfg(z, e, opts);
  const auto& config = cfg.member(cfg.root(), "config", "top level");
  if (!config.is_object()) cfg.fail("config", "is not a JSON object");
  if (config.size() > opts.max_tensors()) cfg.fail("config", "lists more than max_tensors entries");
  std::vector<Pt2Payload> out;
  out.reserve(config.size());
  for (auto it = config.begin(); it != config.end(); ++it) {
    Pt2Payload p;
    p.fqn = it.key();
    const std::string where = "config." + p.fqn;
    const auto& meta = it.value();
    p.record = pt2_record_in(cfg, dir, cfg.text(cfg.member(meta, "path_name", where), where + ".path_name"), where + ".path_name");
    p.is_param = cfg.boolean(meta, "is_param", where);
    p.use_pickle = cfg.boolean(meta, "use_pickle", where);
    const auto& tm = cfg.member(meta, "tensor_meta", where);
    if (tm.is_null()) {
      // Only custom objects (torchbind or opaque values) come without tensor metadata, and always pickled.
      if (!constants || !p.use_pickle) cfg.fail(where + ".tensor_meta", "is null, but only a pickled custom object constant may lack it");
      p.tensor = false;
      out.push_back(std::move(p));
      continue;
    }
    const std::string mw = where + ".tensor_meta";
    const auto& dt = cfg.member(tm, "dtype", mw);
    if (!dt.is_number_integer()) cfg.fail(mw + ".dtype", "is not an integer dtype code");
    const char* name = pt2_dtype_name(dt.get<std::int64_t>());
    if (name == nullptr)
      throw Error("pt2.dtype", z.path(), cfg.record() + ": " + mw + ".dtype",
                  "dtype code " + std::to_string(dt.get<std::int64_t>()) + " is not one of torch.export's ScalarType codes");
    p.dtype = dtype_from_torch(name);
    if (p.dtype == nullptr)
      throw Error("format.unsupported_dtype", z.path(), cfg.record() + ": " + mw + ".dtype",
                  std::string("dtype ") + name + " (code " + std::to_string(dt.get<std::int64_t>()) + ") is not one statedict reads");
    p.sizes = cfg.counts(cfg.member(tm, "sizes", mw), mw + ".sizes");
    p.strides = cfg.counts(cfg.member(tm, "strides", mw), mw + ".strides");
    p.storage_offset = cfg.count(cfg.member(tm, "storage_offset", mw), mw + ".storage_offset");
    if (tm.contains("layout") && !(tm["layout"].is_number_integer() && tm["layout"].get<std::int64_t>() == 7))
      cfg.fail(mw + ".layout", "is not 7 (strided): statedict reads dense tensors only");
    if (p.sizes.size() != p.strides.size())
      throw Error("pt2.bounds", z.path(), cfg.record() + ": " + mw,
                  "has " + std::to_string(p.sizes.size()) + " sizes but " + std::to_string(p.strides.size()) + " strides");
    out.push_back(std::move(p));
  }
  return out;
}

/// The AOTInductor models of a package: their files and where their constants are.
inline std::vector<AotiModel> describe_aoti(const ZipArchive& z, const ReadOptions& opts) {
  static const std::string dir = "data/aotinductor/";
  std::map<std::string, AotiModel> models;
  const std::size_t skip = z.top().size() + 1;
  for (const ZipEntry& e : z.entries()) {
    const std::string_view rel = std::string_view(e.name).substr(skip);
    if (rel.compare(0, dir.size(), dir) != 0) continue;
    const std::string_view rest = rel.substr(dir.size());
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos || slash == 0) continue;
    AotiModel& m = models[std::string(rest.substr(0, slash))];
    m.name = std::string(rest.substr(0, slash));
    const std::string file(rest.substr(slash + 1));
    const std::string r(rel);
    if (file.size() > 3 && file.compare(file.size() - 3, 3, ".so") == 0)
      m.libraries.push_back(r);
    else if (file == "weights_config.json")
      m.weights_config = r;
    else if (file.size() > 21 && file.compare(file.size() - 21, 21, ".wrapper_weights.blob") == 0)
      m.blob = r;
    else if (file.size() > 12 && file.compare(file.size() - 12, 12, ".wrapper.cpp") == 0)
      m.wrapper_source = r;
    else if (m.wrapper_source.empty() && file.size() > 4 && file.compare(file.size() - 4, 4, ".cpp") == 0 &&
             file.find("kernel") == std::string::npos)
      m.wrapper_source = r;
  }
  std::vector<AotiModel> out;
  for (auto& [name, m] : models) {
    if (!m.wrapper_source.empty()) m.constants = aoti_constants_from_source(z, *z.find(m.wrapper_source));
    if (!m.weights_config.empty()) {
      m.weights = AotiModel::Weights::files;
      const Pt2Json cfg(z, *z.find(m.weights_config), opts);
      if (!cfg.root().is_object()) cfg.fail("", "is not a JSON object");
      std::vector<AotiConstant> listed;
      for (auto it = cfg.root().begin(); it != cfg.root().end(); ++it) {
        const std::string where = it.key();
        const auto& v = it.value();
        if (!v.is_array() || v.size() != 4) cfg.fail(where, "is not [file, sizes, strides, storage_offset]");
        AotiConstant c;
        c.fqn = it.key();
        c.record = pt2_record_in(cfg, "data/weights", cfg.text(v[0], where + "[0]"), where + "[0]");
        c.sizes = cfg.counts(v[1], where + "[1]");
        c.strides = cfg.counts(v[2], where + "[2]");
        c.storage_offset = cfg.count(v[3], where + "[3]");
        if (c.sizes.size() != c.strides.size())
          throw Error("pt2.bounds", z.path(), cfg.record() + ": " + where,
                      "has " + std::to_string(c.sizes.size()) + " sizes but " + std::to_string(c.strides.size()) + " strides");
        for (const auto& s : m.constants)  // the source's names and dtypes, where it has them
          if (s.fqn == c.fqn) {
            c.name = s.name;
            c.dtype = s.dtype;
          }
        listed.push_back(std::move(c));
      }
      m.constants = std::move(listed);
    } else if (!m.blob.empty()) {
      m.weights = AotiModel::Weights::blob;
    }
    out.push_back(std::move(m));
  }
  return out;
}

/// What a PT2 archive holds: its exported programs' payload configs and its AOTInductor models.
inline Pt2Package describe_pt2(const ZipArchive& z, const ReadOptions& opts) {
  Pt2Package pkg;
  pkg.path = z.path();
  pkg.top = z.top();
  const std::size_t skip = z.top().size() + 1;
  for (const ZipEntry& e : z.entries()) {
    const std::string_view rel = std::string_view(e.name).substr(skip);
    if (rel.compare(0, 7, "models/") != 0 || rel.size() <= 12 || rel.compare(rel.size() - 5, 5, ".json") != 0) continue;
    const std::string name(rel.substr(7, rel.size() - 12));
    if (name.find('/') != std::string::npos) continue;
    Pt2Program prog;
    prog.name = name;
    const std::string wc = "data/weights/" + name + "_weights_config.json", cc = "data/constants/" + name + "_constants_config.json";
    const ZipEntry* w = z.find(wc);
    if (w == nullptr) {
      if (z.find("data/weights/" + name + ".pt") != nullptr)
        throw Error("format.unsupported", z.path(), z.top() + "/data/weights/" + name + ".pt",
                    "a torch.export archive of the legacy layout (weights as one pickle, PyTorch < 2.7): save it again with "
                    "torch.export.save of a newer PyTorch");
      throw Error("format.missing_record", z.path(), z.top() + "/" + wc, "the archive holds program '" + name + "' but no weights config");
    }
    prog.weights = parse_payload_config(z, *w, "data/weights", false, opts);
    if (const ZipEntry* c = z.find(cc)) prog.constants = parse_payload_config(z, *c, "data/constants", true, opts);
    pkg.programs.push_back(std::move(prog));
  }
  pkg.aoti = describe_aoti(z, opts);
  return pkg;
}

/// The same for a file (what the AOTI load target calls).
inline Pt2Package describe_pt2(const std::string& path, const ReadOptions& opts = {}) {
  ZipArchive z(MappedFile::open(path, opts));
  if (!is_pt2_archive(z)) throw Error("pt2.archive", path, "", "not a PT2 archive (no archive_format record holding 'pt2')");
  return describe_pt2(z, opts);
}

/// The sentence a reader of a package whose weights are compiled into its .so says.
inline std::string aoti_compiled_in_text(const Pt2Package& pkg, const AotiModel& m) {
  const std::string so = m.libraries.empty() ? "data/aotinductor/" + m.name + "/ (no .so found)" : m.libraries.front();
  const std::string n = m.constants.empty() ? "" : std::to_string(m.constants.size()) + " ";
  (void)pkg;
  return "the package's " + n + "constants are compiled into " + so +
         "; it holds no weight files: export with aot_inductor.package_constants_in_so=False, or load new weights into it with "
         "statedict::load(AOTIModelPackageLoader&, ...)";
}

/// Builds a checkpoint's tree from a PT2 archive's payloads.
class Pt2Reader {
public:
  Pt2Reader(const ZipArchive& z, const ReadOptions& opts) : z_(z), opts_(opts), path_(z.path()) {}

  std::shared_ptr<CheckpointData> read() {
    const Pt2Package pkg = describe_pt2(z_, opts_);
    cd_ = std::make_shared<CheckpointData>();
    cd_->path = path_;
    cd_->max_depth = opts_.max_depth();
    cd_->handed.files.views = std::make_unique<FileViews>(z_.file());
    cd_->root = cd_->tree.add(Kind::dict);
    if (!pkg.programs.empty()) {
      cd_->format = Format::pt2;
      const bool nest = pkg.programs.size() > 1;  // several programs: each under its name
      for (const Pt2Program& prog : pkg.programs) {
        std::uint32_t at = cd_->root;
        if (nest) {
          at = cd_->tree.add(Kind::dict);
          add_item(cd_->root, prog.name, at);
        }
        for (const Pt2Payload& p : prog.weights) add_item(at, p.fqn, payload(p, "data/weights"));
        std::string names;
        for (const Pt2Payload& p : prog.constants) {
          names += (names.empty() ? "" : ", ") + p.fqn;
          if (opts_.pt2_constants()) add_item(at, p.fqn, payload(p, "data/constants"));
        }
        if (!names.empty()) cd_->metadata[nest ? "pt2.constants." + prog.name : std::string("pt2.constants")] = names;
      }
      return cd_;
    }
    cd_->format = Format::aoti_package;
    if (pkg.aoti.empty())
      throw Error("pt2.archive", path_, "", "the PT2 archive holds neither an exported program nor an AOTInductor model");
    const bool nest = pkg.aoti.size() > 1;
    for (const AotiModel& m : pkg.aoti) {
      if (m.weights == AotiModel::Weights::in_library)
        throw Error("pt2.compiled_in", path_, z_.top() + "/data/aotinductor/" + m.name, aoti_compiled_in_text(pkg, m));
      std::uint32_t at = cd_->root;
      if (nest) {
        at = cd_->tree.add(Kind::dict);
        add_item(cd_->root, m.name, at);
      }
      if (m.weights == AotiModel::Weights::blob) {
        blob_weights(m, at);
        continue;
      }
      for (const AotiConstant& c : m.constants) add_item(at, c.fqn, aoti_weight(c));
    }
    return cd_;
  }

private:
  const ZipEntry& record(const std::string& rel, const std::string& fqn) const {
    const ZipEntry* e = z_.find(rel);
    if (e == nullptr) throw Error("format.missing_record", path_, z_.top() + "/" + rel, "record of '" + fqn + "' is missing");
    z_.payload(*e);  // refuses a compressed record
    return *e;
  }

  void add_item(std::uint32_t dict, const std::string& key, std::uint32_t value) {
    Node k;
    k.kind = Kind::string;
    k.text = key;
    const std::uint32_t ki = cd_->tree.add(std::move(k));
    cd_->tree.nodes[dict].kv().emplace_back(ki, value);
    if (++count_ > opts_.max_tensors()) throw Error("limit.tensors", path_, "", "more than max_tensors tensors");
  }

  /// The tensor a torch.save'd record holds (use_pickle, and AOTI's pickle_weights): its tree's root.
  Node pickled_tensor(const ZipEntry& e, const std::string& fqn) const {
    std::shared_ptr<CheckpointData> inner;
    try {
      inner = read_torch_zip(ZipArchive(z_.file(), e.offset, e.size), opts_, /*describe=*/false);
    } catch (const Error& err) {
      throw Error("pt2.pickle", path_, e.name, "record of '" + fqn + "' is not a readable torch.save file: " + err.what());
    }
    const Node& n = inner->tree.nodes[inner->root];
    if (n.kind != Kind::tensor || n.internal != Internal::value)
      throw Error("pt2.pickle", path_, e.name, "record of '" + fqn + "' holds a " + python_type(n.kind) + ", not a tensor");
    return n;
  }

  std::uint32_t payload(const Pt2Payload& p, const char* dir) {
    const std::string where = p.record + " ('" + p.fqn + "')";
    const ZipEntry& e = record(p.record, p.fqn);
    if (!p.tensor) {
      Node n;
      n.kind = Kind::object;
      n.text = "custom object";
      const std::uint32_t id = cd_->tree.add(std::move(n));
      cd_->tree.nodes[id].internal = Internal::unreadable;
      cd_->tree.nodes[id].pending = static_cast<std::uint32_t>(cd_->reasons.size());
      cd_->reasons.push_back("a pickled custom object constant (" + p.record + "), not a tensor; statedict does not unpickle those");
      return id;
    }
    (void)dir;
    if (p.use_pickle) {
      Node n = pickled_tensor(e, p.fqn);
      const Dtype got = n.raw() != nullptr ? n.raw() : find_dtype(n.tensor.scalar_type());
      std::vector<std::int64_t> shape = n.tensor.sizes().vec();
      if (n.raw() != nullptr) shape.pop_back();
      if (got != p.dtype || shape != p.sizes)
        throw Error("pt2.pickle", path_, z_.top() + "/" + p.record,
                    "record of '" + p.fqn + "' holds a " + (got ? got->torch : "?") + " " + shape_str(shape) +
                        " tensor; its tensor_meta says " + p.dtype->torch + " " + shape_str(p.sizes));
      return cd_->tree.add(std::move(n));
    }
    if (e.size % p.dtype->size != 0)
      throw Error("pt2.bounds", path_, e.name,
                  "record of '" + p.fqn + "' has " + std::to_string(e.size) + " bytes, not a multiple of the " +
                      std::to_string(p.dtype->size) + "-byte " + p.dtype->torch + " elements");
    check_view_fits(path_, z_.top() + "/" + where, p.dtype, p.sizes, p.strides, p.storage_offset, e.size);
    return tensor_node(e.offset, e.size, p.dtype, p.storage_offset, p.sizes, p.strides);
  }

  /// A tensor over bytes [at, at+nbytes) of the file (a raw record, a constant of a blob); the
  /// views of one span share its storage (as torch's views of one record do).
  std::uint32_t tensor_node(std::uint64_t at, std::uint64_t nbytes, Dtype dtype, std::int64_t offset,
                            const std::vector<std::int64_t>& sizes, const std::vector<std::int64_t>& strides) {
    Node t;
    t.kind = Kind::tensor;
    if (!native(dtype)) t.raw() = dtype;
    FileTensors& files = cd_->handed.files;
    if (z_.file()->pread_only() && nbytes > 0) {
      auto it = described_.find(at);
      if (it == described_.end()) it = described_.emplace(at, files.add_storage(at, nbytes)).first;
      t.pending = files.describe(it->second, dtype, offset, sizes, strides);
    } else {
      auto it = made_.find(at);
      if (it == made_.end()) it = made_.emplace(at, storage_from_file(*files.views, at, nbytes, dtype->size, 1, opts_)).first;
      t.tensor = tensor_on(it->second, dtype, offset, sizes, strides);
    }
    return cd_->tree.add(std::move(t));
  }

  /// binary_blob: the constants' storages one after another, each starting on a 64-byte boundary,
  /// in the order of the wrapper's constants_info_ (folded constants have none). The blob has no
  /// header: the wrapper source the package carries is what says where each constant is.
  void blob_weights(const AotiModel& m, std::uint32_t dict) {
    const ZipEntry& e = record(m.blob, "the constants blob");
    const std::string where = z_.top() + "/" + m.blob;
    if (m.wrapper_source.empty() || m.constants.empty())
      throw Error("pt2.blob", path_, where,
                  "the constants are one binary blob, which does not describe itself, and the package carries no wrapper source "
                  "that lists them: export with package_constants_on_disk_format=\"pickle_weights\", or load the package with "
                  "AOTIModelPackageLoader");
    std::uint64_t at = 0;
    for (const AotiConstant& c : m.constants) {
      if (c.from_folded) continue;
      const std::string cw = where + " ('" + c.fqn + "')";
      if (c.dtype == nullptr)
        throw Error("pt2.blob", path_, cw, "the wrapper source " + m.wrapper_source + " gives no dtype statedict knows for this constant");
      std::uint64_t end = 0;
      if (add_overflows(at, c.data_size, &end) || end > e.size)
        throw Error("pt2.blob", path_, cw,
                    "bytes [" + std::to_string(at) + ", +" + std::to_string(c.data_size) + ") run past the " + std::to_string(e.size) +
                        "-byte blob: the blob and the wrapper source " + m.wrapper_source + " disagree");
      if (c.data_size % c.dtype->size != 0)
        throw Error("pt2.blob", path_, cw,
                    "data_size " + std::to_string(c.data_size) + " is not a whole number of " + c.dtype->torch + " elements");
      check_view_fits(path_, cw, c.dtype, c.sizes, c.strides, c.storage_offset, c.data_size);
      add_item(dict, c.fqn, tensor_node(e.offset + at, c.data_size, c.dtype, c.storage_offset, c.sizes, c.strides));
      at = end + (64 - end % 64) % 64;
    }
    if (at != e.size)
      throw Error("pt2.blob", path_, where,
                  "the blob has " + std::to_string(e.size) + " bytes, the wrapper source's constants take " + std::to_string(at) +
                      ": they disagree");
  }

  /// pickle_weights: a view (sizes, strides, offset) of the tensor a torch.save'd record holds.
  std::uint32_t aoti_weight(const AotiConstant& c) {
    auto it = pickled_.find(c.record);
    if (it == pickled_.end()) it = pickled_.emplace(c.record, pickled_tensor(record(c.record, c.fqn), c.fqn)).first;
    const Node& whole = it->second;
    const Dtype dt = whole.raw() != nullptr ? whole.raw() : find_dtype(whole.tensor.scalar_type());
    if (dt == nullptr)
      throw Error("pt2.pickle", path_, z_.top() + "/" + c.record, "record of '" + c.fqn + "' has a dtype statedict does not read");
    const at::Storage& s = whole.tensor.storage();
    check_view_fits(path_, z_.top() + "/" + c.record + " ('" + c.fqn + "')", dt, c.sizes, c.strides, c.storage_offset, s.nbytes());
    Node t;
    t.kind = Kind::tensor;
    if (!native(dt)) t.raw() = dt;
    t.tensor = tensor_on(s, dt, c.storage_offset, c.sizes, c.strides);
    return cd_->tree.add(std::move(t));
  }

  const ZipArchive& z_;
  const ReadOptions& opts_;
  std::string path_;
  std::shared_ptr<CheckpointData> cd_;
  std::map<std::uint64_t, std::uint32_t> described_;  // span's file offset -> FileTensors storage
  std::map<std::uint64_t, at::Storage> made_;         // span's file offset -> storage
  std::map<std::string, Node> pickled_;               // record -> its tensor (AOTI pickle_weights)
  std::uint64_t count_ = 0;
};

inline std::shared_ptr<CheckpointData> read_pt2(const ZipArchive& z, const ReadOptions& opts) { return Pt2Reader(z, opts).read(); }

}  // namespace statedict::detail
