// Every malformed or hostile input of shared/notes/bad-inputs.md: a statedict::Error that names the
// file and the place, never a crash, a hang or an allocation the file does not justify.
#include "helpers.hpp"

#include <statedict/detail/formats/pickle.hpp>
#include <statedict/detail/formats/zip.hpp>
#include <statedict/detail/write/writer.hpp>

using sdtest::fixture;
using namespace std::string_literals;
using statedict::Kind;

namespace {

// ---- builders ------------------------------------------------------------------------------------
std::string u32le(std::uint32_t v) {
  std::string s;
  statedict::detail::put32(s, v);
  return s;
}
std::string u64le(std::uint64_t v) {
  std::string s;
  statedict::detail::put64(s, v);
  return s;
}
std::string uni(const std::string& s) { return "X" + u32le(static_cast<std::uint32_t>(s.size())) + s; }
std::string glob(const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; }
std::string i1(int v) { return std::string("K") + static_cast<char>(v); }
const std::string PROTO = "\x80\x02";

/// A persistent id for a float storage: ('storage', torch.FloatStorage, key, 'cpu', numel).
std::string pid(const std::string& key, const std::string& numel_op, const std::string& type = "FloatStorage") {
  return "(" + uni("storage") + glob("torch", type) + uni(key) + uni("cpu") + numel_op + "tQ";
}
/// {'w': _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())}
std::string one_tensor(const std::string& storage, const std::string& offset, const std::string& size, const std::string& stride) {
  return PROTO + "}" + uni("w") + glob("torch._utils", "_rebuild_tensor_v2") + "(" + storage + offset + size + stride + "\x89" +
         glob("collections", "OrderedDict") + ")RtRs.";
}

struct Entry {
  std::string name, data;
  std::uint16_t method = 0;
};

/// A zip written by statedict's own writer (valid container) from entries under "archive/".
std::string torch_zip(const std::string& file, const std::string& pickle, std::vector<Entry> extra = {}, bool with_pickle = true) {
  const std::string path = sdtest::temp_path(file);
  statedict::detail::AtomicFile f(path);
  statedict::detail::ZipWriter z(f);
  if (with_pickle) z.add("archive/data.pkl", pickle.data(), pickle.size());
  for (const auto& e : extra) z.add(e.name, e.data.data(), e.data.size());
  z.finish();
  f.commit();
  return path;
}

/// A hand-made zip with full control over fields a writer would never get wrong.
struct RawEntry {
  std::string name, data;
  std::uint16_t method = 0;
  std::uint32_t usize_override = 0, csize_override = 0;
  std::string cd_extra;
};
std::string raw_zip(const std::vector<RawEntry>& entries, std::uint32_t cd_size_override = 0, std::uint32_t cd_off_override = 0) {
  using statedict::detail::put16;
  using statedict::detail::put32;
  std::string out, cd;
  for (const auto& e : entries) {
    const auto off = static_cast<std::uint32_t>(out.size());
    put32(out, 0x04034b50u);
    put16(out, 20);
    put16(out, 0);
    put16(out, e.method);
    put16(out, 0);
    put16(out, 0);
    put32(out, 0);
    put32(out, static_cast<std::uint32_t>(e.data.size()));
    put32(out, static_cast<std::uint32_t>(e.data.size()));
    put16(out, static_cast<std::uint16_t>(e.name.size()));
    put16(out, 0);
    out += e.name + e.data;
    put32(cd, 0x02014b50u);
    put16(cd, 20);
    put16(cd, 20);
    put16(cd, 0);
    put16(cd, e.method);
    put16(cd, 0);
    put16(cd, 0);
    put32(cd, 0);
    put32(cd, e.csize_override ? e.csize_override : static_cast<std::uint32_t>(e.data.size()));
    put32(cd, e.usize_override ? e.usize_override : static_cast<std::uint32_t>(e.data.size()));
    put16(cd, static_cast<std::uint16_t>(e.name.size()));
    put16(cd, static_cast<std::uint16_t>(e.cd_extra.size()));
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0);
    put32(cd, 0);
    put32(cd, off);
    cd += e.name + e.cd_extra;
  }
  const auto cd_off = static_cast<std::uint32_t>(out.size());
  out += cd;
  put32(out, 0x06054b50u);
  put16(out, 0);
  put16(out, 0);
  put16(out, static_cast<std::uint16_t>(entries.size()));
  put16(out, static_cast<std::uint16_t>(entries.size()));
  put32(out, cd_size_override ? cd_size_override : static_cast<std::uint32_t>(cd.size()));
  put32(out, cd_off_override ? cd_off_override : cd_off);
  put16(out, 0);
  return out;
}

/// read() must fail with this id, naming the file in what().
void refuses(const std::string& path, const std::string& id) {
  INFO(path << " should fail with " << id);
  try {
    statedict::read(path);
    FAIL("read succeeded");
  } catch (const statedict::Error& e) {
    INFO(e.what());
    CHECK(e.id() == id);
    CHECK(std::string(e.what()).find(std::filesystem::path(path).filename().string()) != std::string::npos);
  }
}
void refuses_bytes(const std::string& name, const std::string& bytes, const std::string& id) {
  refuses(sdtest::write_temp(name, bytes), id);
}
void refuses_pickle(const std::string& name, const std::string& pickle, const std::string& id, std::vector<Entry> extra = {}) {
  refuses(torch_zip(name, pickle, std::move(extra)), id);
}
std::string floats(std::size_t n) { return std::string(n * 4, '\0'); }

}  // namespace

TEST_CASE("zip containers that are broken are refused with the place named", "[bad][zip]") {
  refuses_bytes("empty.pt", "", "format.empty");
  const std::string good = sdtest::read_bytes(fixture("resnet_plain.pt"));
  for (std::size_t cut = 4; cut < good.size(); cut += 997) {
    INFO("cut at " << cut);
    CHECK_THROWS_AS(statedict::read(sdtest::write_temp("cut.pt", good.substr(0, cut))), statedict::Error);
  }
  const std::string pkl = one_tensor(pid("0", i1(2)), i1(0), std::string("K\x02\x85", 3), std::string("K\x01\x85", 3));
  RawEntry p{"archive/data.pkl", pkl, 0, 0, 0, {}};
  RawEntry d{"archive/data/0", floats(2), 0, 0, 0, {}};
  CHECK(statedict::read(sdtest::write_temp("raw_ok.pt", raw_zip({p, d}))).at("w").tensor().numel() == 2);
  refuses_bytes("cd_past_end.pt", raw_zip({p, d}, 0, 0x7FFFFFF0u), "zip.bad_directory");
  refuses_bytes("cd_size_huge.pt", raw_zip({p, d}, 0xFFFFFFFFu), "zip.bad_directory");
  RawEntry big = d;
  big.usize_override = big.csize_override = 0xFFFFFFFFu;
  big.cd_extra = "\x01\x00\x10\x00"s + u64le(std::uint64_t{1} << 63) + u64le(std::uint64_t{1} << 63);
  refuses_bytes("zip64_huge.pt", raw_zip({p, big}), "zip.truncated");
  RawEntry deflated = p;
  deflated.method = 8;
  refuses_bytes("deflated.pt", raw_zip({deflated, d}), "zip.compressed");
  refuses_bytes("duplicate.pt", raw_zip({p, d, d}), "zip.duplicate");
  refuses_bytes("two_tops.pt", raw_zip({p, RawEntry{"other/data/0", floats(2), 0, 0, 0, {}}}), "zip.bad_layout");
  refuses_bytes("dotdot.pt", raw_zip({p, RawEntry{"archive/../data/0", floats(2), 0, 0, 0, {}}}), "zip.bad_name");
  // Local header lengths that run past the end: cut a valid file inside a local header.
  std::string lh = raw_zip({p, d});
  lh[28] = '\xff';  // extra length of the first local header
  lh[29] = '\xff';
  refuses_bytes("local_extra.pt", lh, "zip.truncated");
  refuses_bytes("pytorch1.pt", "PYTORCH1" + std::string(64, '\0'), "format.unsupported");
}

TEST_CASE("torch.save records that disagree with the pickle are refused", "[bad][zip]") {
  const std::string pkl = one_tensor(pid("0", i1(2)), i1(0), std::string("K\x02\x85", 3), std::string("K\x01\x85", 3));
  refuses_pickle("short_record.pt", pkl, "format.storage_size", {{"archive/data/0", floats(1)}});
  refuses_pickle("long_record.pt", pkl, "format.storage_size", {{"archive/data/0", floats(3)}});
  refuses_pickle("no_record.pt", pkl, "format.missing_record");
  refuses_pickle("version_abc.pt", pkl, "format.version", {{"archive/data/0", floats(2)}, {"archive/version", "abc\n"}});
  refuses_pickle("version_99.pt", pkl, "format.version", {{"archive/data/0", floats(2)}, {"archive/version", "99\n"}});
  refuses_pickle("byteorder.pt", pkl, "format.byteorder", {{"archive/data/0", floats(2)}, {"archive/byteorder", "middle"}});
  CHECK(sdtest::error_id([] { statedict::detail::read_torch_zip(statedict::detail::MappedFile::open(fixture("resnet_script.pt")), {}); }) ==
        "format.torchscript");
  // Through the front door a TorchScript archive is read with LibTorch's own reader.
  CHECK(statedict::read(fixture("resnet_script.pt")).format() == statedict::Format::torchscript);
}

TEST_CASE("hostile and malformed pickles are refused cleanly", "[bad][pickle]") {
  const std::string d2 = "archive/data/0";
  refuses_pickle("no_proto.pt", "}.", "pickle.no_proto");
  refuses_pickle("proto6.pt", "\x80\x06}.", "pickle.protocol");
  refuses_pickle("proto1_zip.pt", "}.", "pickle.no_proto");  // only legacy files may omit PROTO (protocol 1)
  refuses_pickle("next_buffer.pt", "\x80\x05\x97.", "pickle.out_of_band");
  refuses_pickle("readonly_buffer.pt", "\x80\x05]\x98.", "pickle.out_of_band");
  refuses_pickle("stack_global_system.pt", "\x80\x04" + uni("posix") + uni("system") + "\x93" + uni("ls") + "\x85R.",
                 "pickle.forbidden_global");
  refuses_pickle("stack_global_int.pt", "\x80\x04" + uni("os") + i1(1) + "\x93.", "pickle.bad_global");
  refuses_pickle("stack_global_space.pt", "\x80\x04" + uni("os ") + uni("x") + "\x93.", "pickle.bad_global");
  refuses_pickle("binunicode8.pt", "\x80\x04\x8d" + u64le(std::uint64_t{1} << 62) + "ab", "pickle.truncated");
  refuses_pickle("binbytes8.pt", "\x80\x04\x8e" + u64le(~std::uint64_t{0}) + "ab", "pickle.truncated");
  refuses_pickle("frame_short.pt", "\x80\x04\x95\x01", "pickle.truncated");
  refuses_pickle("newobj_ex_kwargs.pt", "\x80\x04" + glob("argparse", "Namespace") + ")" + i1(1) + "\x92.", "pickle.type");
  refuses_pickle("frozenset_no_mark.pt", "\x80\x04\x91.", "pickle.no_mark");
  refuses_pickle("text_int.pt", "\x80\x02I12x\n.", "pickle.bad_int");
  refuses_pickle("system.pt", PROTO + glob("posix", "system") + uni("touch /tmp/x") + "\x85R.", "pickle.forbidden_global");
  refuses_pickle("eval.pt", PROTO + glob("builtins", "eval") + uni("1") + "\x85R.", "pickle.forbidden_global");
  refuses_pickle("getattr.pt", PROTO + glob("builtins", "getattr") + ".", "pickle.forbidden_global");
  refuses_pickle("long_global.pt", PROTO + "c" + std::string(1 << 20, 'a'), "pickle.bad_global");
  refuses_pickle("stack_global.pt", PROTO + uni("os") + uni("system") + "\x93.", "pickle.forbidden_global");
  refuses_pickle("inst.pt", PROTO + "(iposix\nsystem\n.", "pickle.opcode");
  refuses_pickle("tuple3_empty.pt", PROTO + "\x87.", "pickle.stack");
  refuses_pickle("setitem_empty.pt", PROTO + "s.", "pickle.stack");
  refuses_pickle("reduce_empty.pt", PROTO + "R.", "pickle.stack");
  refuses_pickle("build_empty.pt", PROTO + "b.", "pickle.stack");
  refuses_pickle("mark_open.pt", PROTO + "}(.", "pickle.unclosed_mark");
  refuses_pickle("tuple_no_mark.pt", PROTO + "t.", "pickle.no_mark");
  refuses_pickle("setitems_odd.pt", PROTO + "}(" + i1(1) + "u.", "pickle.setitems");
  refuses_pickle("setitem_list.pt", PROTO + "]" + i1(1) + i1(2) + "s.", "pickle.type");
  refuses_pickle("append_dict.pt", PROTO + "}" + i1(1) + "a.", "pickle.type");
  refuses_pickle("binget.pt", PROTO + "h\x07.", "pickle.memo");
  refuses_pickle("unicode_4g.pt", PROTO + "X\xff\xff\xff\xff" + "abc", "pickle.truncated");
  refuses_pickle("bad_utf8.pt", PROTO + "X\x02\x00\x00\x00\xc3\x28."s, "pickle.utf8");
  refuses_pickle("marks.pt", PROTO + std::string(1000000, '(') + "}.", "pickle.unclosed_mark");
  refuses_pickle("pid_not_tuple.pt", PROTO + uni("x") + "Q.", "pickle.bad_persistent_id");
  refuses_pickle("pid_tag.pt", PROTO + "(" + uni("module") + uni("x") + "tQ.", "pickle.bad_persistent_id");
  refuses_pickle("key_dotdot.pt", PROTO + pid("../x", i1(2)) + ".", "pickle.bad_persistent_id");
  refuses_pickle("key_minus.pt", PROTO + pid("-1", i1(2)) + ".", "pickle.bad_persistent_id");
  refuses_pickle("numel_negative.pt", PROTO + pid("0", "J\xff\xff\xff\xff") + ".", "pickle.bad_persistent_id");
  refuses_pickle("numel_overflow.pt", PROTO + pid("0", "\x8a\x08" + u64le(std::uint64_t{1} << 62), "DoubleStorage") + ".",
                 "pickle.bad_persistent_id");
  refuses_pickle("storage_twice.pt", PROTO + "(" + pid("0", i1(2)) + pid("0", i1(3)) + "t.", "pickle.storage_conflict");
  // A quantized storage is only read under _rebuild_qtensor (which lists the tensor as unreadable).
  refuses_pickle("quantized.pt", one_tensor(pid("0", i1(2), "QInt8Storage"), i1(0), "K\x02\x85"s, "K\x01\x85"s), "pickle.bad_tensor",
                 {{"archive/data/0", "ab"}});
  const std::string s = pid("0", i1(2));
  const std::string sz2 = std::string("K\x02\x85", 3), st1 = std::string("K\x01\x85", 3);
  refuses_pickle("neg_offset.pt", one_tensor(s, "J\xff\xff\xff\xff", sz2, st1), "pickle.bad_tensor", {{d2, floats(2)}});
  refuses_pickle("neg_size.pt", one_tensor(s, i1(0), "J\xff\xff\xff\xff\x85", st1), "pickle.bad_tensor", {{d2, floats(2)}});
  refuses_pickle("neg_stride.pt", one_tensor(s, i1(0), sz2, "J\xff\xff\xff\xff\x85"), "pickle.bad_tensor", {{d2, floats(2)}});
  refuses_pickle("rank_mismatch.pt", one_tensor(s, i1(0), sz2, i1(1) + i1(1) + "\x86"), "pickle.bad_tensor", {{d2, floats(2)}});
  refuses_pickle("view_past_end.pt", one_tensor(s, i1(1), sz2, st1), "pickle.bad_tensor", {{d2, floats(2)}});
  refuses_pickle("empty_huge_offset.pt", one_tensor(s, "J\x00\x00\x00\x40"s, "K\x00\x85"s, st1), "pickle.bad_tensor", {{d2, floats(2)}});
  refuses_pickle("few_args.pt", PROTO + glob("torch._utils", "_rebuild_tensor_v2") + "(" + s + i1(0) + "tR.", "pickle.bad_tensor");
}

TEST_CASE("odd but harmless pickles read: inert classes, big ints, huge memo indices, non-string keys", "[bad][pickle]") {
  auto read_pickle = [](const std::string& name, const std::string& pkl) { return statedict::read(torch_zip(name, pkl)); };
  const auto ns =
      read_pickle("namespace.pt", PROTO + "}" + uni("args") + glob("argparse", "Namespace") + ")\x81}" + uni("lr") + i1(3) + "sbs.");
  CHECK(ns.at("args").class_name() == "argparse.Namespace");
  CHECK(ns.at("args.lr").as_int() == 3);
  const auto five = read_pickle("long5.pt", PROTO + "\x8a\x05\x00\x00\x00\x00\x01."s);
  CHECK(five.root().as_int() == std::int64_t{1} << 32);
  const auto neg = read_pickle("long_neg.pt", PROTO + "\x8a\x02\x00\xff."s);
  CHECK(neg.root().as_int() == -256);
  const auto long200 = read_pickle("long200.pt", PROTO + "\x8a\xc8" + std::string(199, '\0') + "\x01.");
  CHECK(long200.root().kind() == statedict::Kind::integer);
  CHECK(long200.root().as_string().size() == 2 + 400);
  // Protocol 4/5 opcodes, as Python's pickle writes them.
  auto su = [](const std::string& t) { return "\x8c"s + static_cast<char>(t.size()) + t; };  // SHORT_BINUNICODE
  const auto p4 =
      read_pickle("proto4_ops.pt", "\x80\x04\x95" + u64le(98) + "}\x94(" + su("a") + "\x94\x8d" + u64le(2) + "\xc3\xa9" + su("b") + "\x8e" +
                                       u64le(3) + "xyz" + su("c") + "\x96" + u64le(1) + "q" + su("d") + "\x8f(K\x01K\x02\x90" + su("e") +
                                       "(K\x03\x91" + su("f") + su("argparse") + su("Namespace") + "\x93)}\x92" + su("g") + "h\x01u.");
  CHECK(p4.at("a").as_string() == "\xc3\xa9");  // BINUNICODE8, MEMOIZE'd key "a" fetched back by BINGET 1 under "g"
  CHECK(p4.at("b").as_string() == "xyz");
  CHECK(p4.at("b").kind() == Kind::bytes);
  CHECK(p4.at("c").as_string() == "q");
  CHECK(p4.at("d").size() == 2);
  CHECK(p4.at("e").kind() == Kind::set);
  CHECK(p4.at("f").class_name() == "argparse.Namespace");
  CHECK(p4.at("g").as_string() == "a");
  // Protocol 0/1 text integers (legacy files written with pickle_protocol=1 use them).
  const auto text_ints = read_pickle("text_ints.pt", PROTO + "(I-5\nI01\nL119547037146038801333356L\nL-300L\nt.");
  CHECK(text_ints.root()[0].as_int() == -5);
  CHECK(text_ints.root()[1].as_bool());
  CHECK(text_ints.root()[2].as_string() == "0x1950a86a20f9469cfc6c");
  CHECK(text_ints.root()[3].as_int() == -300);
  const auto memo = read_pickle("memo.pt", PROTO + "}r\xff\xff\xff\xff" + "j\xff\xff\xff\xff" + "0.");
  CHECK(memo.root().is_dict());
  // A far-off memo index (kept apart from the 0, 1, 2, ... a pickler writes) is found after later
  // puts reach past it, and storing it again is no new entry: MEMOIZE's index counts distinct
  // indices, as Python's memo does (5000, 0..459, 5001: the next is 462).
  std::string near;
  for (std::uint32_t i = 0; i < 460; ++i) near += "Nr" + u32le(i) + "0";
  const auto far = read_pickle("memo_far.pt", PROTO + uni("far") + "r" + u32le(5000) + "0" + near + "Nr" + u32le(5001) + "0(j" +
                                                  u32le(5000) + uni("again") + "r" + u32le(5000) + "0" + uni("memoized") + "\x94" + "0j" +
                                                  u32le(5000) + "j" + u32le(462) + "l.");
  REQUIRE(far.root().size() == 3);
  CHECK(far.root()[0].as_string() == "far");
  CHECK(far.root()[1].as_string() == "again");
  CHECK(far.root()[2].as_string() == "memoized");
  const auto keys = read_pickle("int_keys.pt", PROTO + "}" + i1(7) + uni("x") + "s.");
  CHECK(keys.root().keys() == std::vector<std::string>{"7"});
  CHECK(keys.at("7").as_string() == "x");
  // A repeated key overwrites in place, as in Python: searched in a small dict, through the dict's
  // table in a large one, across SETITEMS; str "77" and int 77 are two keys.
  const auto small = read_pickle("dup_small.pt", PROTO + "}(" + uni("a") + i1(1) + uni("b") + i1(2) + uni("a") + i1(3) + "u.");
  CHECK(small.root().keys() == std::vector<std::string>{"a", "b"});
  CHECK(small.at("a").as_int() == 3);
  std::string first, second;
  for (int i = 0; i < 10; ++i) first += uni("k" + std::to_string(i)) + i1(i);
  for (int i = 5; i < 40; ++i) second += uni("k" + std::to_string(i)) + i1(100 + i);
  const auto big = read_pickle("dup_big.pt", PROTO + "}(" + first + "u(" + second + i1(77) + uni("int") + uni("77") + uni("str") +
                                                 uni("k30") + i1(7) + i1(77) + uni("int again") + "u.");
  const auto big_keys = big.root().keys();
  REQUIRE(big_keys.size() == 42);
  CHECK(big_keys[7] == "k7");
  CHECK(big.at("k4").as_int() == 4);
  CHECK(big.at("k7").as_int() == 107);
  CHECK(big.at("k30").as_int() == 7);
  CHECK(big.root().size() == 42);
  // An int wider than 64 bits is a key of its own, never the int64 it is clamped to (2**64, 2**63-1).
  const auto wide = read_pickle("dup_wide.pt", PROTO + "}(\x8a\x09"s + std::string(8, '\0') + "\x01" + uni("wide") + "\x8a\x08" +
                                                   std::string(7, '\xff') + "\x7f" + uni("int64 max") + "u.");
  CHECK(wide.root().size() == 2);
  // A top level that is not a dict reads; loading it into a module says why it cannot.
  const std::string list_path = torch_zip("list.pt", PROTO + "]" + i1(1) + "a.");
  CHECK(statedict::read(list_path).root().size() == 1);
  // Deep nesting reads (nothing recursive runs) but flattening refuses past max_depth.
  const std::string deep = PROTO + std::string(100000, ']') + std::string(99999, 'a') + ".";
  const auto d = read_pickle("deep.pt", deep);
  CHECK(sdtest::error_id([&] { d.tensors(); }) == "limit.depth");
  // A list that contains itself: flattening skips the cycle.
  const auto cyc = read_pickle("cycle.pt", PROTO + "]q\x00h\x00"s + "a.");
  CHECK(cyc.tensors().empty());
  // Objects that hold themselves: children() names the inner one and stops (a state that is the
  // object itself is not walked again), whatever walks children() stops at what it has seen.
  const auto self = read_pickle("self.pt", PROTO + "}" + uni("o") + glob("x", "Obj") + ")\x81q\x00}"s + uni("me") + "h\x00sbs."s);
  const statedict::Value o = self["o"];
  REQUIRE(o.children().size() == 1);
  CHECK(o.children()[0].first == "me");
  CHECK(o.children()[0].second.is(o));
  const auto own = read_pickle("own_state.pt", PROTO + "}" + uni("o") + glob("x", "Obj") + ")\x81q\x00h\x00"s + "bs.");
  CHECK(own["o"].children().empty());
  // Limits are options.
  CHECK(sdtest::error_id([&] { statedict::read(fixture("resnet_plain.pt"), statedict::ReadOptions{}.max_pickle_bytes(100)); }) ==
        "limit.pickle_size");
  CHECK(sdtest::error_id([&] { statedict::read(fixture("resnet_plain.pt"), statedict::ReadOptions{}.max_tensors(10)); }) ==
        "limit.tensors");
}

TEST_CASE("values the memo or DUP shares outlive the tensor rebuild that consumed them", "[bad][pickle]") {
  // The unpickler gives back the nodes of a rebuild's arguments once the tensor is made (a torch.save
  // file of 100k tensors keeps 2 nodes a tensor instead of 9), except what the pickle reads back from
  // the memo or DUPs: here a storage, a size and a stride that a second tensor and a plain value reuse.
  auto le = [](std::initializer_list<float> v) {
    std::string s;
    for (float x : v) s.append(reinterpret_cast<const char*>(&x), sizeof x);
    return s;
  };
  const std::string rebuild = glob("torch._utils", "_rebuild_tensor_v2"), hooks = glob("collections", "OrderedDict") + ")R";
  // 'a': storage 0 kept at memo 1, size (2,) at memo 2, stride (1,) at memo 3
  const std::string a =
      uni("a") + rebuild + "(" + pid("0", i1(3)) + "q\x01" + i1(0) + i1(2) + "\x85q\x02" + i1(1) + "\x85q\x03\x89" + hooks + "tR";
  // 'b': the same storage, size and stride read back from the memo, one element further on
  const std::string b = uni("b") + rebuild + "(h\x01" + i1(1) + "h\x02h\x03\x89" + hooks + "tR";
  const std::string c = uni("c") + "h\x02";  // the size tuple itself
  // 'd': a size (1,) DUP'd to be its own stride; then 'e' and 'f' fill the slots the rebuilds gave back
  const std::string d = uni("d") + rebuild + "(" + pid("1", i1(1)) + i1(0) + i1(1) + "\x85" + "2\x89" + hooks + "tR";
  const std::string e = uni("e") + uni("after");
  const std::string f = uni("f") + rebuild + "(" + pid("2", i1(2)) + i1(1) + i1(1) + "\x85" + i1(1) + "\x85\x89" + hooks + "tR";
  const auto ck =
      statedict::read(torch_zip("memo_shared.pt", PROTO + "}(" + a + b + c + d + e + f + "u.",
                                {{"archive/data/0", le({1, 2, 3})}, {"archive/data/1", le({7})}, {"archive/data/2", le({8, 9})}}));
  CHECK(ck.root().keys() == std::vector<std::string>{"a", "b", "c", "d", "e", "f"});
  CHECK(ck.at("a").tensor().equal(at::tensor({1.0f, 2.0f})));
  CHECK(ck.at("b").tensor().equal(at::tensor({2.0f, 3.0f})));
  REQUIRE(ck.at("c").kind() == Kind::tuple);
  REQUIRE(ck.at("c").size() == 1);
  CHECK(ck.at("c")[0].as_int() == 2);
  CHECK(ck.at("d").tensor().equal(at::tensor({7.0f})));
  CHECK(ck.at("e").as_string() == "after");
  CHECK(ck.at("f").tensor().equal(at::tensor({9.0f})));
  const auto all = ck.tensors();  // a and b still share one storage in memory
  REQUIRE(all.size() == 4);
  CHECK(all[1].tensor.data_ptr<float>() == all[0].tensor.data_ptr<float>() + 1);

  // A handler that puts a value in a second place (builtins.tuple copies the items of its argument)
  // shares it: the hooks tuple(('x',)) is given back, the 'x' the memo's ('x',) holds is not.
  const std::string tensor1 = pid("0", i1(1)) + i1(0) + i1(1) + "\x85" + i1(1) + "\x85\x89";
  const auto copied =
      statedict::read(torch_zip("copied_items.pt",
                                PROTO + "}(" + uni("a") + rebuild + "(" + tensor1 + glob("builtins", "tuple") + uni("x") +
                                    "\x85q\x05\x85RtR" + uni("c") + "h\x05" + uni("d") + uni("x1") + uni("e") + uni("x2") + "u.",
                                {{"archive/data/0", le({5})}}));
  REQUIRE(copied.at("c").size() == 1);
  CHECK(copied.at("c")[0].as_string() == "x");
  CHECK(copied.at("d").as_string() == "x1");
  CHECK(copied.at("e").as_string() == "x2");
  // An object given 17 keys by SETITEMS (so it has a key index) is given back as hooks; a dict made
  // later in its slot (after 0 to 40 other values, so that one of them lands there) starts with no
  // index of its own.
  std::string keys;
  for (int i = 0; i < 17; ++i) keys += uni("k" + std::to_string(i)) + "N";
  for (int fill = 0; fill <= 40; ++fill) {
    std::string values;
    for (int i = 0; i < fill; ++i) values += uni("p");
    const auto reused = statedict::read(torch_zip("reused_index.pt",
                                                  PROTO + "}(" + uni("a") + rebuild + "(" + tensor1 + glob("foo", "Bar") + ")R(" + keys +
                                                      "utR" + uni("b") + "(" + values + "1}(" + keys + "uu.",
                                                  {{"archive/data/0", le({5})}}));
    REQUIRE(reused.at("b").is_dict());
    CHECK(reused.at("b").size() == 17);
    CHECK(reused.at("b").keys().back() == "k16");
  }
}

TEST_CASE("the walk that finds a pickle's memo reads knows every opcode the unpickler runs", "[bad][pickle]") {
  using statedict::detail::memo_reads;
  auto walk = [](const std::string& p) { return memo_reads(reinterpret_cast<const std::uint8_t*>(p.data()), p.size()); };
  // Protocol 4/5 opcodes with their argument forms, two reads of memo 1 and one of 300.
  const std::string p4 = "\x80\x04\x95"s + u64le(0) +
                         "}\x94(\x8c\x01"
                         "a\x94\x8d" +
                         u64le(2) + "xy\x8e" + u64le(1) + "z\x96" + u64le(0) + "C\x01.U\x01.\x8a\x01\x05\x8b" + u32le(1) + "\x01T" +
                         u32le(1) + ".B" + u32le(0) + "G" + u64le(0) + "M\x01\x02J" + u32le(7) + "I01\nL5L\nh\x01j" + u32le(300) + "h\x01" +
                         glob("a", "b") + "0000000000000u.";
  const auto got = walk(p4);
  REQUIRE(got.has_value());
  for (std::uint32_t i : {0u, 1u, 2u, 299u, 300u, 301u, 4096u}) CHECK(got->has(i) == (i == 1 || i == 300));
  // A far-off index (only a hand-made pickle has one) is found too, without a bit for every index below it.
  const auto far = walk(PROTO + "Nj" + u32le(4000000000u) + "h\x02j" + u32le(4000000000u) + "j" + u32le(7) + ".");
  REQUIRE(far.has_value());
  for (std::uint32_t i : {2u, 7u, 4000000000u}) CHECK(far->has(i));
  for (std::uint32_t i : {0u, 3u, 3999999999u, 4000000001u}) CHECK_FALSE(far->has(i));
  CHECK(far->near.size() < 100000);
  CHECK(far->far == std::vector<std::uint32_t>{4000000000u});
  // An index too far off for the bits when read, which later reads then grow the bits past: still found.
  const auto grown = walk(PROTO + "Nj" + u32le(5000) + "j" + u32le(2599) + "j" + u32le(2600) + ".");
  REQUIRE(grown.has_value());
  REQUIRE(grown->near.size() > 5000);
  for (std::uint32_t i : {5000u, 2599u, 2600u}) CHECK(grown->has(i));
  CHECK_FALSE(grown->has(4999));
  // Real torch.save pickles walk to STOP, so their rebuilds give nodes back (else the tree would keep 9 nodes a tensor).
  for (const char* name : {"resnet_plain.pt", "proto4.pt", "proto5.pt", "resnet_module.pt", "numpy_values.pt"}) {
    const statedict::detail::ZipArchive z(statedict::detail::MappedFile::open(fixture(name)));
    const std::string pkl = z.read(*z.find("data.pkl"));
    CHECK(walk(pkl).has_value());
  }
  // An opcode the unpickler does not run, an argument past the end, no STOP: no walk (every node is kept).
  CHECK_FALSE(walk(PROTO + "F1.0\n.").has_value());
  CHECK_FALSE(walk(PROTO + "X" + u32le(100) + "ab.").has_value());
  CHECK_FALSE(walk(PROTO + "N").has_value());
}

namespace {
std::string legacy_file(const std::string& main_pickle, const std::string& keys_pickle, const std::string& storages, int protocol = 1001) {
  const std::string magic = PROTO + std::string("\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 13);
  const std::string proto =
      PROTO + "M" + std::string(1, static_cast<char>(protocol & 0xff)) + std::string(1, static_cast<char>(protocol >> 8)) + ".";
  const std::string sys = PROTO + "}" + uni("little_endian") + "\x88s.";
  return magic + proto + sys + main_pickle + keys_pickle + storages;
}
std::string legacy_pid(const std::string& key, int numel) {
  return "(" + uni("storage") + glob("torch", "FloatStorage") + uni(key) + uni("cpu") + i1(numel) + "NtQ";
}
std::string legacy_main(const std::string& key) {
  return PROTO + "}" + uni("w") + glob("torch._utils", "_rebuild_tensor_v2") + "(" + legacy_pid(key, 2) + i1(0) + "K\x02\x85" +
         "K\x01\x85" + "\x89" + glob("collections", "OrderedDict") + ")RtRs.";
}
}  // namespace

TEST_CASE("legacy files that are inconsistent are refused", "[bad][legacy]") {
  const std::string keys = PROTO + "]" + uni("7") + "a.";
  const std::string data = u64le(2) + floats(2);
  const std::string ok = legacy_file(legacy_main("7"), keys, data);
  CHECK(statedict::read(sdtest::write_temp("legacy_ok.pt", ok)).at("w").tensor().numel() == 2);
  refuses_bytes("legacy_proto.pt", legacy_file(legacy_main("7"), keys, data, 1002), "legacy.protocol");
  refuses_bytes("legacy_unknown_key.pt", legacy_file(legacy_main("7"), PROTO + "]" + uni("8") + "a.", data), "legacy.keys");
  refuses_bytes("legacy_count.pt", legacy_file(legacy_main("7"), keys, u64le(3) + floats(3)), "legacy.count");
  refuses_bytes("legacy_truncated.pt", legacy_file(legacy_main("7"), keys, u64le(2) + floats(1)), "legacy.truncated");
  refuses_bytes("legacy_missing.pt", legacy_file(legacy_main("7"), PROTO + "].", ""), "legacy.keys");
  const std::string module_pid = PROTO + "(" + uni("module") + uni("x") + "tQ.";
  refuses_bytes("legacy_module.pt", legacy_file(module_pid, keys, data), "pickle.bad_persistent_id");
  std::string wrong_magic = ok;
  wrong_magic[5] = 'x';
  refuses_bytes("legacy_magic.pt", wrong_magic, "legacy.magic");  // read as a pickle by its content, then seen to be no plain one
}

namespace {
std::string st_file(const std::string& header, const std::string& data) { return u64le(header.size()) + header + data; }
}  // namespace

TEST_CASE("safetensors files are validated like the reference reader does", "[bad][safetensors]") {
  const std::string ok_header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK(statedict::read(sdtest::write_temp("ok.safetensors", st_file(ok_header, floats(2)))).at("a").tensor().numel() == 2);
  refuses_bytes("short.safetensors", "abc", "safetensors.truncated");
  refuses_bytes("n_past_end.safetensors", u64le(1000) + "{}", "safetensors.header_size");
  refuses_bytes("n_huge.safetensors", u64le(200'000'000) + "{}", "safetensors.header_size");
  refuses_bytes("n_max.safetensors", u64le(~std::uint64_t{0}) + "{}", "safetensors.header_size");
  refuses_bytes("utf8.safetensors", st_file("{\"\xc3\x28\":1}", ""), "json.utf8");
  refuses_bytes("json.safetensors", st_file("{not json", ""), "json.parse");
  refuses_bytes("deep.safetensors", st_file(std::string(100000, '[') + std::string(100000, ']'), ""), "limit.depth");
  refuses_bytes(
      "dup.safetensors",
      st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", floats(2)),
      "json.duplicate");
  refuses_bytes("meta.safetensors", st_file(R"({"__metadata__":{"k":1}})", ""), "safetensors.metadata");
  refuses_bytes("no_dtype.safetensors", st_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", floats(2)), "safetensors.entry");
  refuses_bytes("dtype.safetensors", st_file(R"({"a":{"dtype":"F5","shape":[2],"data_offsets":[0,2]}})", "ab"), "format.unsupported_dtype");
  refuses_bytes("float_shape.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", floats(2)),
                "safetensors.entry");
  refuses_bytes("neg_shape.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", floats(2)),
                "safetensors.entry");
  refuses_bytes("offsets3.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", floats(2)),
                "safetensors.entry");
  refuses_bytes("end_lt_begin.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", floats(2)),
                "safetensors.entry");
  refuses_bytes("gap.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", floats(2)), "safetensors.layout");
  refuses_bytes(
      "overlap.safetensors",
      st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", floats(2)),
      "safetensors.layout");
  refuses_bytes("trailing.safetensors", st_file(ok_header, floats(3)), "safetensors.layout");
  refuses_bytes("overflow.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", floats(2)),
                "safetensors.entry");
  refuses_bytes("wrap0.safetensors", st_file(R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", ""),
                "safetensors.entry");
  refuses_bytes("bytes.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", floats(2)), "safetensors.entry");
  // Misaligned data is copied, not aliased: the header length 3 puts the F32 payload at offset 11.
  const auto mis = statedict::read(sdtest::write_temp("misaligned.safetensors", st_file(R"({})", "") + ""));
  CHECK(mis.tensors().empty());
  const std::string odd = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} )";  // 57 bytes: data at 65
  std::string payload(8, '\0');
  const float vals[2] = {1.5f, -2.0f};
  std::memcpy(payload.data(), vals, 8);
  const auto m = statedict::read(sdtest::write_temp("odd.safetensors", st_file(odd, payload)));
  CHECK(m.at("a").tensor().equal(at::tensor({1.5f, -2.0f})));
}

TEST_CASE("io.BytesIO in a pickle: only Python's own form reads, as bytes; any other is refused", "[bad][pickle][torch214]") {
  const std::string bio = glob("_io", "BytesIO");
  auto binbytes = [](const std::string& b) { return "C" + std::string(1, static_cast<char>(b.size())) + b; };  // SHORT_BINBYTES
  auto with = [&](const std::string& value) { return PROTO + "}" + uni("x") + value + "s."; };
  // What torch.save writes at protocol 2 (bytes as _codecs.encode) and at 3+ (BINBYTES): bytes.
  const std::string latin1 = glob("_codecs", "encode") + uni("a\xc3\xbf") + uni("latin1") + "\x86R";
  for (const std::string& data : {latin1, binbytes("a\xff")}) {
    const auto ck = statedict::read(torch_zip("bytesio_ok.pt", with(bio + ")\x81(" + data + i1(1) + "Ntb")));
    REQUIRE(ck.at("x").kind() == Kind::bytes);
    CHECK(ck.at("x").as_string() == "a\xff");
  }
  CHECK(statedict::read(torch_zip("bytesio_dict.pt", with(bio + ")\x81(" + binbytes("") + i1(0) + "}tb"))).at("x").as_string().empty());
  refuses_pickle("bytesio_args.pt", with(bio + binbytes("ab") + "\x85\x81"), "pickle.bytesio");
  refuses_pickle("bytesio_call.pt", with(bio + binbytes("ab") + "\x85R"), "pickle.bytesio");
  refuses_pickle("bytesio_str.pt", with(bio + ")\x81(" + uni("ab") + i1(0) + "Ntb"), "pickle.bytesio");
  refuses_pickle("bytesio_int.pt", with(bio + ")\x81(" + i1(7) + i1(0) + "Ntb"), "pickle.bytesio");
  refuses_pickle("bytesio_pair.pt", with(bio + ")\x81(" + binbytes("a") + i1(0) + "tb"), "pickle.bytesio");
  refuses_pickle("bytesio_not_tuple.pt", with(bio + ")\x81" + binbytes("a") + "b"), "pickle.bytesio");
  refuses_pickle("bytesio_neg_pos.pt", with(bio + ")\x81(" + binbytes("a") + "J\xff\xff\xff\xffNtb"), "pickle.bytesio");
  refuses_pickle("bytesio_attrs.pt", with(bio + ")\x81(" + binbytes("a") + i1(0) + "}" + uni("k") + i1(1) + "stb"), "pickle.bytesio");
  refuses_pickle("bytesio_twice.pt", with(bio + ")\x81(" + binbytes("a") + i1(0) + "Ntb(" + binbytes("a") + i1(0) + "Ntb"), "pickle.type");
  refuses_pickle("bytesio_items.pt", with(bio + ")\x81" + uni("k") + i1(1) + "s(" + binbytes("a") + i1(0) + "Ntb"), "pickle.bytesio");
  // The io module stays refused as a whole (io.open, io.FileIO); only _io.BytesIO is a plain buffer.
  refuses_pickle("io_bytesio.pt", with(glob("io", "BytesIO") + ")\x81"), "pickle.forbidden_global");
  refuses_pickle("io_fileio.pt", with(glob("_io", "FileIO") + uni("/etc/passwd") + "\x85R"), "pickle.forbidden_global");
}

TEST_CASE("the dtypes after PyTorch 2.6 get the same checks as the others, and packed F4 its own", "[bad][safetensors][torch214]") {
  // _rebuild_tensor_v3 over an UntypedStorage of 4 bytes, as torch 2.14 writes float8_e8m0fnu.
  const std::string untyped = "(" + uni("storage") + glob("torch.storage", "UntypedStorage") + uni("0") + uni("cpu") + i1(4) + "tQ";
  auto v3 = [&](const std::string& dtype, int n) {
    return PROTO + "}" + uni("w") + glob("torch._utils", "_rebuild_tensor_v3") + "(" + untyped + i1(0) + i1(n) + "\x85" + i1(1) +
           "\x85\x89" + glob("collections", "OrderedDict") + ")R" + glob("torch", dtype) + "tRs.";
  };
  const auto e8 = statedict::read(torch_zip("v3_e8m0.pt", v3("float8_e8m0fnu", 4), {{"archive/data/0", "\x7f\x80\x81\x82"}}));
  CHECK(e8.at("w").named().dtype() == "float8_e8m0fnu");
  CHECK(e8.at("w").named().shape() == std::vector<std::int64_t>{4});
  refuses_pickle("v3_e8m0_past_end.pt", v3("float8_e8m0fnu", 5), "pickle.bad_tensor", {{"archive/data/0", "abcd"}});
  refuses_pickle("v3_float6.pt", v3("float6_e2m3fn", 4), "pickle.bad_tensor", {{"archive/data/0", "abcd"}});

  const std::string f4 = R"({"a":{"dtype":"F4","shape":[2,4],"data_offsets":[0,4]}})";
  const auto ck = statedict::read(sdtest::write_temp("f4.safetensors", st_file(f4, "\x01\x23\x45\x67")));
  CHECK(ck.at("a").named().dtype() == "float4_e2m1fn_x2");
  CHECK(ck.at("a").named().shape() == std::vector<std::int64_t>{2, 2});
  refuses_bytes("f4_odd.safetensors", st_file(R"({"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}})", "abc"), "safetensors.entry");
  refuses_bytes("f4_scalar.safetensors", st_file(R"({"a":{"dtype":"F4","shape":[],"data_offsets":[0,1]}})", "a"), "safetensors.entry");
  refuses_bytes("f4_bytes.safetensors", st_file(R"({"a":{"dtype":"F4","shape":[2,4],"data_offsets":[0,8]}})", floats(2)),
                "safetensors.entry");
  refuses_bytes("f4_overflow.safetensors",
                st_file(R"({"a":{"dtype":"F4","shape":[4294967296,4294967296,2],"data_offsets":[0,8]}})", floats(2)), "safetensors.entry");
  refuses_bytes("f6.safetensors", st_file(R"({"a":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]}})", "abc"),
                "format.unsupported_dtype");
  CHECK(sdtest::error_text([] {
          statedict::read(
              sdtest::write_temp("f6b.safetensors", st_file(R"({"a":{"dtype":"F6_E3M2","shape":[4],"data_offsets":[0,3]}})", "abc")));
        }).find("6-bit") != std::string::npos);
  // A 0-d float4_e2m1fn_x2 (raw or native) has no F4 shape: refused, never written as something else.
  statedict::NamedTensor scalar{"s", at::zeros({1}, at::kByte), "float4_e2m1fn_x2", nullptr};
  CHECK(sdtest::error_id([&] { statedict::save({scalar}, sdtest::temp_path("f4_scalar_out.safetensors")); }) == "format.unsupported_dtype");
  // In a torch zip it is written under its own name.
  const std::string pt = sdtest::temp_path("f4_scalar_out.pt");
  statedict::save({scalar}, pt);
  CHECK(statedict::read(pt).at("s").named().dtype() == "float4_e2m1fn_x2");
}

TEST_CASE("sharded indexes that point outside, at nothing, or disagree with the shards are refused", "[bad][sharded]") {
  const auto dir = std::filesystem::path(sdtest::temp_path("shards"));
  std::filesystem::create_directories(dir);
  const std::string shard = st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", floats(2));
  sdtest::write_temp("shards/s1.safetensors", shard);
  sdtest::write_temp("shards/s2.safetensors", shard);
  auto index = [&](const std::string& name, const std::string& map) {
    return sdtest::write_temp("shards/" + name, R"({"metadata":{},"weight_map":)" + map + "}");
  };
  CHECK(statedict::read(index("ok.index.json", R"({"a":"s1.safetensors"})")).at("a").tensor().numel() == 2);
  refuses(index("escape.index.json", R"({"a":"../x.safetensors"})"), "index.bad_shard");
  refuses(index("missing.index.json", R"({"a":"nope.safetensors"})"), "index.missing_shard");
  refuses(index("absent.index.json", R"({"a":"s1.safetensors","b":"s1.safetensors"})"), "index.mismatch");
  refuses(index("dup.index.json", R"({"a":"s1.safetensors","c":"s2.safetensors"})"), "index.mismatch");
  refuses(index("nomap.index.json", R"([])"), "index.bad");
  // A name no file system takes (over NAME_MAX): found by fuzz_index, once a std::filesystem_error.
  refuses(index("long.index.json", R"({"a":")" + std::string(300, 'x') + R"(.safetensors"})"), "index.bad_shard");
}
