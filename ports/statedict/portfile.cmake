# statedict: header-only (statedict::statedict); the feature "compiled" adds statedict::compiled
# (libstatedict.a), the feature "tools" the statedict command line tool.
#
# Source: the release archive of v${VERSION}, made and hashed by scripts/release_archive.sh (which
# writes the SHA512 line below) and published as the release's asset. To build a checkout instead
# (before a release, or to test one), name it in STATEDICT_SOURCE and include
# ports/statedict-local-source.cmake from the triplet, which puts the checkout's files into the
# package's ABI: see docs/install.md#vcpkg.
set(STATEDICT_RELEASE_SHA512 5dc3800495a1b508e9b9d2c82200a8c9fb20660b783b2ffc03c2a4784153b70e57ee9158637292d4e509ccb9f481daf3869742db2eb4659bdc862c2941ff6aba)  # scripts/release_archive.sh 8806b85da96a75f95aab8e9a4ba2a3d68148119e

# A triplet variable, else the environment (which vcpkg cleans on Windows unless told otherwise).
if(NOT DEFINED STATEDICT_SOURCE AND DEFINED ENV{STATEDICT_SOURCE})
  set(STATEDICT_SOURCE "$ENV{STATEDICT_SOURCE}")
endif()
if(DEFINED STATEDICT_SOURCE)
  if(NOT STATEDICT_LOCAL_SOURCE_HASHED)
    message(FATAL_ERROR "statedict: STATEDICT_SOURCE is set (${STATEDICT_SOURCE}), but the triplet does not include "
                        "ports/statedict-local-source.cmake: the package's ABI would not follow the checkout, and a binary "
                        "cache would restore a stale build. Add to the triplet: "
                        "include(\"${STATEDICT_SOURCE}/ports/statedict-local-source.cmake\")")
  endif()
  set(SOURCE_PATH "${STATEDICT_SOURCE}")
else()
  vcpkg_download_distfile(ARCHIVE
    URLS "https://github.com/statedict/statedict/releases/download/v${VERSION}/statedict-${VERSION}.tar.gz"
    FILENAME "statedict-${VERSION}.tar.gz"
    SHA512 ${STATEDICT_RELEASE_SHA512})
  vcpkg_extract_source_archive(SOURCE_PATH ARCHIVE "${ARCHIVE}")
endif()

# Header-only (the tool alone is a release build): one release configuration. With statedict::compiled,
# a debug and a release library, the tool built in release only.
if("compiled" IN_LIST FEATURES)
  vcpkg_check_linkage(ONLY_STATIC_LIBRARY)
else()
  set(VCPKG_BUILD_TYPE release)
endif()

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    compiled STATEDICT_BUILD_COMPILED
    tools STATEDICT_BUILD_TOOLS)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DSTATEDICT_BUILD_TESTS=OFF
    -DSTATEDICT_BUILD_EXAMPLES=OFF
    -DSTATEDICT_BUILD_BENCHMARKS=OFF
    -DSTATEDICT_BUILD_FUZZERS=OFF
    -DSTATEDICT_INSTALL=ON
    -DSTATEDICT_WERROR=OFF
    ${FEATURE_OPTIONS}
  OPTIONS_DEBUG
    -DSTATEDICT_BUILD_TOOLS=OFF)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/statedict/cmake)
if("tools" IN_LIST FEATURES)
  vcpkg_copy_tools(TOOL_NAMES statedict AUTO_CLEAN)
endif()
if(NOT "compiled" IN_LIST FEATURES)
  file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib")
endif()
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug/include" "${CURRENT_PACKAGES_DIR}/debug/share"
                    "${CURRENT_PACKAGES_DIR}/share/statedict/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
