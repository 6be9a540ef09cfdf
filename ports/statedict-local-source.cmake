# Include from a vcpkg triplet to build the statedict port (ports/statedict) from a checkout:
#
#   set(STATEDICT_SOURCE /path/to/statedict)   # or the STATEDICT_SOURCE environment variable
#   include(/path/to/statedict/ports/statedict-local-source.cmake)
#
# vcpkg hashes each file named in VCPKG_HASH_ADDITIONAL_FILES into the package's ABI: listing the
# checkout's files there makes an edited checkout build anew instead of being restored, stale, from a
# binary cache (the port's own files are hashed anyway, its source is not). The triplet variable
# STATEDICT_SOURCE also reaches the portfile where vcpkg cleans the environment (Windows; there
# VCPKG_KEEP_ENV_VARS=STATEDICT_SOURCE keeps the environment variable instead).
if(PORT STREQUAL "statedict")
  if(NOT DEFINED STATEDICT_SOURCE AND DEFINED ENV{STATEDICT_SOURCE})
    set(STATEDICT_SOURCE "$ENV{STATEDICT_SOURCE}")
  endif()
  if(DEFINED STATEDICT_SOURCE)
    if(NOT EXISTS "${STATEDICT_SOURCE}/include/statedict/statedict.hpp")
      message(FATAL_ERROR "STATEDICT_SOURCE=${STATEDICT_SOURCE} is not a statedict checkout")
    endif()
    # What the build reads (CMakeLists.txt's add_subdirectory calls for tests, examples, benchmarks and
    # fuzzers are off in the port).
    file(GLOB_RECURSE _statedict_files LIST_DIRECTORIES false "${STATEDICT_SOURCE}/include/*" "${STATEDICT_SOURCE}/src/*"
         "${STATEDICT_SOURCE}/tools/*" "${STATEDICT_SOURCE}/cmake/*")
    list(SORT _statedict_files)
    list(APPEND VCPKG_HASH_ADDITIONAL_FILES "${STATEDICT_SOURCE}/CMakeLists.txt" "${STATEDICT_SOURCE}/LICENSE" ${_statedict_files})
    set(STATEDICT_LOCAL_SOURCE_HASHED ON)
  endif()
endif()
