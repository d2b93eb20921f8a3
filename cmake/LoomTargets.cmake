# Helpers that give every loom target the same standard, warnings and include roots.
# Warnings are errors on loom's own targets only; third-party headers come in as
# system includes (imported targets), so their own warnings never fail our build.

option(LOOM_WERROR "Treat warnings in loom's own code as errors (C++ and CUDA)" ON)
set(LOOM_WARNING_FLAGS -Wall -Wextra)
set(LOOM_CUDA_WARNING_FLAGS -Xcompiler=-Wall,-Wextra)
if(LOOM_WERROR)
  list(APPEND LOOM_WARNING_FLAGS -Werror)
  list(APPEND LOOM_CUDA_WARNING_FLAGS -Werror=all-warnings)
  # GCC's flow-sensitive warnings are issued after inlining, so system-header status
  # does not cover libtorch's templates inlined into loom code: GCC 14 reports
  # -Warray-bounds inside std::vector<bool>::reserve, called from
  # torch/csrc/autograd/custom_function.h (libtorch 2.6), for every autograd Function.
  # They stay warnings.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 11)
    list(APPEND LOOM_WARNING_FLAGS
         -Wno-error=array-bounds -Wno-error=stringop-overflow -Wno-error=stringop-overread)
  endif()
endif()

function(_loom_common target)
  target_compile_features(${target} PUBLIC cxx_std_17)
  # at::parallel_for is a header template: with libtorch's OpenMP backend it runs
  # serially unless the calling code is compiled with OpenMP too.
  target_link_libraries(${target} PUBLIC OpenMP::OpenMP_CXX)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${LOOM_WARNING_FLAGS}>)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${LOOM_GENERATED_DIR})
endfunction()

# loom_add_library(<name> [SHARED] SOURCES <files...> DEPS <targets...>)
# A static (PIC) library for one folder, or SHARED; DEPS are the layers below it.
function(loom_add_library name)
  cmake_parse_arguments(ARG "SHARED" "" "SOURCES;DEPS" ${ARGN})
  if(ARG_SHARED)
    add_library(${name} SHARED ${ARG_SOURCES})
  else()
    add_library(${name} STATIC ${ARG_SOURCES})
  endif()
  _loom_common(${name})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# loom_add_executable(<name> SOURCES <files...> DEPS <targets...>)
function(loom_add_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  _loom_common(${name})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()

# loom_add_test_binary(<name> SOURCES <files...> DEPS <targets...> [LABELS <labels...>])
# One GoogleTest binary; each TEST becomes a CTest entry so `ctest -j` spreads them.
function(loom_add_test_binary name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  loom_add_executable(${name} SOURCES ${ARG_SOURCES} DEPS ${ARG_DEPS} GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    LOOM_SOURCE_DIR="${PROJECT_SOURCE_DIR}" LOOM_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()
