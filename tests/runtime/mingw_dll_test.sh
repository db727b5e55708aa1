#!/bin/sh
# sdk.h and a plain-C plugin build as a Windows DLL with mingw-w64, exporting
# InitModule and nk_plugin_abi.
# usage: mingw_dll_test.sh SOURCE_DIR
set -eu
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
x86_64-w64-mingw32-gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -shared -I"$src/sdk/include" \
    "$src/samples/c_minimal/c_minimal.c" -o "$tmp/c_minimal.dll"
x86_64-w64-mingw32-gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -shared -I"$src/sdk/include" \
    "$src/samples/out_of_tree/hello_c.c" -o "$tmp/oot_c.dll"
table=$(x86_64-w64-mingw32-objdump -p "$tmp/c_minimal.dll")
echo "$table" | grep -q "InitModule"
echo "$table" | grep -q "nk_plugin_abi"
echo "c_minimal.dll exports InitModule and nk_plugin_abi"
