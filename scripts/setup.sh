#!/usr/bin/env bash
# Installs lowbit's dependencies (Debian 12 packages, the npm judge) and builds Release.
# Idempotent: re-running only does what is missing. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(cmake ninja-build g++ clang libclang-rt-14-dev pkg-config
          libgtest-dev libgmock-dev libbenchmark-dev libhwy-dev libopenblas-dev
          nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libsentencepiece-dev
          python3 python3-numpy python3-pytest libopenmpi-dev openmpi-bin)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# llama.cpp as an independent judge: prebuilt libraries shipped in the npm package.
if [ ! -d tests/judge/node_modules/node-llama-cpp ] || [ tests/judge/package-lock.json -nt tests/judge/node_modules ]; then
  echo "setup: installing node-llama-cpp (tests/judge)"
  # npm install, not npm ci: the lockfile lacks other platforms' optional binaries, which npm ci rejects.
  (cd tests/judge && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund --loglevel=error)
  touch tests/judge/node_modules
fi

BUILD_DIR=${LOWBIT_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
echo "setup: built $BUILD_DIR/lowbit"
