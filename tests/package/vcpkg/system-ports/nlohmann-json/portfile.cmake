# The package comes from the system: nothing is built or installed here. Used by
# tests/package/vcpkg_install.sh, where vcpkg cannot download or build nlohmann-json.
set(VCPKG_POLICY_EMPTY_PACKAGE enabled)
