# Header-only: installs include/statedict and the CMake package (statedict::statedict); the
# "tools" feature adds the statedict command line tool.
# As an overlay port before a release exists, point STATEDICT_SOURCE at a checkout:
#   STATEDICT_SOURCE=/path/to/statedict vcpkg install statedict --overlay-ports=/path/to/statedict/ports
if(DEFINED ENV{STATEDICT_SOURCE})
  set(SOURCE_PATH "$ENV{STATEDICT_SOURCE}")
else()
  vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO statedict/statedict
    REF "v${VERSION}"
    SHA512 0
    HEAD_REF main)
endif()

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS FEATURES tools STATEDICT_BUILD_TOOLS)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DSTATEDICT_BUILD_TESTS=OFF
    -DSTATEDICT_BUILD_EXAMPLES=OFF
    -DSTATEDICT_BUILD_BENCHMARKS=OFF
    -DSTATEDICT_BUILD_COMPILED=OFF
    -DSTATEDICT_INSTALL=ON
    -DSTATEDICT_WERROR=OFF
    ${FEATURE_OPTIONS})
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/statedict/cmake)
if("tools" IN_LIST FEATURES)
  vcpkg_copy_tools(TOOL_NAMES statedict AUTO_CLEAN)
endif()
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
