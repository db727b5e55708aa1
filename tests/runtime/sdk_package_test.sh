#!/bin/sh
# Installs the SDK component to a temporary prefix, builds a plugin project out
# of tree with find_package(nkhost-sdk), then loads the result with run_check.
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
# A plain environment: no sanitizer flags, nothing from the host build.
env -u CFLAGS -u CXXFLAGS cmake -S "$src/tests/runtime/out_of_tree" -B "$tmp/build" \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/build" >/dev/null
test -f "$tmp/build/modules/oot_plugin.so"
test -f "$tmp/build/modules/oot_c.so"
# Only InitModule and nk_plugin_abi are exported (hidden visibility).
exports=$(nm -D --defined-only "$tmp/build/modules/oot_plugin.so" | awk '$2 == "T" {print $3}' | sort | tr '\n' ' ')
if [ "$exports" != "InitModule nk_plugin_abi " ]; then
    echo "unexpected exports: $exports"
    exit 1
fi
out=$("$check" "$tmp/build/modules" "$tmp/data")
echo "$out"
echo "$out" | grep -q "rpc oot_hello"
echo "$out" | grep -q "2 plugin(s) checked, 0 problem(s)"
