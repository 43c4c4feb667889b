#!/bin/sh
# Runs the C API test in a fresh temporary directory: run.sh CAPI_TEST DEFAULT_SHARED_DIR
set -e
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$1" "${LOWBIT_SHARED:-$2}" "$dir"
