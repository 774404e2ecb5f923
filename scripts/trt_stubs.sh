#!/usr/bin/env bash
# Prepares the TensorRT type stubs for mypy in <venv>/trt-stubs:
#  * tensorrt-stubs installs plain `tensorrt/` and `tensorrt_bindings/` folders without py.typed, which mypy
#    ignores in site-packages, so they are copied to a folder named by mypy_path (mypy.ini);
#  * two plugin methods in tensorrt-stubs 10.13.0.35.1 name a parameter `in` (a Python keyword), a syntax
#    error for mypy: renamed to `in_` in the copy; `add_scale_nd` puts a required parameter after defaulted
#    ones: it is made keyword-only in the copy. Nothing in the runtime package is touched.
set -euo pipefail
VENV=$(cd "${1:-.venv}" && pwd)
SP=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
OUT="$VENV/trt-stubs"
rm -rf "$OUT" && mkdir -p "$OUT"
for pkg in tensorrt tensorrt_bindings; do
  [ -d "$SP/$pkg" ] || { echo "[trt-stubs] $SP/$pkg missing: is tensorrt-stubs installed?"; exit 1; }
  cp -r "$SP/$pkg" "$OUT/$pkg"
done
find "$OUT" -name '*.pyi' -exec sed -i -E -e 's/([(,] *)in: /\1in_: /g' \
  -e 's/power: Weights = None, channel_axis: int\)/power: Weights = None, *, channel_axis: int)/' {} +
echo "[trt-stubs] stubs ready in $OUT"
