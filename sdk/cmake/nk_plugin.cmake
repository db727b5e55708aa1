# nk_add_plugin(NAME sources... [OUTPUT_DIRECTORY dir] [DEPLOY_DIR dir] [HELPERS targets...])
#
# Builds a nkhost plugin: a MODULE library named exactly NAME.so (NAME.dll on
# Windows, no "lib" prefix), symbols hidden except the exports sdk.h marks
# (InitModule, nk_plugin_abi), -fno-gnu-unique on GCC (unique symbols would
# keep the library from ever unloading), and no link to the host: a plugin
# talks to the host only through the tables sdk.h defines.
# Output: OUTPUT_DIRECTORY, else NK_PLUGIN_OUTPUT_DIR, else ${CMAKE_BINARY_DIR}/modules.
# DEPLOY_DIR (else NK_PLUGIN_DEPLOY_DIR, if set): after each build the plugin is also copied to
# a hidden temp file in that directory and renamed over NAME.so there, so a server watching it
# (runtime.hot_reload) only ever sees a complete file: point it at runtime.path.
# HELPERS: SHARED library targets of the project the plugin links against. They are built into
# the hidden folder <output>/.lib (deployed to <DEPLOY_DIR>/.lib), and the plugin finds them
# through RUNPATH $ORIGIN/.lib: ship plugin.so with its .lib folder beside it in runtime.path
# (the scan skips hidden folders; the host copies .lib with the plugin). Give each helper a
# SONAME (SOVERSION); a changed helper is only picked up by a restart (docs/writing-plugins.md).
include_guard(GLOBAL)

function(nk_add_plugin NAME)
    cmake_parse_arguments(P "" "OUTPUT_DIRECTORY;DEPLOY_DIR" "HELPERS" ${ARGN})
    if(NOT P_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR "nk_add_plugin(${NAME}): no sources")
    endif()
    set(out_dir "${P_OUTPUT_DIRECTORY}")
    if(NOT out_dir)
        if(DEFINED NK_PLUGIN_OUTPUT_DIR)
            set(out_dir "${NK_PLUGIN_OUTPUT_DIR}")
        else()
            set(out_dir "${CMAKE_BINARY_DIR}/modules")
        endif()
    endif()

    add_library(${NAME} MODULE ${P_UNPARSED_ARGUMENTS})
    set_target_properties(${NAME} PROPERTIES
        PREFIX ""
        C_VISIBILITY_PRESET hidden
        CXX_VISIBILITY_PRESET hidden
        VISIBILITY_INLINES_HIDDEN ON
        LIBRARY_OUTPUT_DIRECTORY "${out_dir}"
        RUNTIME_OUTPUT_DIRECTORY "${out_dir}")
    if(NOT WIN32)
        set_target_properties(${NAME} PROPERTIES SUFFIX ".so")
    endif()
    if(NOT DEFINED CMAKE_CXX_STANDARD)
        target_compile_features(${NAME} PRIVATE cxx_std_17)
    endif()
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        target_compile_options(${NAME} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fno-gnu-unique>)
    endif()
    # Fail at link time, not at load time, when a plugin uses a symbol nobody
    # provides (sanitizer runtimes live in the host, so skip it for them).
    if(CMAKE_SYSTEM_NAME STREQUAL "Linux" AND NOT NK_SANITIZE_ADDRESS AND NOT NK_SANITIZE_THREAD)
        target_link_options(${NAME} PRIVATE -Wl,-z,defs)
    endif()
    # C++ sources get nk/sdk.hpp's target (it needs RapidJSON), C sources only nk/sdk.h's.
    set(cxx FALSE)
    foreach(src ${P_UNPARSED_ARGUMENTS})
        if(src MATCHES "\\.(cpp|cc|cxx|c\\+\\+|C)$")
            set(cxx TRUE)
        endif()
    endforeach()
    if(NOT TARGET nkhost::sdk)
        message(FATAL_ERROR "nk_add_plugin: the nkhost SDK target is missing (find_package(nkhost-sdk))")
    endif()
    if(cxx AND TARGET nkhost::sdk_cpp)
        target_link_libraries(${NAME} PRIVATE nkhost::sdk_cpp)
        if(DEFINED NKHOST_SDK_RAPIDJSON_INCLUDE_DIR AND NOT NKHOST_SDK_RAPIDJSON_INCLUDE_DIR)
            message(WARNING "nk_add_plugin(${NAME}): C++ sources, but RapidJSON's headers were not "
                            "found: nk/sdk.hpp needs them (Debian: apt install rapidjson-dev). A "
                            "plugin that includes only nk/sdk.h builds without them.")
        endif()
    else()
        target_link_libraries(${NAME} PRIVATE nkhost::sdk)
    endif()
    set(deploy "${P_DEPLOY_DIR}")
    if(NOT deploy AND DEFINED NK_PLUGIN_DEPLOY_DIR)
        set(deploy "${NK_PLUGIN_DEPLOY_DIR}")
    endif()
    if(P_HELPERS)
        target_link_libraries(${NAME} PRIVATE ${P_HELPERS})
        # Only $ORIGIN/.lib (build-tree paths made relative to the plugin, which are the same),
        # no absolute path: the plugin finds its helpers the way it will in runtime.path and
        # from the host's private copy.
        set_target_properties(${NAME} PROPERTIES
            BUILD_RPATH "$ORIGIN/.lib" BUILD_RPATH_USE_ORIGIN ON INSTALL_RPATH "$ORIGIN/.lib")
        foreach(helper ${P_HELPERS})
            set_target_properties(${helper} PROPERTIES
                LIBRARY_OUTPUT_DIRECTORY "${out_dir}/.lib"
                RUNTIME_OUTPUT_DIRECTORY "${out_dir}/.lib")
            if(deploy)
                add_custom_command(TARGET ${NAME} PRE_LINK
                    COMMAND ${CMAKE_COMMAND} -E make_directory "${deploy}/.lib"
                    COMMAND ${CMAKE_COMMAND} -E copy "$<TARGET_FILE:${helper}>"
                            "$<TARGET_SONAME_FILE:${helper}>" "${deploy}/.lib/"
                    COMMENT "Deploying ${helper} to ${deploy}/.lib"
                    VERBATIM)
            endif()
        endforeach()
    endif()
    if(deploy)
        # Copy under a hidden name (the watcher ignores hidden files), then rename(2) over the
        # target: atomic on one file system, so the server never reads a half-written plugin.
        add_custom_command(TARGET ${NAME} POST_BUILD
            COMMAND ${CMAKE_COMMAND} -E make_directory "${deploy}"
            COMMAND ${CMAKE_COMMAND} -E copy "$<TARGET_FILE:${NAME}>"
                    "${deploy}/.$<TARGET_FILE_NAME:${NAME}>.tmp"
            COMMAND ${CMAKE_COMMAND} -E rename "${deploy}/.$<TARGET_FILE_NAME:${NAME}>.tmp"
                    "${deploy}/$<TARGET_FILE_NAME:${NAME}>"
            COMMENT "Deploying ${NAME} to ${deploy}"
            VERBATIM)
    endif()
endfunction()
