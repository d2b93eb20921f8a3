# The MPI communicator's tests (included from tests/runtime/CMakeLists.txt when
# LOOM_WITH_MPI): one GoogleTest program that every rank of an mpirun job runs,
# registered once per world size. Root may run them (containers): Open MPI then
# wants both OMPI_ALLOW_RUN_AS_ROOT variables.
set(_loom_mpi_test_dir ${CMAKE_CURRENT_LIST_DIR})
loom_add_executable(loom_mpi_tests
  SOURCES ${_loom_mpi_test_dir}/mpi_test_main.cpp ${_loom_mpi_test_dir}/mpi_test_util.cpp
          ${_loom_mpi_test_dir}/mpi_test_patterns.cpp
          ${_loom_mpi_test_dir}/mpi_collectives_test.cpp ${_loom_mpi_test_dir}/mpi_point_to_point_test.cpp
          ${_loom_mpi_test_dir}/mpi_communicator_test.cpp ${_loom_mpi_test_dir}/mpi_environment_test.cpp
  DEPS loom_dist GTest::gtest GTest::gmock)

execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _loom_mpiexec_version ERROR_QUIET)
set(_loom_mpirun_flags)
if(_loom_mpiexec_version MATCHES "Open MPI|OpenRTE")
  # More ranks than cores on small machines; no core binding, so each rank's communication thread can run.
  set(_loom_mpirun_flags --oversubscribe --bind-to none)
endif()
foreach(_loom_ranks 2 3 4)
  add_test(NAME loom_mpi_tests.np${_loom_ranks}
           COMMAND ${MPIEXEC_EXECUTABLE} ${_loom_mpirun_flags} ${MPIEXEC_NUMPROC_FLAG} ${_loom_ranks}
                   $<TARGET_FILE:loom_mpi_tests>)
  set_tests_properties(loom_mpi_tests.np${_loom_ranks} PROPERTIES
    TIMEOUT 120 PROCESSORS ${_loom_ranks} LABELS "cpu;mpi"
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
