#pragma once
// Every statedict error id as a named constant, to compare with Error::id() and LoadReport::error_id
// without spelling the string:
//   catch (const statedict::Error& e) { if (e.id() == statedict::errors::file_changed) reread(); }
// The error catalogue (docs/errors.md) says what each means; tests/error_catalogue.sh checks that this list,
// the ids the code raises and the catalogue are the same set.
#include <string_view>

namespace statedict::errors {

inline constexpr std::string_view aoti_load_constants = "aoti.load_constants";
inline constexpr std::string_view aoti_package = "aoti.package";
inline constexpr std::string_view dcp_bounds = "dcp.bounds";
inline constexpr std::string_view dcp_chunk = "dcp.chunk";
inline constexpr std::string_view dcp_file = "dcp.file";
inline constexpr std::string_view dcp_metadata = "dcp.metadata";
inline constexpr std::string_view dcp_missing_chunk = "dcp.missing_chunk";
inline constexpr std::string_view dcp_overlap = "dcp.overlap";
inline constexpr std::string_view dcp_sharding = "dcp.sharding";
inline constexpr std::string_view dcp_transform = "dcp.transform";
inline constexpr std::string_view file_changed = "file.changed";
inline constexpr std::string_view format_bad_module = "format.bad_module";
inline constexpr std::string_view format_bad_record = "format.bad_record";
inline constexpr std::string_view format_byteorder = "format.byteorder";
inline constexpr std::string_view format_empty = "format.empty";
inline constexpr std::string_view format_lfs_pointer = "format.lfs_pointer";
inline constexpr std::string_view format_missing_record = "format.missing_record";
inline constexpr std::string_view format_missing_storage = "format.missing_storage";
inline constexpr std::string_view format_storage_size = "format.storage_size";
inline constexpr std::string_view format_torchscript = "format.torchscript";
inline constexpr std::string_view format_unknown = "format.unknown";
inline constexpr std::string_view format_unsupported = "format.unsupported";
inline constexpr std::string_view format_unsupported_dtype = "format.unsupported_dtype";
inline constexpr std::string_view format_version = "format.version";
inline constexpr std::string_view index_bad = "index.bad";
inline constexpr std::string_view index_bad_shard = "index.bad_shard";
inline constexpr std::string_view index_duplicate = "index.duplicate";
inline constexpr std::string_view index_mismatch = "index.mismatch";
inline constexpr std::string_view index_missing_shard = "index.missing_shard";
inline constexpr std::string_view index_not_found = "index.not_found";
inline constexpr std::string_view index_too_large = "index.too_large";
inline constexpr std::string_view io_lease = "io.lease";
inline constexpr std::string_view io_mmap = "io.mmap";
inline constexpr std::string_view io_not_a_file = "io.not_a_file";
inline constexpr std::string_view io_open = "io.open";
inline constexpr std::string_view io_read = "io.read";
inline constexpr std::string_view io_write = "io.write";
inline constexpr std::string_view json_duplicate = "json.duplicate";
inline constexpr std::string_view json_parse = "json.parse";
inline constexpr std::string_view json_utf8 = "json.utf8";
inline constexpr std::string_view legacy_count = "legacy.count";
inline constexpr std::string_view legacy_keys = "legacy.keys";
inline constexpr std::string_view legacy_magic = "legacy.magic";
inline constexpr std::string_view legacy_protocol = "legacy.protocol";
inline constexpr std::string_view legacy_truncated = "legacy.truncated";
inline constexpr std::string_view limit_depth = "limit.depth";
inline constexpr std::string_view limit_pickle_size = "limit.pickle_size";
inline constexpr std::string_view limit_tensors = "limit.tensors";
inline constexpr std::string_view load_apply = "load.apply";
inline constexpr std::string_view load_failed = "load.failed";
inline constexpr std::string_view load_not_a_state_dict = "load.not_a_state_dict";
inline constexpr std::string_view options_bad_dtype = "options.bad_dtype";
inline constexpr std::string_view options_bad_file = "options.bad_file";
inline constexpr std::string_view options_bad_output = "options.bad_output";
inline constexpr std::string_view options_bad_regex = "options.bad_regex";
inline constexpr std::string_view options_bad_rename = "options.bad_rename";
inline constexpr std::string_view options_bad_shard = "options.bad_shard";
inline constexpr std::string_view options_bad_threads = "options.bad_threads";
inline constexpr std::string_view options_bad_transform = "options.bad_transform";
inline constexpr std::string_view options_not_invertible = "options.not_invertible";
inline constexpr std::string_view path_not_found = "path.not_found";
inline constexpr std::string_view pickle_bad_global = "pickle.bad_global";
inline constexpr std::string_view pickle_bad_int = "pickle.bad_int";
inline constexpr std::string_view pickle_bad_numpy = "pickle.bad_numpy";
inline constexpr std::string_view pickle_bad_persistent_id = "pickle.bad_persistent_id";
inline constexpr std::string_view pickle_bad_tensor = "pickle.bad_tensor";
inline constexpr std::string_view pickle_bytesio = "pickle.bytesio";
inline constexpr std::string_view pickle_forbidden_global = "pickle.forbidden_global";
inline constexpr std::string_view pickle_memo = "pickle.memo";
inline constexpr std::string_view pickle_no_mark = "pickle.no_mark";
inline constexpr std::string_view pickle_no_proto = "pickle.no_proto";
inline constexpr std::string_view pickle_opcode = "pickle.opcode";
inline constexpr std::string_view pickle_out_of_band = "pickle.out_of_band";
inline constexpr std::string_view pickle_protocol = "pickle.protocol";
inline constexpr std::string_view pickle_setitems = "pickle.setitems";
inline constexpr std::string_view pickle_stack = "pickle.stack";
inline constexpr std::string_view pickle_storage_conflict = "pickle.storage_conflict";
inline constexpr std::string_view pickle_truncated = "pickle.truncated";
inline constexpr std::string_view pickle_type = "pickle.type";
inline constexpr std::string_view pickle_unclosed_mark = "pickle.unclosed_mark";
inline constexpr std::string_view pickle_utf8 = "pickle.utf8";
inline constexpr std::string_view pt2_archive = "pt2.archive";
inline constexpr std::string_view pt2_bad_path = "pt2.bad_path";
inline constexpr std::string_view pt2_blob = "pt2.blob";
inline constexpr std::string_view pt2_bounds = "pt2.bounds";
inline constexpr std::string_view pt2_compiled_in = "pt2.compiled_in";
inline constexpr std::string_view pt2_config = "pt2.config";
inline constexpr std::string_view pt2_dtype = "pt2.dtype";
inline constexpr std::string_view pt2_pickle = "pt2.pickle";
inline constexpr std::string_view safetensors_entry = "safetensors.entry";
inline constexpr std::string_view safetensors_header = "safetensors.header";
inline constexpr std::string_view safetensors_header_size = "safetensors.header_size";
inline constexpr std::string_view safetensors_layout = "safetensors.layout";
inline constexpr std::string_view safetensors_metadata = "safetensors.metadata";
inline constexpr std::string_view safetensors_truncated = "safetensors.truncated";
inline constexpr std::string_view save_duplicate = "save.duplicate";
inline constexpr std::string_view save_layout = "save.layout";
inline constexpr std::string_view save_name = "save.name";
inline constexpr std::string_view save_undefined = "save.undefined";
inline constexpr std::string_view torchscript_load = "torchscript.load";
inline constexpr std::string_view transform_failed = "transform.failed";
inline constexpr std::string_view value_index = "value.index";
inline constexpr std::string_view value_type = "value.type";
inline constexpr std::string_view zip_bad_directory = "zip.bad_directory";
inline constexpr std::string_view zip_bad_entry = "zip.bad_entry";
inline constexpr std::string_view zip_bad_layout = "zip.bad_layout";
inline constexpr std::string_view zip_bad_name = "zip.bad_name";
inline constexpr std::string_view zip_compressed = "zip.compressed";
inline constexpr std::string_view zip_duplicate = "zip.duplicate";
inline constexpr std::string_view zip_empty = "zip.empty";
inline constexpr std::string_view zip_no_directory = "zip.no_directory";
inline constexpr std::string_view zip_truncated = "zip.truncated";
inline constexpr std::string_view zstd_corrupt = "zstd.corrupt";
inline constexpr std::string_view zstd_too_large = "zstd.too_large";
inline constexpr std::string_view zstd_unavailable = "zstd.unavailable";

}  // namespace statedict::errors
