# The Gloo communicator, rank identity and rendezvous (included from
# tests/runtime/CMakeLists.txt): one GoogleTest binary whose multi-rank tests run
# ranks as threads (tests/support/multi_rank.h), plus the worker that the
# multi-process tests start as real ranks.
set(_loom_dist_test_dir ${CMAKE_CURRENT_LIST_DIR})
loom_add_executable(loom_dist_worker
  SOURCES ${_loom_dist_test_dir}/dist_worker_main.cpp
  DEPS loom_dist loom_core)
loom_add_test_binary(loom_dist_tests
  SOURCES ${_loom_dist_test_dir}/identity_test.cpp ${_loom_dist_test_dir}/rendezvous_test.cpp
          ${_loom_dist_test_dir}/gloo_collectives_test.cpp ${_loom_dist_test_dir}/gloo_failure_test.cpp
          ${_loom_dist_test_dir}/gloo_device_test.cpp ${_loom_dist_test_dir}/gloo_multi_process_test.cpp
  DEPS loom_test_support loom_dist loom_core
  LABELS cpu
  TIMEOUT 120)
add_dependencies(loom_dist_tests loom_dist_worker)
