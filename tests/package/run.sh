#!/bin/sh
# Installs the build into a temporary prefix, then builds consumer.c against it twice: with
# CMake's find_package(lowbit) and with pkg-config. run.sh BUILD_DIR
set -e
build=$1
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cmake --install "$build" --prefix "$dir/prefix" >/dev/null
cmake -S "$here" -B "$dir/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$dir/prefix" >/dev/null
cmake --build "$dir/cmake" >/dev/null
LD_LIBRARY_PATH="$dir/prefix/lib" "$dir/cmake/consumer"
libdir=$(ls -d "$dir"/prefix/lib*/pkgconfig | head -n 1)
cc $(PKG_CONFIG_PATH="$libdir" pkg-config --cflags lowbit) "$here/consumer.c" -o "$dir/consumer-pc" \
   $(PKG_CONFIG_PATH="$libdir" pkg-config --libs lowbit)
LD_LIBRARY_PATH="$(dirname "$libdir")" "$dir/consumer-pc"
echo "installed package: find_package and pkg-config both link"
