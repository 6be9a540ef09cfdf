#pragma once
#include <statedict/error_ids.hpp>

#include <stdexcept>
#include <string>
#include <utility>

namespace statedict {

/// The one exception type statedict throws for unreadable or hostile files and for misuse.
///
/// what() reads `FILE: WHERE: REASON [statedict.ID]`: the file, the place inside it (record name,
/// byte offset, key path) and a stable id that the error catalogue (docs/errors.md) explains.
class Error : public std::runtime_error {
public:
  Error(std::string id, std::string file, std::string where, std::string reason)
      : std::runtime_error(compose(id, file, where, reason)), id_(std::move(id)), file_(std::move(file)), where_(std::move(where)),
        reason_(std::move(reason)) {}

  /// Stable identifier such as "zip.truncated" or "pickle.forbidden_global".
  const std::string& id() const noexcept { return id_; }
  const std::string& file() const noexcept { return file_; }
  /// Record, byte offset or key path inside the file; may be empty.
  const std::string& where() const noexcept { return where_; }
  const std::string& reason() const noexcept { return reason_; }

private:
  static std::string compose(const std::string& id, const std::string& file, const std::string& where, const std::string& reason) {
    std::string s;
    if (!file.empty()) s += file + ": ";
    if (!where.empty()) s += where + ": ";
    s += reason;
    s += " [statedict." + id + "]";
    return s;
  }
  std::string id_, file_, where_, reason_;
};

}  // namespace statedict
