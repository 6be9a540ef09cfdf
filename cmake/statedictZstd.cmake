# libzstd (Debian: libzstd-dev), for DCP folders saved with the zstd stream transform. Used by the
# build and, installed beside statedictConfig.cmake, by consumers: statedict is header-only, so the
# program that includes it is the one that links the decoder.
#
# statedict_find_zstd() defines the imported target statedict::zstd (GLOBAL, so that a parent
# project that add_subdirectory()s statedict sees it) and sets STATEDICT_ZSTD_FOUND. It looks with
# pkg-config first (its paths as hints), then with find_path/find_library alone; zstd's own CMake
# package is not used because its target names differ between zstd releases (libzstd_shared,
# libzstd_static, libzstd). STATEDICT_WITH_ZSTD=OFF skips the search: statedict then reads every DCP
# folder except those with the zstd transform, for which it says how to get the support.
macro(statedict_find_zstd)
  set(STATEDICT_ZSTD_FOUND FALSE)
  if(NOT DEFINED STATEDICT_WITH_ZSTD OR STATEDICT_WITH_ZSTD)
    if(TARGET statedict::zstd)
      set(STATEDICT_ZSTD_FOUND TRUE)
    else()
      find_package(PkgConfig QUIET)
      if(PKG_CONFIG_FOUND)
        pkg_check_modules(_sd_pc_zstd QUIET libzstd>=1.4)
      endif()
      find_path(STATEDICT_ZSTD_INCLUDE_DIR zstd.h HINTS ${_sd_pc_zstd_INCLUDE_DIRS})
      find_library(STATEDICT_ZSTD_LIBRARY NAMES zstd libzstd zstd_static HINTS ${_sd_pc_zstd_LIBRARY_DIRS})
      if(STATEDICT_ZSTD_INCLUDE_DIR AND STATEDICT_ZSTD_LIBRARY)
        # ZSTD_d_windowLogMax and ZSTD_DCtx_setParameter, which bound the decoder's memory, are
        # stable from zstd 1.4.0.
        file(STRINGS "${STATEDICT_ZSTD_INCLUDE_DIR}/zstd.h" _sd_zstd_version REGEX "^#define ZSTD_VERSION_(MAJOR|MINOR) +[0-9]+")
        string(REGEX REPLACE ".*MAJOR +([0-9]+).*MINOR +([0-9]+).*" "\\1.\\2" _sd_zstd_version "${_sd_zstd_version}")
        if(_sd_zstd_version VERSION_LESS 1.4)
          message(STATUS "statedict: zstd ${_sd_zstd_version} at ${STATEDICT_ZSTD_LIBRARY} is older than 1.4: not used")
        else()
          add_library(statedict::zstd UNKNOWN IMPORTED GLOBAL)
          set_target_properties(statedict::zstd PROPERTIES IMPORTED_LOCATION "${STATEDICT_ZSTD_LIBRARY}"
                                                           INTERFACE_INCLUDE_DIRECTORIES "${STATEDICT_ZSTD_INCLUDE_DIR}")
          set(STATEDICT_ZSTD_FOUND TRUE)
        endif()
      endif()
    endif()
  endif()
endmacro()
