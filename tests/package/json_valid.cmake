# cmake -DFILE=path -P json_valid.cmake: fails unless FILE holds a JSON object.
file(READ "${FILE}" text)
string(JSON kind ERROR_VARIABLE err TYPE "${text}")
if(err OR NOT kind STREQUAL "OBJECT")
  message(FATAL_ERROR "${FILE}: ${err}")
endif()
