# The NCCL communicator's tests (included from tests/runtime/CMakeLists.txt when
# LOOM_WITH_NCCL): always built; on a machine with fewer GPUs than a test needs,
# that test skips and says why.
set(_loom_nccl_test_dir ${CMAKE_CURRENT_LIST_DIR})
loom_add_test_binary(loom_nccl_tests
  SOURCES ${_loom_nccl_test_dir}/nccl_communicator_test.cpp ${_loom_nccl_test_dir}/nccl_test_util.cpp
          ${_loom_nccl_test_dir}/mpi_test_patterns.cpp
  DEPS loom_dist
  LABELS gpu
  TIMEOUT 300)
target_include_directories(loom_nccl_tests SYSTEM PRIVATE ${LOOM_NCCL_INCLUDE_DIR})

# libloom_torch.so must load next to PyTorch's older NCCL: its references to NCCL entry
# points newer than 2.22 stay weak (runtime/dist/nccl_recent_api.h).
add_test(NAME nccl_recent_api_is_weak
  COMMAND bash ${_loom_nccl_test_dir}/nccl_recent_api_weak_test.sh
          ${PROJECT_SOURCE_DIR}/runtime/dist/nccl_recent_api.h $<TARGET_FILE:loom_torch>)
set_tests_properties(nccl_recent_api_is_weak PROPERTIES LABELS "cpu" TIMEOUT 30)
