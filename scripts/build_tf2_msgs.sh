#!/usr/bin/env bash
# Generates and installs the tf2_msgs message package (TFMessage only) into a venv that has the ROS 2
# wheels: tf2_msgs has no wheel on PyPI. Uses the rosidl/ament CMake wheels and the machine's cmake + gcc.
set -euo pipefail
VENV=$(cd "${1:-.venv}" && pwd)
HERE=$(cd "$(dirname "$0")/.." && pwd)
SRC="$HERE/tools/tf2_msgs"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
PY="$VENV/bin/python"
for tool in cmake cc; do
  command -v "$tool" >/dev/null || { echo "[tf2_msgs] '$tool' not found: install cmake and a C compiler (apt-get install cmake gcc)"; exit 1; }
done
# Some wheels' exported CMake targets name the include directories of the machine they were built on
# (/opt/python/cp3XX-cp3XX/...): point them at this interpreter's.
inc=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
npinc=$("$PY" -c "import numpy; print(numpy.get_include())")
# (grep finds nothing when a venv being set up again was already patched: not an error under pipefail)
{ grep -rl --include='*.cmake' '/opt/python/cp3' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$npinc#g; s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$inc#g" "$f"
done
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
echo "[tf2_msgs] generating tf2_msgs/TFMessage into $VENV"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >"$BUILD/configure.log" 2>&1 \
  || { tail -40 "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" >"$BUILD/build.log" 2>&1 || { tail -40 "$BUILD/build.log"; exit 1; }
cmake --install "$BUILD" >/dev/null
