#pragma once
// Storages and tensors in a pickle: the persistent ids that declare storages and the checks a
// tensor rebuild must pass (its view inside its storage) before it is listed.
#include <statedict/detail/formats/pickle_machine.hpp>

#include <cctype>
#include <string>
#include <vector>

namespace statedict::detail {

// ---- tensors and storages ----
inline std::uint32_t Unpickler::persistent(std::uint32_t pid) {
  if (plain_)
    fail("pickle.bad_persistent_id", op_at_,
         "a persistent id in a plain pickle: its tensors' bytes would be records beside it, which a pickle.dump file has none of "
         "(a torch.save file's data.pkl taken out of its zip?)");
  const Node& t = node(pid);
  if (t.kind != Kind::tuple) fail("pickle.bad_persistent_id", op_at_, "persistent id is a " + kind_name(pid) + ", not a tuple");
  if (t.items.empty() || node(t.items[0]).kind != Kind::string) fail("pickle.bad_persistent_id", op_at_, "persistent id has no tag");
  const std::string tag = node(t.items[0]).text;
  if (tag == "module") {
    // Legacy whole modules: ('module', class, source file, source text) stands for the class.
    // The source text is never looked at, let alone run; the class stays an inert reference.
    if (t.items.size() != 4 || node(t.items[1]).internal != Internal::global)
      fail("pickle.bad_persistent_id", op_at_, "persistent id 'module' is not ('module', class, source file, source)");
    return share(t.items[1]);
  }
  if (tag != "storage") fail("pickle.bad_persistent_id", op_at_, "persistent id tag '" + printable(tag) + "' (expected 'storage')");
  const std::size_t want = legacy_ ? 6 : 5;
  if (t.items.size() != want)
    fail("pickle.bad_persistent_id", op_at_,
         "storage persistent id has " + std::to_string(t.items.size()) + " fields (expected " + std::to_string(want) + ")");
  const Node& type = node(t.items[1]);
  const Node& key = node(t.items[2]);
  const Node& numel = node(t.items[4]);
  if (type.internal != Internal::global) fail("pickle.bad_persistent_id", op_at_, "storage type is not a class");
  StorageSpec spec;
  const std::string tn = type.text.substr(type.text.rfind('.') + 1);
  if (tn == "UntypedStorage" || tn == "_UntypedStorage")
    spec.untyped = true;
  else if (Dtype dt = dtype_from_storage(tn))
    spec.dtype = dt;

  else
    fail("pickle.bad_persistent_id", op_at_, "unknown storage type " + type.text);
  if (key.kind != Kind::string || key.text.empty() || key.text.size() > 64)
    fail("pickle.bad_persistent_id", op_at_, "storage key is not a short string");
  for (char c : key.text)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      fail("pickle.bad_persistent_id", op_at_, "storage key '" + printable(key.text) + "' is not a plain name");
  if (numel.kind != Kind::integer || numel.big || numel.integer < 0)
    fail("pickle.bad_persistent_id", op_at_, "storage '" + key.text + "' has a negative or non-integer size");
  spec.key = key.text;
  spec.numel = static_cast<std::uint64_t>(numel.integer);
  spec.declared_at = base_ + op_at_;
  std::uint64_t bytes;
  if (mul_overflows(spec.numel, spec.untyped ? 1 : spec.dtype->size, &bytes))
    fail("pickle.bad_persistent_id", op_at_, "storage '" + key.text + "' size overflows");
  std::uint32_t idx = declare_storage(spec);
  if (legacy_) {
    const Node& view = node(t.items[5]);
    if (view.kind == Kind::tuple) {
      // (view_key, offset, view_size): a window of the storage declared above.
      if (view.items.size() != 3 || node(view.items[0]).kind != Kind::string || node(view.items[1]).kind != Kind::integer ||
          node(view.items[2]).kind != Kind::integer || node(view.items[1]).integer < 0 || node(view.items[2]).integer < 0)
        fail("pickle.bad_persistent_id", op_at_, "malformed legacy storage view");
      StorageSpec v;
      v.key = "view:" + node(view.items[0]).text;
      v.dtype = spec.dtype;
      v.untyped = spec.untyped;
      v.view_of = spec.key;
      v.view_offset = static_cast<std::uint64_t>(node(view.items[1]).integer);
      v.numel = static_cast<std::uint64_t>(node(view.items[2]).integer);
      std::uint64_t end;
      if (add_overflows(v.view_offset, v.numel, &end) || end > spec.numel)
        fail("pickle.bad_persistent_id", op_at_, "legacy storage view runs past storage '" + spec.key + "'");
      idx = declare_storage(v);
    } else if (view.kind != Kind::none) {
      fail("pickle.bad_persistent_id", op_at_, "malformed legacy storage view");
    }
  }
  const std::uint32_t made = tree_.add(Kind::object);
  Node& nd = node(made);
  nd.internal = Internal::storage;
  nd.text.append("torch.").append(tn);
  nd.pending = idx;
  recycle(pid);  // the id's fields live on in the storage spec
  return made;
}
inline std::uint32_t Unpickler::declare_storage(StorageSpec& spec) {
  const std::uint32_t known = st_.storage_by_key.find(spec.key);
  if (known != npos) {
    const StorageSpec& old = st_.storages[known];
    if (old.dtype != spec.dtype || old.numel != spec.numel || old.untyped != spec.untyped)
      fail("pickle.storage_conflict", op_at_,
           "storage '" + spec.key + "' declared again with another type or size (first at offset " + std::to_string(old.declared_at) + ")");
    return known;
  }
  const auto idx = static_cast<std::uint32_t>(st_.storages.size());
  st_.storages.push_back(std::move(spec));
  st_.storage_by_key.add(st_.storages.back().key, idx);
  return idx;
}

inline std::uint32_t Unpickler::rebuild_tensor(std::uint32_t fn, const std::vector<std::uint32_t>& a) {
  const bool v3 = node(fn).text == "torch._utils._rebuild_tensor_v3";
  const std::size_t need = v3 ? 7 : 4;
  if (a.size() < need)
    fail("pickle.bad_tensor", op_at_,
         node(fn).text + " with " + std::to_string(a.size()) + " arguments (needs at least " + std::to_string(need) + ")");
  const Node& storage = arg(a, 0);
  if (storage.internal != Internal::storage) fail("pickle.bad_tensor", op_at_, node(fn).text + " without a storage");
  TensorSpec t;
  t.storage = storage.pending;
  const StorageSpec& ss = st_.storages[t.storage];
  const std::int64_t off = want_int(a, 1, "storage offset");
  if (off < 0) fail("pickle.bad_tensor", op_at_, "negative storage offset " + std::to_string(off));
  t.offset = static_cast<std::uint64_t>(off);
  t.dims_at = st_.dims.size();
  const std::size_t dim = append_int_tuple(a[2], "size", st_.dims);
  const std::size_t stride_dim = append_int_tuple(a[3], "stride", st_.dims);
  if (dim != stride_dim)
    fail("pickle.bad_tensor", op_at_, "size has " + std::to_string(dim) + " dims but stride has " + std::to_string(stride_dim));
  if (dim > 64) fail("pickle.bad_tensor", op_at_, "tensor with more than 64 dimensions");
  t.dim = static_cast<std::uint32_t>(dim);
  const at::IntArrayRef sizes = st_.sizes(t), strides = st_.strides(t);
  if (a.size() > 4 && arg(a, 4).kind == Kind::boolean) t.requires_grad = arg(a, 4).boolean;
  t.dtype = ss.dtype;
  if (v3) {
    const Node& dt = arg(a, 6);
    Dtype parsed = dt.internal == Internal::global && dt.text.compare(0, 6, "torch.") == 0 ? dtype_from_torch(dt.text.substr(6)) : nullptr;
    if (!parsed) fail("pickle.bad_tensor", op_at_, "_rebuild_tensor_v3 with an unknown dtype " + printable(dt.text));
    t.dtype = parsed;
  } else if (ss.untyped) {
    fail("pickle.bad_tensor", op_at_, node(fn).text + " over an untyped storage needs a dtype");
  }
  if (c10::isQIntType(t.dtype->type))
    fail("pickle.bad_tensor", op_at_, node(fn).text + " over a quantized storage (only _rebuild_qtensor uses those)");
  // The elements the view can reach must lie inside the storage.
  const std::uint64_t es = t.dtype->size;
  const std::uint64_t capacity = ss.untyped ? ss.numel / es : ss.numel;
  std::uint64_t numel = 1, reach = t.offset, tmp;
  for (std::size_t k = 0; k < dim; ++k) {
    if (mul_overflows(numel, static_cast<std::uint64_t>(sizes[k]), &numel)) fail("pickle.bad_tensor", op_at_, "tensor size overflows");
  }
  if (numel > 0) {
    for (std::size_t k = 0; k < dim; ++k)
      if (mul_overflows(static_cast<std::uint64_t>(sizes[k] - 1), static_cast<std::uint64_t>(strides[k]), &tmp) ||
          add_overflows(reach, tmp, &reach))
        fail("pickle.bad_tensor", op_at_, "tensor extent overflows");
    if (reach >= capacity)
      fail("pickle.bad_tensor", op_at_,
           "tensor view reaches element " + std::to_string(reach) + " of storage '" + ss.key + "' which holds " + std::to_string(capacity));
  } else if (t.offset > capacity) {
    fail("pickle.bad_tensor", op_at_, "empty tensor at offset " + std::to_string(t.offset) + " past the end of storage '" + ss.key + "'");
  }
  if (st_.tensors.size() >= opts_.max_tensors())
    fail("limit.tensors", op_at_, "more than max_tensors (" + std::to_string(opts_.max_tensors()) + ") tensors");
  t.at = base_ + op_at_;
  const std::uint32_t id = tree_.add(Kind::tensor);
  node(id).pending = static_cast<std::uint32_t>(st_.tensors.size());
  st_.tensors.push_back(std::move(t));
  return id;
}

}  // namespace statedict::detail
