#!/usr/bin/env bash
# Creates the project's virtual environment (.venv) and installs what the package, its tests and its
# tools need. Two cases:
#  * a ROS 2 install is sourced (ROS_DISTRO set): the venv sees the system's site-packages and uses that
#    ROS as it is (rclpy, message packages, tf2_msgs, cv_bridge come from there);
#  * no ROS sourced: the ROS 2 Jazzy wheels from PyPI are installed into the venv and tf2_msgs, which has
#    no wheel, is generated from its one-line definition with the rosidl/ament wheels and installed into
#    the venv prefix (where the wheels' bootstrapper puts <prefix>/lib on the library path).
# Idempotent: a stamp file records a finished set-up of the same requirement files.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.setup-stamp"
want=$(find setup.py requirements.txt requirements-dev.txt requirements-ros-wheels.txt scripts/setup_env.sh scripts/build_tf2_msgs.sh scripts/trt_stubs.sh tools/tf2_msgs -type f | sort | xargs cat | sha256sum | cut -c1-16)
want="$want-${ROS_DISTRO:-wheels}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating $VENV with $($PYTHON --version)"
if [ -n "${ROS_DISTRO:-}" ]; then
  echo "[setup] ROS 2 '$ROS_DISTRO' is sourced: using it as it is (venv with system site-packages)"
  "$PYTHON" -m venv --system-site-packages "$VENV"
else
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip setuptools wheel 2>&1 | grep -v '^WARNING: Location' || true
# torch pinned: a looser spec pulls a multi-GB CUDA build on a CPU machine.
$PIP install -q -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v '^WARNING: Location' || true
# tensorrt-stubs declares a dependency on the full tensorrt package, which cannot be installed from PyPI
# without NVIDIA's own index: the stubs alone are what mypy needs.
$PIP install -q --no-deps "tensorrt-stubs==10.13.0.35.1" 2>&1 | grep -v '^WARNING: Location' || true
bash scripts/trt_stubs.sh "$VENV"
if [ -z "${ROS_DISTRO:-}" ]; then
  echo "[setup] no ROS sourced: installing the ROS 2 Jazzy wheels"
  $PIP install -q -r requirements-ros-wheels.txt 2>&1 | grep -v '^WARNING: Location' || true
  bash scripts/build_tf2_msgs.sh "$VENV"
fi
$PIP install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" - <<'PY'
import importlib
for name in ("torch", "numpy", "cv2", "rclpy", "sensor_msgs.msg", "nav_msgs.msg", "tf2_msgs.msg", "rosbags", "onnxruntime",
             "tensorrt_rtx"):
    importlib.import_module(name)
print("[setup] imports OK")
PY
echo "$want" > "$STAMP"
