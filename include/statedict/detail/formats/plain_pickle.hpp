#pragma once
// Plain pickles: a pickle.dump of dicts of numpy arrays, as detectron2's model zoo ships its .pkl
// files ({"model": {name: ndarray}, "__author__": ...}, or older files of the arrays alone). Read by
// the unpickler of torch.save files, with its allowlist: numpy arrays become tensors (copies of the
// bytes the pickle holds), every other class an inert object, and nothing in the file runs.
#include <statedict/detail/formats/torch_file.hpp>

#include <memory>
#include <string>

namespace statedict::detail {

/// A pickle of protocol 2 to 5 (PROTO first), what pickle.dump has written by default since
/// Python 3.0. A legacy torch.save file starts the same way: look for it first.
inline bool looks_like_pickle(const MappedFile& f) {
  return f.head_size() >= 3 && f.head()[0] == 0x80 && f.head()[1] >= 2 && f.head()[1] <= 5;
}

inline std::shared_ptr<CheckpointData> read_plain_pickle(const std::shared_ptr<MappedFile>& f, const ReadOptions& opts) {
  const std::string& path = f->path();
  const std::uint64_t size = f->size();
  if (size > opts.max_pickle_bytes())
    throw Error("limit.pickle_size", path, "",
                "pickle is " + std::to_string(size) + " bytes, over max_pickle_bytes (" + std::to_string(opts.max_pickle_bytes()) + ")");
  // pread into memory, never through the mapping: a file that shrinks meanwhile is an error, not SIGBUS.
  std::string bytes(static_cast<std::size_t>(size), '\0');
  read_or_throw(*f, bytes.data(), bytes.size(), 0, "pickle");
  PickleState st;
  Unpickler up(st, opts, path, "", reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), 0, false);
  up.plain(true);
  const std::uint32_t root = up.run();
  if (up.consumed() != bytes.size() && st.tree.nodes[root].kind == Kind::integer)  // a legacy file's first pickle, its number wrong
    throw Error("legacy.magic", path, "offset 0",
                "the file starts with a pickled number that is not the legacy magic number, then more: a damaged legacy torch.save file?");
  if (up.consumed() != bytes.size())
    throw Error("pickle.trailing", path, "offset " + std::to_string(up.consumed()),
                std::to_string(bytes.size() - up.consumed()) +
                    " bytes follow the pickle's STOP: the file holds more than one pickle, or is corrupt");
  FileTensors files;
  files.views = std::make_unique<FileViews>(f);
  return finish(st, std::move(files), root, Format::pickle, path, opts);
}

}  // namespace statedict::detail
