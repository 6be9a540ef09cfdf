#pragma once
// Every spelling of a dtype the formats use, in one table: the dtypes of PyTorch 2.14 that files
// hold, whether or not the LibTorch statedict is compiled against has them.
#include <statedict/detail/compat.hpp>

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace statedict::detail {

/// The bytes of a tensor's elements.
inline std::uint64_t tensor_bytes(const at::Tensor& t) { return static_cast<std::uint64_t>(t.numel()) * t.element_size(); }

struct DtypeNames {
  c10::ScalarType type;     // Undefined where this LibTorch has no such dtype (see raw tensors)
  const char* torch;        // PyTorch's name without "torch."
  const char* storage;      // torch.<X>Storage (dtypes added after 2.0 have none: UntypedStorage + dtype)
  const char* safetensors;  // safetensors' name
  const char* numpy;        // numpy kind+size code
  std::uint8_t size;        // bytes per element
};

#if STATEDICT_HAS_FLOAT8
#define STATEDICT_F8(x) c10::ScalarType::x
#else
#define STATEDICT_F8(x) c10::ScalarType::Undefined
#endif
#if STATEDICT_HAS_FLOAT8_FNUZ
#define STATEDICT_F8FNUZ(x) c10::ScalarType::x
#else
#define STATEDICT_F8FNUZ(x) c10::ScalarType::Undefined
#endif
#if STATEDICT_HAS_FLOAT8_E8M0
#define STATEDICT_F8E8M0(x) c10::ScalarType::x
#else
#define STATEDICT_F8E8M0(x) c10::ScalarType::Undefined
#endif
#if STATEDICT_HAS_FLOAT4
#define STATEDICT_F4(x) c10::ScalarType::x
#else
#define STATEDICT_F4(x) c10::ScalarType::Undefined
#endif
#if STATEDICT_HAS_UINT16_64
#define STATEDICT_UINT(x) c10::ScalarType::x
#else
#define STATEDICT_UINT(x) c10::ScalarType::Undefined
#endif

inline constexpr DtypeNames dtype_table[] = {
    {c10::ScalarType::Float, "float32", "FloatStorage", "F32", "f4", 4},
    {c10::ScalarType::Double, "float64", "DoubleStorage", "F64", "f8", 8},
    {c10::ScalarType::Half, "float16", "HalfStorage", "F16", "f2", 2},
    {c10::ScalarType::BFloat16, "bfloat16", "BFloat16Storage", "BF16", nullptr, 2},
    {c10::ScalarType::Long, "int64", "LongStorage", "I64", "i8", 8},
    {c10::ScalarType::Int, "int32", "IntStorage", "I32", "i4", 4},
    {c10::ScalarType::Short, "int16", "ShortStorage", "I16", "i2", 2},
    {c10::ScalarType::Char, "int8", "CharStorage", "I8", "i1", 1},
    {c10::ScalarType::Byte, "uint8", "ByteStorage", "U8", "u1", 1},
    {c10::ScalarType::Bool, "bool", "BoolStorage", "BOOL", "b1", 1},
    {c10::ScalarType::ComplexFloat, "complex64", "ComplexFloatStorage", "C64", "c8", 8},
    {c10::ScalarType::ComplexDouble, "complex128", "ComplexDoubleStorage", "C128", "c16", 16},
    {c10::ScalarType::ComplexHalf, "complex32", nullptr, nullptr, nullptr, 4},
    {STATEDICT_F8(Float8_e4m3fn), "float8_e4m3fn", nullptr, "F8_E4M3", nullptr, 1},
    {STATEDICT_F8(Float8_e5m2), "float8_e5m2", nullptr, "F8_E5M2", nullptr, 1},
    {STATEDICT_F8FNUZ(Float8_e4m3fnuz), "float8_e4m3fnuz", nullptr, "F8_E4M3FNUZ", nullptr, 1},
    {STATEDICT_F8FNUZ(Float8_e5m2fnuz), "float8_e5m2fnuz", nullptr, "F8_E5M2FNUZ", nullptr, 1},
    {STATEDICT_F8E8M0(Float8_e8m0fnu), "float8_e8m0fnu", nullptr, "F8_E8M0", nullptr, 1},
    // Two fp4 values a byte; PyTorch's shape counts bytes, safetensors' "F4" header counts values
    // (see packs_two below).
    {STATEDICT_F4(Float4_e2m1fn_x2), "float4_e2m1fn_x2", nullptr, "F4", nullptr, 1},
    {STATEDICT_UINT(UInt16), "uint16", nullptr, "U16", "u2", 2},
    {STATEDICT_UINT(UInt32), "uint32", nullptr, "U32", "u4", 4},
    {STATEDICT_UINT(UInt64), "uint64", nullptr, "U64", "u8", 8},
    // Quantized storages: only their bytes are read (quantized tensors are listed as unreadable).
    {c10::ScalarType::QInt8, "qint8", "QInt8Storage", nullptr, nullptr, 1},
    {c10::ScalarType::QUInt8, "quint8", "QUInt8Storage", nullptr, nullptr, 1},
    {c10::ScalarType::QInt32, "qint32", "QInt32Storage", nullptr, nullptr, 4},
    {c10::ScalarType::QUInt4x2, "quint4x2", "QUInt4x2Storage", nullptr, nullptr, 1},
    {c10::ScalarType::QUInt2x4, "quint2x4", "QUInt2x4Storage", nullptr, nullptr, 1},
};
#undef STATEDICT_F8
#undef STATEDICT_F8FNUZ
#undef STATEDICT_F8E8M0
#undef STATEDICT_F4
#undef STATEDICT_UINT

/// A dtype as the files name it: a row of dtype_table.
using Dtype = const DtypeNames*;

/// True when this LibTorch has the dtype; otherwise its tensors are kept as raw bytes.
inline bool native(Dtype d) { return d->type != c10::ScalarType::Undefined; }

inline Dtype find_dtype(c10::ScalarType t) {
  if (t == c10::ScalarType::Undefined) return nullptr;
  for (const auto& d : dtype_table)
    if (d.type == t) return &d;
  return nullptr;
}
/// The row whose name in one of the table's columns (`&DtypeNames::storage`, ...) is `name`.
inline Dtype find_dtype_named(const char* DtypeNames::*column, std::string_view name) {
  for (const auto& d : dtype_table)
    if (d.*column != nullptr && name == d.*column) return &d;
  return nullptr;
}
inline Dtype dtype_from_storage(std::string_view name) { return find_dtype_named(&DtypeNames::storage, name); }
inline Dtype dtype_from_torch(std::string_view name) {
  if (Dtype d = find_dtype_named(&DtypeNames::torch, name)) return d;
  // Aliases PyTorch also accepts.
  static constexpr std::pair<std::string_view, std::string_view> aliases[] = {
      {"float", "float32"}, {"double", "float64"},   {"half", "float16"},       {"long", "int64"},     {"int", "int32"},
      {"short", "int16"},   {"cfloat", "complex64"}, {"cdouble", "complex128"}, {"chalf", "complex32"}};
  for (const auto& [alias, real] : aliases)
    if (name == alias) return dtype_from_torch(real);
  return nullptr;
}
/// The row of a dtype named at compile time, found once (default member initializers run for every
/// storage and tensor of a file).
inline Dtype dtype_uint8() {
  static const Dtype d = dtype_from_torch("uint8");
  return d;
}
inline Dtype dtype_float32() {
  static const Dtype d = dtype_from_torch("float32");
  return d;
}
inline Dtype dtype_from_safetensors(std::string_view name) { return find_dtype_named(&DtypeNames::safetensors, name); }
/// The dtype whose element is two packed values (its safetensors shape has a last dimension twice its own).
inline bool packs_two(Dtype d) { return d->safetensors != nullptr && std::string_view(d->safetensors) == "F4"; }
inline Dtype dtype_from_numpy(std::string_view code) {
  if (code == "b" || code == "?") code = "b1";
  return find_dtype_named(&DtypeNames::numpy, code);
}

/// PyTorch's name of a dtype without "torch." ("float32", "bfloat16", ...).
inline std::string dtype_name(c10::ScalarType t) {
  const auto* d = find_dtype(t);
  return d != nullptr ? d->torch : std::string(c10::toString(t));
}
inline std::string safetensors_name(c10::ScalarType t) {
  const auto* d = find_dtype(t);
  return d != nullptr && d->safetensors != nullptr ? d->safetensors : std::string();
}

/// A tensor of `dtype` over `storage` (offset, sizes and strides in elements). A dtype this LibTorch
/// lacks becomes a raw tensor: uint8, one more trailing dimension of the element size, the same bytes.
/// A tensor of `type` over `storage` (its offset, sizes and strides already checked against the
/// storage), made directly: at::empty then set_ dispatches twice, which 100k small tensors feel.
inline at::Tensor tensor_over(const at::Storage& storage, c10::ScalarType type, std::int64_t offset, at::IntArrayRef sizes,
                              at::IntArrayRef strides) {
  if (storage.device_type() != c10::DeviceType::CPU)
    return at::empty({0}, at::TensorOptions().dtype(type).device(storage.device())).set_(storage, offset, sizes, strides);
  at::Tensor t = at::detail::make_tensor<c10::TensorImpl>(c10::Storage(storage), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                          c10::scalarTypeToTypeMeta(type));
  c10::TensorImpl* impl = t.unsafeGetTensorImpl();
  impl->set_sizes_and_strides(sizes, strides);
  impl->set_storage_offset(offset);
  return t;
}

inline at::Tensor tensor_on(const at::Storage& storage, Dtype dtype, std::int64_t offset, at::IntArrayRef sizes, at::IntArrayRef strides) {
  if (native(dtype)) return tensor_over(storage, dtype->type, offset, sizes, strides);
  const std::int64_t es = dtype->size;
  std::vector<std::int64_t> sz(sizes.begin(), sizes.end()), st;
  for (auto s : strides) st.push_back(s * es);
  sz.push_back(es);
  st.push_back(1);
  return tensor_over(storage, at::kByte, offset * es, sz, st);
}
/// A new contiguous tensor of `dtype` and shape `sizes` (raw for dtypes this LibTorch lacks).
inline at::Tensor empty_of(Dtype dtype, at::IntArrayRef sizes) {
  if (native(dtype)) return at::empty(sizes, at::TensorOptions().dtype(dtype->type));
  std::vector<std::int64_t> sz(sizes.begin(), sizes.end());
  sz.push_back(dtype->size);
  return at::empty(sz, at::TensorOptions().dtype(at::kByte));
}

/// A shape as "[4, 3, 7, 7]".
inline std::string shape_str(at::IntArrayRef v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

/// Bytes that need reversing per element to turn big-endian data into little-endian.
inline std::size_t swap_unit(Dtype t, bool big) {
  if (!big) return 1;
  const bool complex = t->torch[0] == 'c';  // complex numbers swap each half on its own
  return complex ? t->size / 2u : t->size;
}

}  // namespace statedict::detail
