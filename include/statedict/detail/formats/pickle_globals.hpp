#pragma once
// The table of globals a pickle may name, in one room: those refused outright (they exist to run
// code or reach the system), and those the machine interprets when called (OrderedDict, tensor and
// parameter rebuilders, a few builtins, numpy scalars and arrays, io.BytesIO). Everything else is an
// inert object.
// Supporting another global is one entry in callables() and, if it needs one, a handler here.
#include <statedict/detail/formats/pickle_machine.hpp>

#include <set>
#include <string>
#include <vector>

namespace statedict::detail {

/// Globals whose only purpose in a pickle is to run code or reach the system.
inline bool is_forbidden_global(const std::string& module, const std::string& name) {
  static const std::set<std::string> modules = {"os",
                                                "posix",
                                                "nt",
                                                "subprocess",
                                                "sys",
                                                "runpy",
                                                "importlib",
                                                "pickle",
                                                "_pickle",
                                                "cPickle",
                                                "shutil",
                                                "socket",
                                                "ctypes",
                                                "pty",
                                                "code",
                                                "codeop",
                                                "commands",
                                                "webbrowser",
                                                "marshal",
                                                "multiprocessing",
                                                "signal",
                                                "asyncio",
                                                "pdb",
                                                "_posixsubprocess",
                                                "io",
                                                "_io",
                                                "tempfile",
                                                "glob",
                                                "urllib",
                                                "http",
                                                "ftplib",
                                                "smtplib",
                                                "telnetlib",
                                                "requests",
                                                "timeit",
                                                "trace",
                                                "cProfile",
                                                "profile",
                                                "dill",
                                                "imp",
                                                "zipimport",
                                                "threading",
                                                "_thread",
                                                "gc",
                                                "inspect",
                                                "ssl",
                                                "select",
                                                "mmap",
                                                "resource",
                                                "fcntl",
                                                "termios",
                                                "sqlite3",
                                                "shelve",
                                                "dbm",
                                                "site",
                                                "sysconfig",
                                                "distutils",
                                                "setuptools",
                                                "pip",
                                                "torch.hub",
                                                "torch.load",
                                                "torch.jit",
                                                "torch.ops",
                                                "torch._C",
                                                "torch.serialization",
                                                "torch.package"};
  // Named by torch's own sparse-tensor pickles; as an inert global it runs nothing.
  if (module == "torch.serialization" && name == "_get_layout") return false;
  // A buffer of bytes (an `_extra_state` TransformerEngine-style modules save): read as its bytes.
  if (module == "_io" && name == "BytesIO") return false;
  std::string top = module.substr(0, module.find('.'));
  if (modules.count(top) != 0 || modules.count(module) != 0) return true;
  for (const auto& m : modules)
    if (m.find('.') != std::string::npos && module.compare(0, m.size(), m) == 0 && (module.size() == m.size() || module[m.size()] == '.'))
      return true;
  if (module == "builtins" || module == "__builtin__") {
    static const std::set<std::string> names = {"eval",    "exec",   "execfile",    "compile",        "__import__", "getattr", "setattr",
                                                "delattr", "open",   "input",       "raw_input",      "breakpoint", "globals", "locals",
                                                "vars",    "apply",  "file",        "reload",         "help",       "exit",    "quit",
                                                "type",    "super",  "classmethod", "staticmethod",   "property",   "hasattr", "print",
                                                "map",     "filter", "__loader__",  "__build_class__"};
    return names.count(name) != 0;
  }
  if (module == "operator") return name == "attrgetter" || name == "methodcaller" || name == "itemgetter";
  if (module == "functools") return name == "reduce";
  if (module == "types") return name == "CodeType" || name == "FunctionType" || name == "MethodType" || name == "ModuleType";
  return false;
}

struct PickleGlobals {
  // ---- calls ----
  // The callables a pickle may call, one entry per global, each with its handler: supporting another
  // torch rebuild function is one entry here and, if it needs one, a handler below. A handler
  // returns the node it made, or npos when its arguments do not fit (the call then becomes an inert
  // object). A global named by no entry is an inert object when called, with one exception:
  // torch._utils._rebuild_* functions not listed are unreadable objects, never silently dropped.
  using Args = std::vector<std::uint32_t>;
  using Handler = std::uint32_t (*)(Unpickler& u, std::uint32_t fn, std::uint32_t args_id, const Args& a, const char* note);
  struct Callable {
    const char* name;
    Handler handler;
    const char* note = nullptr;  // for unreadable(): why
  };
  static const std::vector<Callable>& callables() {
    static const std::vector<Callable> table = {
        {"collections.OrderedDict", &PickleGlobals::make_dict},
        {"builtins.dict", &PickleGlobals::make_dict},
        {"__builtin__.dict", &PickleGlobals::make_dict},
        {"torch._utils._rebuild_tensor_v2", &PickleGlobals::make_tensor},
        {"torch._utils._rebuild_tensor", &PickleGlobals::make_tensor},
        {"torch._utils._rebuild_tensor_v3", &PickleGlobals::make_tensor},
        {"torch._utils._rebuild_parameter", &PickleGlobals::make_parameter},
        {"torch._utils._rebuild_parameter_with_state", &PickleGlobals::make_parameter},
        {"torch.nn.parameter.Parameter", &PickleGlobals::make_old_parameter},
        {"torch.nn.parameter.Buffer", &PickleGlobals::make_old_parameter},
        {"torch._tensor._rebuild_from_type_v2", &PickleGlobals::make_from_type},
        {"torch._tensor._rebuild_from_type", &PickleGlobals::make_from_type},
        {"torch._utils._rebuild_device_tensor_from_numpy", &PickleGlobals::make_device_tensor},
        {"torch._utils._rebuild_device_tensor_from_cpu_tensor", &PickleGlobals::make_device_tensor},
        {"torch.Size", &PickleGlobals::make_size},
        {"_codecs.encode", &PickleGlobals::make_encoded},
        {"builtins.set", &PickleGlobals::make_set},
        {"__builtin__.set", &PickleGlobals::make_set},
        {"builtins.frozenset", &PickleGlobals::make_set},
        {"__builtin__.frozenset", &PickleGlobals::make_set},
        {"builtins.complex", &PickleGlobals::make_complex},
        {"__builtin__.complex", &PickleGlobals::make_complex},
        {"builtins.bytearray", &PickleGlobals::make_bytes},
        {"__builtin__.bytearray", &PickleGlobals::make_bytes},
        {"builtins.bytes", &PickleGlobals::make_bytes},
        {"__builtin__.bytes", &PickleGlobals::make_bytes},
        {"builtins.list", &PickleGlobals::make_list},
        {"__builtin__.list", &PickleGlobals::make_list},
        {"builtins.tuple", &PickleGlobals::make_tuple},
        {"__builtin__.tuple", &PickleGlobals::make_tuple},
        {"copyreg._reconstructor", &PickleGlobals::make_reconstructed},
        {"copy_reg._reconstructor", &PickleGlobals::make_reconstructed},
        {"numpy.dtype", &PickleGlobals::make_numpy_dtype},
        {"numpy.core.multiarray._reconstruct", &PickleGlobals::make_numpy_array},
        {"numpy._core.multiarray._reconstruct", &PickleGlobals::make_numpy_array},
        {"numpy.core.numeric._frombuffer", &PickleGlobals::make_numpy_frombuffer},
        {"numpy._core.numeric._frombuffer", &PickleGlobals::make_numpy_frombuffer},
        {"numpy.core.multiarray.scalar", &PickleGlobals::make_numpy_scalar},
        {"numpy._core.multiarray.scalar", &PickleGlobals::make_numpy_scalar},
        {"_io.BytesIO", &PickleGlobals::call_bytes_io},
        {"torch._utils._rebuild_qtensor", &PickleGlobals::unreadable, "a quantized tensor: statedict does not read quantized tensors"},
        {"torch._utils._rebuild_sparse_tensor", &PickleGlobals::unreadable, "a sparse tensor: statedict reads dense tensors only"},
        {"torch._utils._rebuild_sparse_csr", &PickleGlobals::unreadable, "a sparse tensor: statedict reads dense tensors only"},
        {"torch._utils._rebuild_nested_tensor", &PickleGlobals::unreadable, "a nested tensor: statedict reads dense tensors only"},
        {"torch._utils._rebuild_meta_tensor_no_storage", &PickleGlobals::unreadable, "a meta tensor: it has no data"},
        {"torch._utils._rebuild_wrapper_subclass", &PickleGlobals::unreadable,
         "a tensor subclass without storage (meta or distributed): it has no data here"},
    };
    return table;
  }
  /// The table entry of a global "module.name" + 1, or 0.
  static std::int64_t entry_of(const std::string& fn) {
    static const KeyIndex index = [] {
      std::vector<std::string_view> names;
      for (const Callable& c : callables()) names.emplace_back(c.name);
      return KeyIndex(std::move(names));
    }();
    const std::size_t at = index.find(fn);
    return at == KeyIndex::none ? 0 : static_cast<std::int64_t>(at) + 1;
  }
  /// A tensor rebuilder statedict does not interpret: listed with the reason.
  static std::uint32_t unreadable(Unpickler& u, std::uint32_t fn, std::uint32_t args_id, const Args&, const char* note) {
    std::string why = note != nullptr ? std::string(note) : u.node(fn).text + " is not a tensor rebuilder statedict interprets";
    const std::uint32_t id = u.inert(u.node(fn).text, args_id);
    u.mark_unreadable(id, why);
    return id;
  }

  static std::uint32_t make_dict(Unpickler& u, std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    auto d = u.tree_.add(Kind::dict);
    if (a.empty()) return d;
    const Node& src = u.arg(a, 0);
    std::vector<std::uint32_t> flat;
    for (auto pair : src.items) {
      const Node& pr = u.node(pair);
      if (pr.items.size() != 2) u.fail("pickle.type", u.op_at_, u.node(fn).text + " given an item that is not a pair");
      flat.push_back(u.share(pr.items[0]));  // the pair may live on (in the memo)
      flat.push_back(u.share(pr.items[1]));
    }
    u.setitems(d, flat);
    return d;
  }
  static std::uint32_t make_tensor(Unpickler& u, std::uint32_t fn, std::uint32_t args_id, const Args& a, const char*) {
    const std::uint32_t made = u.rebuild_tensor(fn, a);
    u.recycle(args_id);  // the storage, size, stride and hooks live on in the tensor's spec
    return made;
  }
  /// A tensor made a Parameter: the tensor, with requires_grad kept.
  static std::uint32_t make_parameter(Unpickler& u, std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    if (a.empty() || u.arg(a, 0).kind != Kind::tensor) u.fail("pickle.bad_tensor", u.op_at_, u.node(fn).text + " without a tensor");
    keep_requires_grad(u, a);
    return u.share(a[0]);
  }
  /// PyTorch <= 0.3: Parameter(tensor[, requires_grad]) then BUILD; the tensor is what matters.
  static std::uint32_t make_old_parameter(Unpickler& u, std::uint32_t, std::uint32_t, const Args& a, const char*) {
    if (a.empty() || u.arg(a, 0).kind != Kind::tensor) return npos;
    keep_requires_grad(u, a);
    return u.share(a[0]);
  }
  static void keep_requires_grad(Unpickler& u, const Args& a) {
    if (a.size() > 1 && u.arg(a, 1).kind == Kind::boolean && u.arg(a, 0).pending != npos)
      u.st_.tensors[u.arg(a, 0).pending].requires_grad = u.arg(a, 1).boolean;
  }
  /// (func, new_type, args[, state]): rebuild with func, drop the Python subclass.
  static std::uint32_t make_from_type(Unpickler& u, std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    if (a.size() < 3 || u.node(a[0]).internal != Internal::global)
      u.fail("pickle.bad_tensor", u.op_at_, u.node(fn).text + " with malformed arguments");
    if (++u.call_depth_ > 4) u.fail("pickle.bad_tensor", u.op_at_, u.node(fn).text + " nested too deeply");
    u.pin(a[2]);  // the inner arguments stay an item of this call's tuple, which the memo may hold
    const std::uint32_t made = u.call(a[0], a[2]);
    --u.call_depth_;
    return u.share(made);
  }
  static std::uint32_t make_device_tensor(Unpickler& u, std::uint32_t, std::uint32_t, const Args& a, const char*) {
    return !a.empty() && u.arg(a, 0).kind == Kind::tensor ? u.share(a[0]) : npos;
  }
  static std::uint32_t make_size(Unpickler& u, std::uint32_t, std::uint32_t, const Args& a, const char*) {
    if (a.size() != 1) u.fail("pickle.type", u.op_at_, "torch.Size takes one tuple");
    u.want_int_tuple(a[0], "torch.Size");
    return u.make_seq(Kind::tuple, u.share_all(u.node(a[0]).items));
  }
  static std::uint32_t make_encoded(Unpickler& u, std::uint32_t, std::uint32_t, const Args& a, const char*) {
    if (a.empty() || u.arg(a, 0).kind != Kind::string) u.fail("pickle.type", u.op_at_, "_codecs.encode needs a str");
    std::string enc = a.size() > 1 && u.arg(a, 1).kind == Kind::string ? u.arg(a, 1).text : "utf-8";
    Node nd;
    nd.kind = Kind::bytes;
    if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1")
      nd.text = utf8_to_latin1(u, u.arg(a, 0).text);
    else if (enc == "utf-8" || enc == "utf8" || enc == "ascii")
      nd.text = u.arg(a, 0).text;
    else
      u.fail("pickle.type", u.op_at_, "_codecs.encode with unsupported encoding '" + u.printable(enc) + "'");
    return u.tree_.add(std::move(nd));
  }
  static std::uint32_t make_set(Unpickler& u, std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    auto s = u.tree_.add(Kind::set);
    if (a.empty()) return s;
    const Node& src = u.arg(a, 0);
    if (src.kind != Kind::list && src.kind != Kind::tuple && src.kind != Kind::set)
      u.fail("pickle.type", u.op_at_, u.node(fn).text + " of a " + u.kind_name(a[0]));
    u.node(s).items = u.share_all(src.items);
    return s;
  }
  static std::uint32_t make_complex(Unpickler& u, std::uint32_t, std::uint32_t, const Args& a, const char*) {
    Node nd;
    nd.kind = Kind::complex;
    if (a.size() >= 1) nd.real = number(u, a[0]);
    if (a.size() >= 2) nd.imag() = number(u, a[1]);
    return u.tree_.add(std::move(nd));
  }
  static std::uint32_t make_bytes(Unpickler& u, std::uint32_t, std::uint32_t, const Args& a, const char*) {
    Node nd;
    nd.kind = Kind::bytes;
    if (!a.empty()) {
      const Node& src = u.arg(a, 0);
      if (src.kind == Kind::bytes)
        nd.text = src.text;
      else if (src.kind == Kind::string)
        nd.text = utf8_to_latin1(u, src.text);
    }
    return u.tree_.add(std::move(nd));
  }
  static std::uint32_t make_list(Unpickler& u, std::uint32_t, std::uint32_t, const Args& a, const char*) {
    return u.make_seq(Kind::list, a.empty() ? Args{} : u.share_all(u.arg(a, 0).items));
  }
  static std::uint32_t make_tuple(Unpickler& u, std::uint32_t, std::uint32_t, const Args& a, const char*) {
    return u.make_seq(Kind::tuple, a.empty() ? Args{} : u.share_all(u.arg(a, 0).items));
  }
  static std::uint32_t make_reconstructed(Unpickler& u, std::uint32_t fn, std::uint32_t, const Args& a, const char*) {
    if (a.empty() || u.node(a[0]).internal != Internal::global) u.fail("pickle.type", u.op_at_, u.node(fn).text + " without a class");
    return u.newobj(a[0], u.tree_.add(Kind::tuple));
  }
  /// numpy dtypes and arrays are interpreted when BUILD gives them their state.
  static std::uint32_t make_numpy_dtype(Unpickler& u, std::uint32_t fn, std::uint32_t args_id, const Args&, const char*) {
    const std::uint32_t id = u.inert(u.node(fn).text, args_id);
    u.node(id).internal = Internal::numpy_dtype;
    return id;
  }
  static std::uint32_t make_numpy_array(Unpickler& u, std::uint32_t, std::uint32_t args_id, const Args&, const char*) {
    const std::uint32_t id = u.inert("numpy.ndarray", args_id);
    u.node(id).internal = Internal::numpy_array;
    return id;
  }
  // io.BytesIO as torch.save pickles it (Python's own reduction of it): NEWOBJ of _io.BytesIO with no
  // arguments, then BUILD with (value, position, __dict__ or None). The value becomes a bytes value
  // (all of it: the position is where a reader had got to, not where the data starts); nothing of
  // the BytesIO is run. Any other form is refused, as no Python writes it.
  static std::uint32_t call_bytes_io(Unpickler& u, std::uint32_t, std::uint32_t, const Args&, const char*) {
    u.fail("pickle.bytesio", u.op_at_, "_io.BytesIO called with arguments: Python pickles a BytesIO as NEWOBJ and BUILD");
  }
  static std::uint32_t new_bytes_io(Unpickler& u, std::uint32_t args) {
    if (u.node(args).kind != Kind::tuple || !u.node(args).items.empty())
      u.fail("pickle.bytesio", u.op_at_, "NEWOBJ of _io.BytesIO with arguments (" + u.kind_name(args) + "): Python gives it none");
    Node nd;
    nd.kind = Kind::object;
    nd.text = "_io.BytesIO";
    return u.tree_.add(std::move(nd));
  }
  static void build_bytes_io(Unpickler& u, std::uint32_t target, std::uint32_t state) {
    if (u.node(target).has_more()) u.fail("pickle.bytesio", u.op_at_, "io.BytesIO given items or a state before this BUILD");
    const Node& s = u.node(state);
    if (s.kind != Kind::tuple || s.items.size() != 3)
      u.fail("pickle.bytesio", u.op_at_,
             "io.BytesIO state is a " + u.kind_name(state) +
                 (s.kind == Kind::tuple ? " of " + std::to_string(s.items.size()) : std::string()) +
                 ", not (bytes, position, dict or None)");
    const Node& value = u.node(s.items[0]);
    const Node& pos = u.node(s.items[1]);
    const Node& attrs = u.node(s.items[2]);
    if (value.kind != Kind::bytes)
      u.fail("pickle.bytesio", u.op_at_, "io.BytesIO state holds a " + u.kind_name(s.items[0]) + ", not bytes");
    if (pos.kind != Kind::integer || pos.big || pos.integer < 0)
      u.fail("pickle.bytesio", u.op_at_, "io.BytesIO position is a " + u.kind_name(s.items[1]) + ", not a non-negative int");
    if (!(attrs.kind == Kind::none || (attrs.kind == Kind::dict && attrs.kv().empty())))
      u.fail("pickle.bytesio", u.op_at_, "io.BytesIO with attributes of its own (" + u.kind_name(s.items[2]) + "): not a plain buffer");
    Node nd;
    nd.kind = Kind::bytes;
    nd.text = value.text;
    u.node(target) = std::move(nd);  // in place: the memo may hold the BytesIO's id
    u.recycle(state);
  }
  /// A numpy scalar (dtype, bytes): a 0-d tensor, or an unreadable object when no tensor dtype fits.
  static std::uint32_t make_numpy_scalar(Unpickler& u, std::uint32_t fn, std::uint32_t args_id, const Args& a, const char*) {
    if (a.size() != 2 || u.node(a[0]).internal != Internal::numpy_dtype || u.arg(a, 1).kind != Kind::bytes) return npos;
    Dtype dt = nullptr;
    std::string why;
    auto t = numpy_tensor(u, a[0], {}, u.node(a[1]).text, &dt, &why);
    if (!t.defined()) {
      const std::uint32_t id = u.inert(u.node(fn).text, args_id);
      u.mark_unreadable(id, why);
      return id;
    }
    Node nd;
    nd.kind = Kind::tensor;
    nd.tensor = t;
    if (!native(dt)) nd.raw() = dt;
    return u.tree_.add(std::move(nd));
  }

  static double number(Unpickler& u, std::uint32_t id) {
    const Node& nd = u.node(id);
    if (nd.kind == Kind::floating) return nd.real;
    if (nd.kind == Kind::integer) return static_cast<double>(nd.integer);
    u.fail("pickle.type", u.op_at_, "expected a number, got a " + u.kind_name(id));
  }
  static std::string utf8_to_latin1(Unpickler& u, const std::string& s) {
    std::string r;
    r.reserve(s.size());
    for (std::size_t k = 0; k < s.size(); ++k) {
      const auto c = static_cast<std::uint8_t>(s[k]);
      if (c < 0x80)
        r += static_cast<char>(c);
      else if ((c == 0xC2 || c == 0xC3) && k + 1 < s.size()) {
        r += static_cast<char>(((c & 0x03) << 6) | (static_cast<std::uint8_t>(s[k + 1]) & 0x3F));
        ++k;
      } else
        u.fail("pickle.type", u.op_at_, "latin-1 encode of a character above U+00FF");
    }
    return r;
  }

  // numpy: dtype objects are numpy.dtype(code, align, copy) then BUILD (version, byteorder, ...).
  // Returns the dtype and whether it is big-endian; nullptr (with `why`) when no tensor can hold it.
  static std::pair<Dtype, bool> numpy_dtype(Unpickler& u, std::uint32_t id, std::string* why) {
    const Node& dt = u.node(id);
    if (dt.internal != Internal::numpy_dtype || dt.args() == npos) {
      *why = "its dtype is a " + u.kind_name(id) + ", not a numpy.dtype";
      return {nullptr, false};
    }
    const Node& a = u.node(dt.args());
    if (a.items.empty() || u.node(a.items[0]).kind != Kind::string) {
      *why = "its numpy.dtype has no type code";
      return {nullptr, false};
    }
    const std::string& code = u.node(a.items[0]).text;
    Dtype type = dtype_from_numpy(code);
    if (type == nullptr) {
      *why = "numpy dtype '" + u.printable(code) + "' has no tensor equivalent";
      return {nullptr, false};
    }
    bool big = false;
    if (dt.state() != npos) {
      const Node& s = u.node(dt.state());
      if (s.kind == Kind::tuple && s.items.size() > 1 && u.node(s.items[1]).kind == Kind::string) big = u.node(s.items[1]).text == ">";
    }
    return {type, big};
  }
  /// A numpy array's or scalar's bytes as a tensor; undefined (with `why`) when no tensor can hold it.
  static at::Tensor numpy_tensor(Unpickler& u, std::uint32_t dtype_id, const std::vector<std::int64_t>& shape, const std::string& raw,
                                 Dtype* dtype, std::string* why) {
    auto [dt, big] = numpy_dtype(u, dtype_id, why);
    *dtype = dt;
    if (dt == nullptr) return {};
    const std::size_t es = dt->size;
    std::uint64_t numel = 1;
    for (auto s : shape)
      if (mul_overflows(numel, static_cast<std::uint64_t>(s), &numel)) u.fail("pickle.bad_numpy", u.op_at_, "numpy array shape overflows");
    std::uint64_t bytes;
    if (mul_overflows(numel, es, &bytes) || bytes != raw.size())
      u.fail("pickle.bad_numpy", u.op_at_,
             "numpy array data has " + std::to_string(raw.size()) + " bytes, shape and dtype need " + std::to_string(numel * es));
    at::Tensor t = empty_of(dt, shape);
    auto* p = static_cast<std::uint8_t*>(t.data_ptr());
    if (raw.empty()) return t;  // an empty array: its tensor has no storage (data_ptr() is null), nothing to copy
    std::memcpy(p, raw.data(), raw.size());
    const std::size_t unit = swap_unit(dt, big);
    if (unit > 1)
      for (std::uint64_t e = 0; e + unit <= bytes; e += unit) std::reverse(p + e, p + e + unit);
    return t;
  }
  /// A numpy array's data as raw bytes: bytes, or a Python 2 str (BINSTRING, whose bytes
  /// op_binstring keeps recoverable; `converted` holds them when they must be made); nullptr for
  /// anything else (the items of an object array).
  static const std::string* numpy_data(Unpickler& u, std::uint32_t id, std::string& converted) {
    const Node& data = u.node(id);
    if (data.kind == Kind::bytes || (data.kind == Kind::string && data.integer == binstring_verbatim)) return &data.text;
    if (data.kind != Kind::string || data.integer != binstring_latin1) return nullptr;
    converted = utf8_to_latin1(u, data.text);
    return &converted;
  }
  static void build_numpy_array(Unpickler& u, std::uint32_t target, std::uint32_t state) {
    // state = (version, shape, dtype, is_fortran, data)
    const Node& s = u.node(state);
    u.node(target).state() = state;
    if (s.kind != Kind::tuple || s.items.size() != 5)
      return u.mark_unreadable(target, "numpy array state is not (version, shape, dtype, fortran, data)");
    const Node& shape = u.node(s.items[1]);
    if (shape.kind != Kind::tuple) return u.mark_unreadable(target, "numpy array shape is not a tuple");
    std::string converted;
    const std::string* data = numpy_data(u, s.items[4], converted);
    if (data == nullptr) return u.mark_unreadable(target, "numpy array of Python objects (dtype 'O'): its items are not tensor data");
    const bool fortran = u.node(s.items[3]).kind == Kind::boolean && u.node(s.items[3]).boolean;
    numpy_array_into(u, target, s.items[2], u.want_int_tuple(s.items[1], "numpy shape"), fortran, *data);
  }
  /// numpy's reduction for pickle protocol 5: _frombuffer(buffer, dtype, shape, order), the buffer
  /// (bytes or bytearray in band) holding the array's memory in C or Fortran order.
  static std::uint32_t make_numpy_frombuffer(Unpickler& u, std::uint32_t fn, std::uint32_t args_id, const Args& a, const char*) {
    const std::uint32_t id = u.inert("numpy.ndarray", args_id);
    if (a.size() != 4 || u.arg(a, 0).kind != Kind::bytes || u.arg(a, 2).kind != Kind::tuple || u.arg(a, 3).kind != Kind::string ||
        (u.arg(a, 3).text != "C" && u.arg(a, 3).text != "F")) {
      u.mark_unreadable(id, u.node(fn).text + " without (buffer, dtype, shape, 'C' or 'F'): an out-of-band buffer or an unknown form");
      return id;
    }
    numpy_array_into(u, id, a[1], u.want_int_tuple(a[2], "numpy shape"), u.arg(a, 3).text == "F", u.arg(a, 0).text);
    return id;
  }
  /// Makes node `target` the tensor of a numpy array (or marks it unreadable, saying why).
  static void numpy_array_into(Unpickler& u, std::uint32_t target, std::uint32_t dtype_id, const std::vector<std::int64_t>& dims,
                               bool fortran, const std::string& data) {
    std::vector<std::int64_t> order = dims;
    if (fortran) std::reverse(order.begin(), order.end());
    Dtype dt = nullptr;
    std::string why;
    at::Tensor t = numpy_tensor(u, dtype_id, order, data, &dt, &why);
    if (!t.defined()) return u.mark_unreadable(target, why);
    const auto rank = static_cast<std::int64_t>(order.size());
    if (fortran && rank > 1) {
      std::vector<std::int64_t> perm(static_cast<std::size_t>(t.dim()));
      for (std::int64_t k = 0; k < t.dim(); ++k)
        perm[static_cast<std::size_t>(k)] = k < rank ? rank - 1 - k : k;  // a raw byte dim stays last
      t = t.permute(perm);
    }
    Node& nd = u.node(target);
    nd.kind = Kind::tensor;
    nd.internal = Internal::value;
    nd.tensor = t;
    if (!native(dt)) nd.raw() = dt;
  }
};

/// Calls global `fn` (a node push_global made) with the tuple `args_id`.
inline std::uint32_t Unpickler::call(std::uint32_t fn, std::uint32_t args_id) {
  const std::int64_t entry = node(fn).integer;
  const Args a = tuple_args(args_id, node(fn).text);
  if (entry > 0) {
    const PickleGlobals::Callable& c = PickleGlobals::callables()[static_cast<std::size_t>(entry - 1)];
    const std::uint32_t made = c.handler(*this, fn, args_id, a, c.note);
    if (made != npos) return made;
  }
  if (node(fn).text.compare(0, 22, "torch._utils._rebuild_") == 0) return PickleGlobals::unreadable(*this, fn, args_id, a, nullptr);
  return inert(node(fn).text, args_id);
}

inline std::int64_t Unpickler::callable_of(const std::string& fn) { return PickleGlobals::entry_of(fn); }

inline std::uint32_t Unpickler::newobj(std::uint32_t cls, std::uint32_t args) {
  if (node(cls).internal != Internal::global) fail("pickle.type", op_at_, "NEWOBJ of a " + kind_name(cls) + " (not a class)");
  const std::string name = node(cls).text;
  if (name == "collections.OrderedDict" || name == "builtins.dict") return tree_.add(Kind::dict);
  if (name == "builtins.set" || name == "__builtin__.set") return tree_.add(Kind::set);
  if (name == "builtins.list" || name == "__builtin__.list") return tree_.add(Kind::list);
  if (name == "_io.BytesIO") return PickleGlobals::new_bytes_io(*this, args);
  tuple_args(args, name);
  Node nd;
  nd.kind = Kind::object;
  nd.text = name;
  nd.args() = args;
  return tree_.add(std::move(nd));
}

inline void Unpickler::build(std::uint32_t target, std::uint32_t state) {
  Node& t = node(target);
  if (t.internal == Internal::numpy_array) {
    PickleGlobals::build_numpy_array(*this, target, state);
    return;
  }
  if (t.kind == Kind::object && t.internal == Internal::value && t.text == "_io.BytesIO") {
    PickleGlobals::build_bytes_io(*this, target, state);
    return;
  }
  if (t.internal == Internal::numpy_dtype) {
    node(target).state() = state;
    return;
  }
  if (t.kind == Kind::object && t.internal == Internal::value) {
    node(target).state() = state;
    return;
  }
  if (t.kind == Kind::dict) {
    node(target).state() = state;
    return;
  }                                    // OrderedDict._metadata
  if (t.kind == Kind::tensor) return;  // Python attributes of a Parameter: not needed
  fail("pickle.type", op_at_, "BUILD on a " + kind_name(target));
}

}  // namespace statedict::detail
