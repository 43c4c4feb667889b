# `cmake --install`: liblowbit.so, the headers (C++ lowbit/*.h and C lowbit.h), the CLI, a
# CMake package (find_package(lowbit) -> lowbit::lowbit) and a pkg-config file (lowbit.pc).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS lowbit_shared EXPORT lowbitTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS lowbit_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT lowbitTargets NAMESPACE lowbit:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lowbit)

configure_package_config_file(cmake/lowbitConfig.cmake.in ${PROJECT_BINARY_DIR}/lowbitConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lowbit)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lowbitConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/lowbitConfig.cmake ${PROJECT_BINARY_DIR}/lowbitConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lowbit)

# The prefix relative to the .pc file, so the installed tree can move (and --prefix works).
file(RELATIVE_PATH LOWBIT_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
configure_file(cmake/lowbit.pc.in ${PROJECT_BINARY_DIR}/lowbit.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/lowbit.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
