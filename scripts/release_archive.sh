#!/usr/bin/env bash
# The release source archive the vcpkg port downloads: `git archive` of a tag or commit, gzipped
# without a name or time stamp (the same bytes every time for the same commit), as
# OUT_DIR/statedict-<version>.tar.gz with everything under statedict-<version>/. Prints the file and
# its SHA512. With --update-port it also writes that SHA512 and the ref into
# ports/statedict/portfile.cmake (the line `set(STATEDICT_RELEASE_SHA512 ...)`), which the
# package_recipes test checks against this script's output.
# Releasing: tag v<version>, run `scripts/release_archive.sh --update-port v<version>`, publish the
# archive as the release's asset (the URL in the portfile), commit the portfile.
# Usage: scripts/release_archive.sh [--update-port] [REF] [OUT_DIR]
#        (REF: default the tag v<version> when it exists, else HEAD; OUT_DIR: default build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
update=0
if [ "${1:-}" = --update-port ]; then update=1; shift; fi
version=$(sed -nE 's/#define STATEDICT_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)/\2/p' include/statedict/version.hpp | paste -sd.)
ref=${1:-}
if [ -z "$ref" ]; then
  if git rev-parse -q --verify "refs/tags/v$version" >/dev/null; then ref=v$version; else ref=HEAD; fi
fi
out=${2:-build/release}
commit=$(git rev-parse --verify "$ref^{commit}")
# The version the archive holds is the one its own version.hpp says.
archived_version=$(git show "$commit:include/statedict/version.hpp" |
  sed -nE 's/#define STATEDICT_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)/\2/p' | paste -sd.)
mkdir -p "$out"
file="$out/statedict-$archived_version.tar.gz"
git archive --format=tar --prefix="statedict-$archived_version/" "$commit" | gzip -9 -n >"$file"
sha512=$(sha512sum "$file" | cut -d' ' -f1)
echo "$file"
echo "ref $ref (commit $commit), version $archived_version"
echo "SHA512 $sha512"
if [ "$update" = 1 ]; then
  sed -i -E "s|^set\(STATEDICT_RELEASE_SHA512 [0-9a-f]+\)( *#.*)?$|set(STATEDICT_RELEASE_SHA512 $sha512)  # scripts/release_archive.sh $commit|" \
    ports/statedict/portfile.cmake
  grep -q "^set(STATEDICT_RELEASE_SHA512 $sha512)" ports/statedict/portfile.cmake ||
    { echo "ports/statedict/portfile.cmake has no line 'set(STATEDICT_RELEASE_SHA512 ...)' to update" >&2; exit 1; }
  echo "updated ports/statedict/portfile.cmake"
fi
