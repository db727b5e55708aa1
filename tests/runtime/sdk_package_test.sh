#!/bin/sh
# Installs the SDK component to a temporary prefix, builds samples/out_of_tree out of tree with
# find_package(nkhost-sdk), then loads the result with run_check. Also: a C-only project needs
# no RapidJSON, and asking for the cpp component without RapidJSON fails with a clear message.
# usage: sdk_package_test.sh BUILD_DIR SOURCE_DIR CHECK_TOOL
set -eu
build=$1
src=$2
check=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --component nkhost-sdk --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/nk/sdk.h"
test -f "$tmp/prefix/include/nk/sdk.hpp"
test -f "$tmp/prefix/include/nk/json_read.hpp"
# The C target carries no RapidJSON (it is added to sdk_cpp only, when found).
targets=$(find "$tmp/prefix" -name 'nkhost-sdk-targets.cmake')
if grep -qi rapidjson "$targets"; then
    echo "the exported SDK targets name RapidJSON: $targets"
    exit 1
fi
# A plain environment: no sanitizer flags, nothing from the host build.
env -u CFLAGS -u CXXFLAGS cmake -S "$src/samples/out_of_tree" -B "$tmp/build" \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/build" >/dev/null
test -f "$tmp/build/modules/hello.so"
test -f "$tmp/build/modules/hello_c.so"
# Only InitModule and nk_plugin_abi are exported (hidden visibility).
exports=$(nm -D --defined-only "$tmp/build/modules/hello.so" | awk '$2 == "T" {print $3}' | sort | tr '\n' ' ')
if [ "$exports" != "InitModule nk_plugin_abi " ]; then
    echo "unexpected exports: $exports"
    exit 1
fi
out=$("$check" "$tmp/build/modules" "$tmp/data")
echo "$out"
echo "$out" | grep -q "rpc hello$"
echo "$out" | grep -q "rpc hello_c"
echo "$out" | grep -q "event handlers: 1"
echo "$out" | grep -q "2 plugin(s) checked, 0 problem(s)"

# Without RapidJSON's headers (find_path searches an empty root only): a C plugin project
# configures and builds, and the cpp component is refused with the reason.
mkdir -p "$tmp/c_only" "$tmp/no_root"
cp "$src/samples/out_of_tree/hello_c.c" "$tmp/c_only/"
cat > "$tmp/c_only/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(c_only LANGUAGES C)
find_package(nkhost-sdk REQUIRED)
nk_add_plugin(hello_c hello_c.c)
CMAKE
hide="-DCMAKE_FIND_ROOT_PATH=$tmp/no_root -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY"
# shellcheck disable=SC2086
env -u CFLAGS cmake -S "$tmp/c_only" -B "$tmp/c_only/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    $hide >"$tmp/c_only.log" 2>&1 || { cat "$tmp/c_only.log"; exit 1; }
grep -q "NKHOST_SDK_RAPIDJSON_INCLUDE_DIR:PATH=NKHOST_SDK_RAPIDJSON_INCLUDE_DIR-NOTFOUND" \
    "$tmp/c_only/build/CMakeCache.txt"
cmake --build "$tmp/c_only/build" >/dev/null
test -f "$tmp/c_only/build/modules/hello_c.so"
# shellcheck disable=SC2086
if cmake -S "$src/samples/out_of_tree" -B "$tmp/cpp_no_json" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    $hide >"$tmp/cpp.log" 2>&1; then
    echo "the cpp component was found without RapidJSON"
    exit 1
fi
grep -q "the cpp component (nk/sdk.hpp) needs RapidJSON" "$tmp/cpp.log" || { cat "$tmp/cpp.log"; exit 1; }
# Build flags the guide states: -fno-exceptions works with nk/sdk.h alone (not with
# nk/sdk.hpp, which catches exceptions in every callback); -static-libstdc++ works.
mkdir -p "$tmp/flags"
cat > "$tmp/flags/plain.cpp" <<'CPP'
#include <nk/sdk.h>
NK_PLUGIN_ABI()
static nk_status ping(void*, const nk_context*, const nk_logger*, const nk_module*, nk_str payload,
                      nk_sink* r_payload, nk_sink*) {
    nk_sink_write(r_payload, payload.ptr, payload.len);
    return NK_OK;
}
NK_INIT_MODULE_C(ctx, logger, nk, initializer) {
    (void)ctx; (void)logger; (void)nk;
    return initializer->register_rpc(initializer, nk_str_c("plain_ping"), ping, nullptr, nullptr);
}
CPP
cp "$src/samples/out_of_tree/hello.cpp" "$tmp/flags/"
cat > "$tmp/flags/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(flags LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 17)
find_package(nkhost-sdk REQUIRED COMPONENTS cpp)
nk_add_plugin(plain plain.cpp)
target_compile_options(plain PRIVATE -fno-exceptions -fno-rtti)
nk_add_plugin(hello_static hello.cpp)
target_link_options(hello_static PRIVATE -static-libstdc++)
CMAKE
env -u CFLAGS -u CXXFLAGS cmake -S "$tmp/flags" -B "$tmp/flags/build" -DCMAKE_PREFIX_PATH="$tmp/prefix"     -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/flags/build" >/dev/null
if nm -D "$tmp/flags/build/modules/hello_static.so" | grep -q 'GLIBCXX'; then
    echo "hello_static.so still needs the shared libstdc++"
    exit 1
fi
# A static libstdc++ allocates its exception emergency pool (72704 bytes) once per copy and
# the plugin can never be unloaded (plugin-pitfalls.md): LeakSanitizer would call it a leak.
out=$(ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" "$check" "$tmp/flags/build/modules" "$tmp/data")
echo "$out"
echo "$out" | grep -q "rpc plain_ping"
echo "$out" | grep -q "2 plugin(s) checked, 0 problem(s)"
echo '#include <nk/sdk.hpp>' > "$tmp/flags/wrapped.cpp"
if c++ -std=c++17 -fno-exceptions -fsyntax-only -I"$tmp/prefix/include" "$tmp/flags/wrapped.cpp"     2>/dev/null; then
    echo "nk/sdk.hpp compiled with -fno-exceptions"
    exit 1
fi
echo "sdk package: C++ and C plugins out of tree; C needs no RapidJSON; build flags as documented"
