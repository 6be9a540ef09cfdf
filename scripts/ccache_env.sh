# Sourced by the build scripts: ccache settings that let another clone of this checkout (CI's, a
# worktree) reuse this one's objects, precompiled-header units included.
# - CCACHE_DIR absolute, so the packaging tests, which set HOME to a scratch folder, use the same cache;
# - CCACHE_BASEDIR at the checkout: paths inside it are hashed relative to it, so the same build
#   folder name in another clone (build/, build-sid/, the package tests' copies under it) hits;
# - sloppiness pch_defines,time_macros: without it ccache refuses every unit compiled with a
#   precompiled header ("could not use precompiled header"), which is what the test suite's units are.
# Exported, so ctest's tests that configure and build projects of their own inherit them.
_sd_checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$_sd_checkout}" CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros}"
unset _sd_checkout
