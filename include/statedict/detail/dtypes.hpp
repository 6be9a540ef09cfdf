#pragma once
// Every spelling of a dtype the formats use, in one table.
#include <c10/core/ScalarType.h>

#include <optional>
#include <string>
#include <string_view>

namespace statedict::detail {

struct DtypeNames {
  c10::ScalarType type;
  const char* torch;        // PyTorch's name without "torch."
  const char* storage;      // torch.<X>Storage
  const char* safetensors;  // safetensors' name
  const char* numpy;        // numpy kind+size code
};

inline constexpr DtypeNames dtype_table[] = {
    {c10::ScalarType::Float, "float32", "FloatStorage", "F32", "f4"},
    {c10::ScalarType::Double, "float64", "DoubleStorage", "F64", "f8"},
    {c10::ScalarType::Half, "float16", "HalfStorage", "F16", "f2"},
    {c10::ScalarType::BFloat16, "bfloat16", "BFloat16Storage", "BF16", nullptr},
    {c10::ScalarType::Long, "int64", "LongStorage", "I64", "i8"},
    {c10::ScalarType::Int, "int32", "IntStorage", "I32", "i4"},
    {c10::ScalarType::Short, "int16", "ShortStorage", "I16", "i2"},
    {c10::ScalarType::Char, "int8", "CharStorage", "I8", "i1"},
    {c10::ScalarType::Byte, "uint8", "ByteStorage", "U8", "u1"},
    {c10::ScalarType::Bool, "bool", "BoolStorage", "BOOL", "b1"},
    {c10::ScalarType::ComplexFloat, "complex64", "ComplexFloatStorage", "C64", "c8"},
    {c10::ScalarType::ComplexDouble, "complex128", "ComplexDoubleStorage", "C128", "c16"},
};

inline const DtypeNames* find_dtype(c10::ScalarType t) {
  for (const auto& d : dtype_table)
    if (d.type == t) return &d;
  return nullptr;
}

inline std::optional<c10::ScalarType> dtype_from_storage(std::string_view name) {
  for (const auto& d : dtype_table)
    if (name == d.storage) return d.type;
  return std::nullopt;
}
inline std::optional<c10::ScalarType> dtype_from_torch(std::string_view name) {
  for (const auto& d : dtype_table)
    if (name == d.torch) return d.type;
  // Aliases PyTorch also accepts.
  if (name == "float") return c10::ScalarType::Float;
  if (name == "double") return c10::ScalarType::Double;
  if (name == "half") return c10::ScalarType::Half;
  if (name == "long") return c10::ScalarType::Long;
  if (name == "int") return c10::ScalarType::Int;
  if (name == "short") return c10::ScalarType::Short;
  if (name == "cfloat") return c10::ScalarType::ComplexFloat;
  if (name == "cdouble") return c10::ScalarType::ComplexDouble;
  return std::nullopt;
}
inline std::optional<c10::ScalarType> dtype_from_safetensors(std::string_view name) {
  for (const auto& d : dtype_table)
    if (name == d.safetensors) return d.type;
  return std::nullopt;
}
inline std::optional<c10::ScalarType> dtype_from_numpy(std::string_view code) {
  if (code == "b" || code == "?") code = "b1";
  for (const auto& d : dtype_table)
    if (d.numpy != nullptr && code == d.numpy) return d.type;
  return std::nullopt;
}

/// PyTorch's name of a dtype without "torch." ("float32", "bfloat16", ...).
inline std::string dtype_name(c10::ScalarType t) {
  const auto* d = find_dtype(t);
  return d != nullptr ? d->torch : std::string(c10::toString(t));
}
inline std::string safetensors_name(c10::ScalarType t) {
  const auto* d = find_dtype(t);
  return d != nullptr ? d->safetensors : std::string();
}

}  // namespace statedict::detail
