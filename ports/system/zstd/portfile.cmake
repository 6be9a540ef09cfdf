# The package comes from the system: nothing is built or installed here. Used by
# tests/package/vcpkg_install.sh, and by anyone whose libzstd is already installed.
set(VCPKG_POLICY_EMPTY_PACKAGE enabled)
